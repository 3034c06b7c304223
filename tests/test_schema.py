"""`netspec schema`: the JSON Schema editors use; it must accept every shipped spec."""

from __future__ import annotations

import json

import jsonschema
import pytest

from netspec.lang.macros import MACROS
from netspec.lang.schema import spec_json_schema
from netspec.lang.source import load_yaml_file
from netspec.layers import REGISTRY
from tests.conftest import ROOT, SPECS, spec_files


def _plain(value):
    """YMap/YSeq → dict/list (jsonschema checks exact types)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def test_committed_schema_is_current(cli):
    result = cli("schema")
    assert result.code == 0
    committed = (ROOT / "docs" / "spec.schema.json").read_text()
    assert json.loads(result.out) == json.loads(committed), \
        "docs/spec.schema.json is stale: run `netspec schema > docs/spec.schema.json`"


def test_schema_is_valid_and_names_every_layer():
    schema = spec_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    text = json.dumps(schema)
    for kind in [*REGISTRY, *MACROS]:
        assert f'"{kind}"' in text


@pytest.mark.parametrize("path", spec_files() + [SPECS / "blocks" / "resnet.yaml"], ids=lambda p: p.name)
def test_every_shipped_spec_validates_against_the_schema(path):
    schema = spec_json_schema()
    data = _plain(load_yaml_file(path))
    if "blocks" in path.parts:  # an include file: blocks only
        schema = {**schema, "required": []}
    jsonschema.validate(data, schema)


def test_schema_rejects_a_typo_in_a_layer_argument():
    data = {"name": "x", "input": [1, 8, 8], "layers": [{"conv": {"out": 4, "kernal": 3}}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, {**spec_json_schema()})
