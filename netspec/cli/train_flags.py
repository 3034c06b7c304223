"""`netspec train`'s flags for the training settings, generated from TrainConfig's fields.

A new field in netspec/train/config.py is a new flag with nothing else to write:

    field `batch_size: conint(...) = Field(128, description="...")`   →   `--batch-size INT`, help: the description
    a bool field (or a bool-or-literal one, as channels_last)         →   `--x/--no-x`
    a Literal field                                                   →   a string flag, its choices its metavar
    a nested model (augment)                                          →   one flag per field of its own (--pad, --flip)

Every flag defaults to None, "not given": then the spec's `train:` section, then the field's default
applies, and each flag's help says so ("default: from the spec's `train:` section, else 128"). The
values are checked together with the spec's (netspec/train/setup.py resolve_config), so a bad value
is one error naming the flag, and the bounds are written once, on the field.
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass
from typing import Annotated, Callable, Literal, Optional, Union, get_args, get_origin

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from netspec.train.config import TrainConfig

SCALARS = (bool, int, float, str)  # what a command line parses


@dataclass(frozen=True)
class SettingFlag:
    """One flag: the TrainConfig field it sets, inside `group` for a nested model's field."""

    field: str
    group: str | None
    kind: type  # one of SCALARS
    help: str
    choices: tuple = ()  # a Literal's values: the flag's metavar, `sgd|adam|adamw`

    @property
    def name(self) -> str:
        return "--" + self.field.replace("_", "-")

    def parameter(self) -> inspect.Parameter:
        """The keyword parameter typer reads this flag from."""
        declared = f"{self.name}/--no-{self.name[2:]}" if self.kind is bool else self.name
        metavar = "|".join(map(str, self.choices)) or None  # None: the type's (netspec/cli/conventions.py)
        return inspect.Parameter(self.field, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[self.kind],
                                 default=typer.Option(None, declared, help=self.help, metavar=metavar))


def setting_flags(config: type[BaseModel] = TrainConfig) -> list[SettingFlag]:
    """One flag per field of `config`, in field order; a nested model's fields in its place."""
    flags = []
    for name, field in config.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            flags += [_flag(sub, subfield, name) for sub, subfield in field.annotation.model_fields.items()]
        else:
            flags.append(_flag(name, field, None))
    names = [flag.field for flag in flags]
    if len(set(names)) != len(names):  # a nested field named as a top-level one: two flags of one name
        raise TypeError(f"{config.__name__}: two settings would share a flag: {sorted(names)}")
    return flags


def settings_given(values: dict) -> dict:
    """The flags given (not None) as TrainConfig settings, e.g. {"epochs": 3, "augment": {"pad": 0}}."""
    settings: dict = {}
    for flag in SETTING_FLAGS:
        value = values.get(flag.field)
        if value is not None:
            (settings.setdefault(flag.group, {}) if flag.group else settings)[flag.field] = value
    return settings


def with_setting_flags(command: Callable) -> Callable:
    """`command` as typer sees it: its `**settings` replaced by one keyword parameter per flag,
    placed before its first keyword-only parameter (so `--help` lists the settings first)."""
    signature = inspect.signature(command)
    explicit = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    clash = {p.name for p in explicit} & {flag.field for flag in SETTING_FLAGS}
    if clash:
        raise TypeError(f"{command.__name__}: parameters named as settings: {sorted(clash)}")
    at = next((i for i, p in enumerate(explicit) if p.kind is p.KEYWORD_ONLY), len(explicit))
    generated = [flag.parameter() for flag in SETTING_FLAGS]
    command.__signature__ = signature.replace(parameters=explicit[:at] + generated + explicit[at:])
    return command


def _flag(name: str, field: FieldInfo, group: str | None) -> SettingFlag:
    kind, choices = _kind(field.annotation)
    default = field.get_default(call_default_factory=True)
    return SettingFlag(name, group, kind, with_default(field.description or "", default), choices)


SOURCE = "the spec's `train:` section"


def with_default(description: str, default) -> str:
    """A flag's help: the field's description, then where its value comes from when the flag is not
    given. A field without a default (None) says its own in the description, if it has one."""
    if default is None:
        if "default" in description:  # e.g. weight_decay: "default: the optimiser's own"
            return f"{description} (when {SOURCE} does not set it)"
        return f"{description}; default: from {SOURCE}, else none".lstrip("; ")
    shown = ("on" if default else "off") if isinstance(default, bool) else \
        f"{default:g}" if isinstance(default, float) else str(default)
    return f"{description}; default: from {SOURCE}, else {shown}".lstrip("; ")


def _kind(annotation) -> tuple[type, tuple]:
    """The type the command line parses for a field's annotation, and its choices (a Literal's values)."""
    origin = get_origin(annotation)
    if origin is Annotated:  # conint(...), confloat(...)
        return _kind(get_args(annotation)[0])
    if origin is Literal:
        values = get_args(annotation)
        return type(values[0]), values
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if bool in members:  # channels_last: true | false | "auto"; leaving the flag out keeps "auto"
            return bool, ()
        if len(members) == 1:  # Optional[X]
            return _kind(members[0])
    if annotation in SCALARS:
        return annotation, ()
    raise TypeError(f"no command-line type for a setting of type {annotation!r}: add one in {__name__}")


SETTING_FLAGS = setting_flags()  # after the helpers it calls
