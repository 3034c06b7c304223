"""The YAML loader: positions kept, unsafe or oversized input rejected as spec errors."""

from __future__ import annotations

import pytest

from netspec.errors import Mark, SpecError
from netspec.lang.source import MAX_DEPTH, YMap, YSeq, parse_yaml


def test_positions_of_keys_and_values_are_kept():
    data = parse_yaml("name: x\nlayers:\n  - conv: {out: 6, kernel: 5}\n  - relu\n", "s.yaml")
    assert isinstance(data, YMap) and isinstance(data["layers"], YSeq)
    assert data.key_marks["layers"] == Mark("s.yaml", 2, 1)
    assert data["layers"].item_marks == [Mark("s.yaml", 3, 5), Mark("s.yaml", 4, 5)]
    conv = data["layers"][0]["conv"]
    assert conv.value_marks["kernel"] == Mark("s.yaml", 3, 28)


def test_yaml_12_core_scalars():
    data = parse_yaml("a: yes\nb: true\nc: 1e-3\nd: 0x10\ne: ~\nf: '5'\ng: 010\n")
    assert data == {"a": "yes", "b": True, "c": 0.001, "d": 16, "e": None, "f": "5", "g": 10}


def test_anchors_and_merge_keys():
    data = parse_yaml("base: &b {kernel: 3, padding: 1}\nconv:\n  <<: *b\n  padding: 0\n  out: 8\n")
    assert data["conv"] == {"kernel": 3, "padding": 0, "out": 8}


@pytest.mark.parametrize("text, message", [
    ("a: !!python/object/apply:os.system ['id']\n", "tag `!!python/object/apply:os.system` is not allowed"),
    ("a: !custom 3\n", "tag `!custom` is not allowed"),
    ("a: !!map {b: 1}\nc: !!set {x}\n", "tag `!!set` is not allowed"),
    ("a: 1\nb: 2\na: 3\n", "duplicate key `a` (first written at line 1)"),
    ("a: 1\n---\nb: 2\n", "one YAML document"),
    ("a: [1, 2\n", "invalid YAML"),
    ("a: *nothing\n", "alias `*nothing` refers to no anchor"),
    ("? [1, 2]\n: x\n", "keys must be plain names"),
    ("a: !!int abc\n", "is not a valid !!int"),
])
def test_unsafe_or_malformed_yaml_is_a_spec_error(text, message):
    with pytest.raises(SpecError) as info:
        parse_yaml(text, "t.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("t.yaml:")


def test_billion_laughs_fails_on_the_node_budget():
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    with pytest.raises(SpecError, match="expands to more than"):
        parse_yaml("\n".join(lines) + "\n", "bomb.yaml")


def test_nesting_limit():
    deep = "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n"
    with pytest.raises(SpecError, match=f"deeper than {MAX_DEPTH}"):
        parse_yaml(deep, "deep.yaml")
    ok = "a: " + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2) + "\n"
    parse_yaml(ok, "ok.yaml")


def test_size_cap(tmp_path):
    from netspec.lang.source import MAX_BYTES, load_yaml_file

    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * MAX_BYTES + "\nname: x\n")
    with pytest.raises(SpecError, match="over the"):
        load_yaml_file(big)


def test_not_utf8(tmp_path):
    from netspec.lang.source import load_yaml_file

    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8"):
        load_yaml_file(path)
