"""Outputs ↔ classes: the one place that decides which output of a model scores which class.

Output i of the model is class i of the data (its `classes` order: the IDX/CIFAR label order, or
the sorted folder names). Training, validation, eval, the checkpoints' model card, config.json
and every export rely on that map, so every mismatch is refused here, before any step: a model
with extra outputs would train them as classes that never occur and could predict them; a
spec's `labels:` in another order would name every score wrongly once exported. Used by
training (netspec.train.setup), evaluation and export (netspec.run) alike.
"""

from __future__ import annotations

import json
from pathlib import Path

from netspec.data import Data, DataError
from netspec.errors import Diagnostic, NetspecError, SpecError
from netspec.lang.spec import Spec

MAX_VAR_TRIES = 16  # vars re-checked when looking for the `--set` that fixes the score count
SHOWN_NAMES = 10


def check_outputs(output: tuple, data: Data, spec: Spec, set_vars: list[str] | tuple = ()) -> list[str]:
    """The class names of the model's outputs, in output order, for training `spec` on `data`.
    Raises SpecError unless there is exactly one score per class and the spec's `labels:`, if
    given, are the data's class names in the data's order."""
    scores = _score_count(output, spec.name)
    classes = len(data.classes)
    if scores != classes:
        more = "more" if scores > classes else "fewer"
        raise DataError(f"{spec.name} outputs {scores} scores but {data.name} has {classes} classes "
                        f"({more} outputs than classes: training needs exactly one output per class)",
                        _score_fix(spec, list(set_vars), scores, classes))
    if spec.labels is not None and list(spec.labels) != list(data.classes):
        fix = (f"write `labels: {_names(data.classes, limit=None)}` or leave `labels:` out"
               if len(data.classes) <= 2 * SHOWN_NAMES else "leave `labels:` out (the data's names are used)")
        raise SpecError([Diagnostic(_labels_mark(spec), "labels", _labels_problem(spec.labels, data.classes, data.name),
                                    f"the data decides which output is which class: {fix}")])
    return list(data.classes)


def check_run_outputs(output: tuple, data: Data, run_dir: Path, trained: list[str] | None,
                      trained_on: str) -> list[str]:
    """The class names of a trained run's outputs when evaluated on `data`: the classes it was
    trained on (`trained`, in output order; None when its weights do not say), which `data` must
    have, in the same order."""
    scores = _score_count(output, str(run_dir))
    names = "" if trained is None else " " + _names(trained)
    hint = f"evaluate on data with the {scores} classes {run_dir} was trained on, in the same order"
    if len(data.classes) != scores:
        raise DataError(f"{run_dir} gives {scores} scores, one per class of {trained_on}{names}, but "
                        f"{data.name} has {len(data.classes)} classes {_names(data.classes)}", hint)
    if trained is not None and list(data.classes) != list(trained):
        raise DataError(f"the classes of {data.name} {_names(data.classes)} are not the classes {run_dir} was "
                        f"trained on{names}: {_first_difference(trained, data.classes)}", hint)
    return list(data.classes)


def check_spec_labels(spec: Spec, output: tuple) -> list[str] | None:
    """The spec's `labels:` as the names of an untrained model's outputs (export of a spec): one
    per score, or a SpecError."""
    if spec.labels is None:
        return None
    if list(output) != [len(spec.labels)]:
        raise SpecError([Diagnostic(_labels_mark(spec), "labels", f"the spec names {len(spec.labels)} classes "
                                    f"{_names(spec.labels)} but {spec.name} outputs {'×'.join(map(str, output))} "
                                    "scores", "write one label per output score, in output order")])
    return list(spec.labels)


def _score_count(output: tuple, name: str) -> int:
    if len(output) != 1:
        raise DataError(f"{name} outputs {'×'.join(map(str, output))}; training needs one score per class",
                        "end the spec with `flatten` and `linear: <classes>`")
    return output[0]


def _score_fix(spec: Spec, set_vars: list[str], scores: int, classes: int) -> str:
    """How to get `classes` scores: the `--set` that does it (re-checked statically), else the
    last linear layer to edit."""
    var = next(_vars_giving(spec, set_vars, scores, classes), None)
    if var is not None:
        return f"give --set {var}={classes}"
    last = _last_linear(spec.root)
    where = f" (at {last.origin.mark})" if last is not None and last.origin.mark else ""
    return f"make the last linear layer{where} `linear: {classes}`"


def _vars_giving(spec: Spec, set_vars: list[str], scores: int, classes: int):
    """The spec's vars whose value is the current score count and which, set to `classes`, give
    exactly `classes` scores."""
    from netspec.lang.spec import loads
    from netspec.shapes.inference import check

    candidates = [n for n, v in spec.vars.items() if type(v) is int and v == scores]
    candidates.sort(key=lambda n: "class" not in n.lower())  # `classes`, `num_classes` first
    filename = spec.input_mark.file if spec.input_mark else spec.name
    for name in candidates[:MAX_VAR_TRIES]:
        try:
            changed = loads(spec.text, filename, [*set_vars, f"{name}={classes}"],
                            base_dir=spec.path.parent if spec.path else None)
            if tuple(check(changed).output) == (classes,):
                yield name
        except NetspecError:
            continue


def _last_linear(node):
    """The last `linear` layer of a spec tree, in execution order (None if there is none)."""
    from netspec.lang.ir import LayerNode

    if isinstance(node, LayerNode):
        return node if node.kind == "linear" else None
    children = [c for part in ("nodes", "paths") for c in getattr(node, part, []) or []]
    body = getattr(node, "body", None)
    for child in reversed(children + ([body] if body is not None else [])):
        found = _last_linear(child)
        if found is not None:
            return found
    return None


def _labels_mark(spec: Spec):
    """Where `labels:` is written (the spec is re-read only for this error)."""
    from netspec.lang.source import parse_yaml

    filename = spec.input_mark.file if spec.input_mark else spec.name
    try:
        return parse_yaml(spec.text, filename).value_marks.get("labels")
    except (NetspecError, AttributeError):
        return None


def _labels_problem(labels: list[str], classes: list[str], data_name: str) -> str:
    if len(labels) != len(classes):
        return (f"the spec names {len(labels)} classes {_names(labels)}, {data_name} has {len(classes)} "
                f"{_names(classes)}")
    order = " (the same names in another order)" if sorted(labels) == sorted(classes) else ""
    return (f"the spec's labels {_names(labels)} are not the classes of {data_name} {_names(classes)}{order}: "
            f"{_first_difference(classes, labels, 'the spec says')}")


def _first_difference(expected: list[str], given: list[str], given_is: str = "the data has") -> str:
    i = next(i for i, (a, b) in enumerate(zip(expected, given)) if a != b)
    return f"output {i} is trained as {json.dumps(expected[i])}, {given_is} {json.dumps(given[i])}"


def _names(names: list[str], limit: int | None = SHOWN_NAMES) -> str:
    """A list of class names as JSON, the first `limit` of a long one."""
    if limit is None or len(names) <= limit:
        return json.dumps(list(names), ensure_ascii=False)
    return json.dumps(list(names[:limit]), ensure_ascii=False)[:-1] + f", … {len(names)} in all]"
