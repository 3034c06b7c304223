"""The JSON Schema of the spec language, generated from the pydantic models in the registry."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import StringConstraints, TypeAdapter, create_model

from netspec.lang.expand import IDENTIFIER, NodeKeys
from netspec.lang.macros import MACROS
from netspec.lang.spec import SpecFile
from netspec.layers import REGISTRY

SCHEMA_ID = "https://netspec.dev/schema/spec.json"


def _entry_model(kind: str, cls) -> type:
    """`{<kind>: args | primary, name?, from?, repeat?, trainable?}` for one layer type."""
    args = cls
    if cls.primary is not None:
        field = cls.model_fields[cls.primary]
        primary = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        args = Union[cls, primary, Annotated[str, StringConstraints(pattern=r"\$")]]
    return create_model(f"{cls.__name__}Entry", __base__=NodeKeys,
                        __config__=None, **{kind: (Optional[args], ...)})


def layer_entry_type() -> Any:
    kinds = {**REGISTRY, **MACROS}
    bare = Literal[tuple(sorted(kinds))]  # type: ignore[valid-type]
    entries = [_entry_model(kind, cls) for kind, cls in sorted(kinds.items())]
    return Union[(bare, *entries)]  # type: ignore[return-value]


def _user_block_entries(kinds: list[str]) -> list[dict]:
    """User blocks (possibly from included files) are unknown to the schema: accept any other
    name, bare or as `name: args`, but never a built-in's name (so `conv: {kernal: 3}` stays an error)."""
    identifier = {"type": "string", "pattern": IDENTIFIER, "not": {"enum": kinds}}
    call = {"type": "object", "minProperties": 1, "propertyNames": {"not": {"enum": kinds}},
            "description": "a user block from `blocks:` (here or in an included file)"}
    return [identifier, call]


def spec_json_schema() -> dict:
    schema = SpecFile.model_json_schema()
    entry = TypeAdapter(layer_entry_type()).json_schema(ref_template="#/$defs/{model}")
    defs = schema.setdefault("$defs", {})
    defs.update(entry.pop("$defs", {}))
    entry["anyOf"] += _user_block_entries(sorted({**REGISTRY, **MACROS}))
    entry["description"] = ("A layer: a bare name (`relu`), or `type: args` where args is the primary "
                            "argument (`linear: 120`) or a mapping; "
                            "a user block from `blocks:` is called the same way.")
    defs["LayerEntry"] = entry
    _link_layer_lists(schema)
    _allow_substitutions(defs, [cls.__name__ for cls in (*REGISTRY.values(), *MACROS.values())])
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "netspec model spec"
    return schema


def _link_layer_lists(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if value == {"x-netspec": "LayerEntry"}:
                node[key] = {"$ref": "#/$defs/LayerEntry"}
            else:
                _link_layer_lists(value)
    elif isinstance(node, list):
        for item in node:
            _link_layer_lists(item)


SUBSTITUTION = {"type": "string", "pattern": r"\$", "description": "`$param` or `${expr}`, inside blocks"}


def _allow_substitutions(defs: dict, model_names: list[str]) -> None:
    """Inside `blocks:` any argument may be written as `$param` / `${expr}`: let editors accept it."""
    defs["Substitution"] = SUBSTITUTION
    for name in model_names:
        for prop, sub in defs.get(name, {}).get("properties", {}).items():
            keep = {k: sub.pop(k) for k in ("description", "default", "title") if k in sub}
            defs[name]["properties"][prop] = {"anyOf": [sub, {"$ref": "#/$defs/Substitution"}], **keep}
