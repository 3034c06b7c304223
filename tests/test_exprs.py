"""`$param` / `${expr}` substitution: integer arithmetic only, never eval."""

from __future__ import annotations

import pytest

from netspec.lang.exprs import SubstitutionError, evaluate, substitute

SCOPE = {"out": 64, "stride": 2, "name": "stage", "cfg": [64, "M"]}


@pytest.mark.parametrize("text, value", [
    ("$out", 64),
    ("$cfg", [64, "M"]),
    ("${out * 4}", 256),
    ("${out // stride + 1}", 33),
    ("${(out + 1) % 3}", 2),
    ("${out / 2}", 32),
    ("${-out}", -64),
    ("${min(out, 32) + max(1, stride)}", 34),
    ("conv${stride}", "conv2"),
    ("$name-$out", "stage-64"),
    ("cost: $$5", "cost: $5"),
    ("plain", "plain"),
])
def test_substitution(text, value):
    assert substitute(text, SCOPE) == value


@pytest.mark.parametrize("text, message", [
    ("${__import__('os').system('id')}", "function calls not allowed"),
    ("${open('/etc/passwd')}", "function calls not allowed"),
    ("${out.__class__}", "attribute access not allowed"),
    ("${[1] * 10}", "lists not allowed"),
    ("${9 ** 9 ** 9}", "powers (**) not allowed"),
    ("${(lambda: 1)()}", "function calls not allowed"),
    ("${out if out else 1}", "conditional expressions not allowed"),
    ("${'a' * 3}", "only integer literals"),
    ("${1.5}", "only integer literals"),
    ("${out / 3}", "not a whole number"),
    ("${out // 0}", "division by zero"),
    ("${name + 1}", "not an integer"),
    ("${outt}", "`$outt` is not a parameter or var here"),
    ("${out *}", "not a valid arithmetic expression"),
    ("${}", "empty"),
    ("${" + "1+" * 150 + "1}", "longer than"),
    ("${" + "*".join(["4611686018427387904"] * 2) + "}", "out of range"),
])
def test_rejected_expressions(text, message):
    with pytest.raises(SubstitutionError) as info:
        substitute(text, SCOPE)
    assert message in str(info.value)


def test_unknown_name_suggests_the_close_one():
    with pytest.raises(SubstitutionError) as info:
        substitute("$strde", SCOPE)
    assert info.value.hint == "did you mean `stride`?"


def test_evaluate_never_calls_eval(monkeypatch):
    import builtins

    def forbidden(*args, **kwargs):
        raise AssertionError("eval must not be used")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert evaluate("out * 2 + 1", SCOPE) == 129
