"""Dynamic height and width: a spec with `input: [3, H, W]` exported once, for every size it allows.

`check` derives what the sizes must satisfy (netspec.shapes.constraints): a minimum per symbol,
and — where differently rounded paths merge — the residues allowed modulo a period. Here those
conditions become one `SizeRule` per symbol (min, period, residues), combined over every merge,
and a `DynamicInput`: what an exporter gives torch.export (`torch_dynamic_shapes`), the sizes
parity is verified at (`parity_sizes`), the record the model card carries (`record`,
`netspec.input_constraints`) and, for `netspec infer`, whether an image's size is allowed and the
nearest allowed size when it is not (`fit`).

A spec whose weights depend on a symbol (lenet's first `linear` after a flatten) has weights for
one size class only: it is refused, naming the layer, with the hint to give concrete sizes.

The record read back from a file is untrusted: netspec.modelcard validates every key and value
(`check_input_constraints`) before `from_card` builds the rules from it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from netspec.errors import ExportError
from netspec.modelcard import MAX_INPUT_SIDE, MAX_RECORD_PERIOD

# Pixels (H × W) of one onnxruntime call in `netspec infer` of a dynamic-size model: an image
# above it is scaled down to fit (keeping its aspect), and images of one size are run in chunks
# within it, so the activations of an untrusted 8192×8192 image never reach the runtime.
MAX_KEPT_PIXELS = 2048 * 2048
# The equality checks deriving the residues, in total (as check's own budget): a spec with
# thousands of merges is refused in bounded time instead of walked.
MAX_RULE_EVALUATIONS = 200_000
DIMENSION_HINT = "give concrete sizes, e.g. --input 3x224x224"


@dataclass(frozen=True)
class SizeRule:
    """The sizes one symbol allows: n ≥ min with n mod period in residues (and ≤ MAX_INPUT_SIDE)."""

    symbol: str
    dims: tuple[int, ...]  # the axes of the C×H×W sample it sizes (1: H, 2: W; both for `[3, S, S]`)
    min: int
    period: int = 1
    residues: tuple[int, ...] = (0,)

    def allows(self, n: int) -> bool:
        return self.min <= n <= MAX_INPUT_SIDE and n % self.period in self.residues

    def at_least(self, n: int) -> int | None:
        """The smallest allowed size ≥ n (None past MAX_INPUT_SIDE)."""
        n = max(n, self.min)
        base = n - n % self.period
        for start in (base, base + self.period):
            for r in self.residues:
                if start + r >= n:
                    return start + r if start + r <= MAX_INPUT_SIDE else None
        return None

    def at_most(self, n: int) -> int:
        """The largest allowed size ≤ n, or the minimum when none is."""
        n = min(n, MAX_INPUT_SIDE)
        base = n - n % self.period
        for start in (base, base - self.period):
            for r in reversed(self.residues):
                if self.min <= start + r <= n:
                    return start + r
        return self.min

    def nearest(self, n: int) -> int:
        """The allowed size closest to n (the larger one on a tie)."""
        up, down = self.at_least(n), self.at_most(n)
        if up is None or (down <= n and n - down < up - n):
            return down
        return up

    def broken(self, n: int) -> str:
        """The condition n breaks."""
        if n < self.min:
            return f"{self.symbol} ≥ {self.min}"
        if n > MAX_INPUT_SIDE:
            return f"{self.symbol} ≤ {MAX_INPUT_SIDE:,}"
        return f"{self.symbol} mod {self.period} = {' or '.join(map(str, self.residues))}"

    def text(self) -> str:
        if self.period == 1:
            return f"{self.symbol} ≥ {self.min}"
        return f"{self.symbol} ≥ {self.min}, {self.symbol} mod {self.period} = {' or '.join(map(str, self.residues))}"

    def record(self) -> dict:
        return {"dims": list(self.dims), "min": self.min, "period": self.period, "residues": list(self.residues)}


@dataclass(frozen=True)
class DynamicInput:
    """An input C×H×W with open sizes (None in `shape`) and the rule of each symbol."""

    shape: tuple  # C×H×W, None where open
    rules: tuple[SizeRule, ...]

    def concrete(self, sizes: dict[str, int]) -> list[int]:
        """The sample shape with each symbol at `sizes[symbol]`."""
        shape = list(self.shape)
        for rule in self.rules:
            for d in rule.dims:
                shape[d] = sizes[rule.symbol]
        return shape

    @property
    def smallest(self) -> list[int]:
        return self.concrete({r.symbol: r.min for r in self.rules})

    @property
    def parity_sizes(self) -> list[list[int]]:
        """The smallest allowed size, and a larger one, non-square where H and W are separate symbols
        (32×32 and 48×64 for minimums of 32): the two sizes parity is verified at."""
        large = {}
        for i, rule in enumerate(self.rules):
            goal = max(2 * rule.min, 64) if i else max((3 * rule.min + 1) // 2, 48)
            large[rule.symbol] = rule.at_least(goal) or rule.at_most(MAX_INPUT_SIDE)
        sizes = [self.smallest, self.concrete(large)]
        return sizes if sizes[0] != sizes[1] else sizes[:1]

    @property
    def example(self) -> list[int]:
        """The size the exporter traces at: the larger parity size (no size 1, which torch specialises)."""
        return self.parity_sizes[-1]

    def torch_dynamic_shapes(self, batch: bool = True) -> tuple:
        """torch.export's `dynamic_shapes` for a model of one input N×C×H×W: a named Dim per symbol
        (min from `check`; the same Dim for axes a symbol shares) and, when `batch`, the batch."""
        import torch

        names = {r.symbol for r in self.rules}
        axes = {}
        if batch:
            axes[0] = torch.export.Dim(next(n for n in ("batch", "batch_", "batch__") if n not in names),
                                       min=1, max=65536)
        for rule in self.rules:
            dim = torch.export.Dim(rule.symbol, min=rule.min, max=MAX_INPUT_SIDE)
            for d in rule.dims:
                axes[d + 1] = dim
        return (axes,)

    def record(self) -> dict:
        """The model card's `input_constraints`: {symbol: {dims, min, period, residues}}."""
        return {rule.symbol: rule.record() for rule in self.rules}

    def text(self) -> str:
        return "; ".join(rule.text() for rule in self.rules)

    def shape_text(self) -> str:
        """C×H×W with each open size named by its symbol: 3×H×W."""
        names = {d: rule.symbol for rule in self.rules for d in rule.dims}
        return "×".join(names.get(i, str(d)) for i, d in enumerate(self.shape))

    def fit(self, height: int, width: int) -> tuple[int, int, str | None]:
        """The size an image of height × width is run at: its own when allowed (and within
        MAX_KEPT_PIXELS), else the nearest allowed size; with the reason, None when kept."""
        size, why, needs = {1: height, 2: width}, [], []
        if height * width > MAX_KEPT_PIXELS:
            scale = math.sqrt(MAX_KEPT_PIXELS / (height * width))
            size = {1: max(1, int(height * scale)), 2: max(1, int(width * scale))}
            why.append(f"infer runs at most {MAX_KEPT_PIXELS:,} pixels")
        for rule in self.rules:
            wanted = [size[d] for d in rule.dims]
            if len(set(wanted)) == 1 and rule.allows(wanted[0]):
                continue
            needs.append(" = ".join("HW"[d - 1] for d in rule.dims) if len(set(wanted)) > 1 else rule.broken(wanted[0]))
            fitted = rule.nearest(round(sum(wanted) / len(wanted)))
            for d in rule.dims:
                size[d] = fitted
        while size[1] * size[2] > MAX_KEPT_PIXELS and self._shrink(size):
            pass
        if needs:
            why.append(f"the model needs {' and '.join(needs)}")
        if (size[1], size[2]) == (height, width):
            return height, width, None
        return size[1], size[2], "; ".join(why)

    def _shrink(self, size: dict) -> bool:
        """One step down for the larger side (rounding up to an allowed size overshot a bound)."""
        for rule in sorted(self.rules, key=lambda r: -size[r.dims[0]]):
            smaller = rule.at_most(size[rule.dims[0]] - 1)
            if smaller < size[rule.dims[0]]:
                for d in rule.dims:
                    size[d] = smaller
                return True
        return False


def dynamic_input(source) -> DynamicInput | None:
    """The dynamic input of a Source (or a ModelCard), None when its sizes are all fixed; its
    card's record is the validated one (netspec.modelcard)."""
    card = getattr(source, "card", source)
    return from_card(card.input_shape, card.input_constraints)


def from_card(shape: list, record: dict | None) -> DynamicInput | None:
    """Rules from a record that netspec.modelcard.check_input_constraints accepted."""
    if all(d is not None for d in shape) or not record:  # fixed, or open sizes no netspec rules describe
        return None
    rules = []
    for symbol, v in sorted((record or {}).items(), key=lambda item: item[1]["dims"][0]):
        rule = SizeRule(symbol, tuple(v["dims"]), v["min"], v["period"], tuple(v["residues"]))
        first = rule.at_least(rule.min)  # a record may give a minimum its residues do not allow
        rules.append(SizeRule(symbol, rule.dims, first, rule.period, rule.residues))
    return DynamicInput(tuple(shape), tuple(rules))


# -- from a spec ---------------------------------------------------------------------------------

def of_spec(spec) -> DynamicInput:
    """The rules of a symbolic spec, from the conditions `check` collects; refused (ExportError)
    when a layer's weights depend on a symbol or a condition cannot be expressed as rules."""
    from netspec.shapes import symbolic as sym
    from netspec.shapes.constraints import minimum_sizes
    from netspec.shapes.inference import Walker

    walker = Walker(spec)
    report = walker.run()
    _refuse_size_dependent_weights(spec, report, walker.ctx.constraints)
    shape = tuple(d if isinstance(d, int) else None for d in spec.input)
    if len(shape) != 3 or shape[0] is None:
        raise ExportError.at(spec.input_mark, "input", f"dynamic sizes need an input C×H×W with C fixed, got "
                             f"{'×'.join(map(str, spec.input))}", DIMENSION_HINT)
    seen = {}
    for c in walker.ctx.constraints:  # each condition once: a block used 1,000 times repeats them
        seen.setdefault((c.relation, c.value, c.bound), c)
    constraints = list(seen.values())
    for c in constraints:
        if len(sym.symbols(c.value) | sym.symbols(c.bound)) > 1:
            raise _refused(c, f"{sym.fmt(c.value)} {'=' if c.relation == '==' else '≥'} {sym.fmt(c.bound)} ties "
                           "two sizes together, which dynamic axes cannot express")
    minimum = minimum_sizes(constraints, list(spec.symbols))
    budget = [MAX_RULE_EVALUATIONS]
    rules = []
    for symbol in spec.symbols:
        dims = tuple(i for i, d in enumerate(spec.input) if not isinstance(d, int) and sym.symbols(d) == {symbol})
        equalities = [c for c in constraints if c.relation == "==" and sym.symbols(c.value) | sym.symbols(c.bound)
                      == {symbol}]
        rules.append(_rule(symbol, dims, minimum[symbol], equalities, budget))
    return DynamicInput(shape, tuple(rules))


def _rule(symbol: str, dims: tuple, least: int, equalities: list, budget: list[int]) -> SizeRule:
    """min, period and residues of one symbol: every equality checked over one period from the
    minimum and again eight periods later (the residues must repeat, as check requires)."""
    from netspec.shapes import symbolic as sym

    if least > MAX_INPUT_SIDE:
        raise ExportError.at(None, "input", f"{symbol} must be ≥ {least:,}, above the limit of {MAX_INPUT_SIDE:,}")
    period = 1
    for c in equalities:
        found = sym.period_within(c.value, c.bound, limit=MAX_RECORD_PERIOD)
        period = math.lcm(period, found) if found is not None else MAX_RECORD_PERIOD + 1
        if period > MAX_RECORD_PERIOD:
            raise _refused(c, f"the sizes of {symbol} where it holds repeat with a period over {MAX_RECORD_PERIOD:,}")

    def holds(n: int) -> bool:
        return all(sym.evaluate(c.value, {symbol: n}) == sym.evaluate(c.bound, {symbol: n}) for c in equalities)

    budget[0] -= 2 * period * max(1, len(equalities))
    if budget[0] < 0:
        raise ExportError.at(None, "input", f"deciding the sizes {symbol} allows takes over {MAX_RULE_EVALUATIONS:,} "
                             "evaluations", DIMENSION_HINT)
    residues = sorted({n % period for n in range(least, least + period) if holds(n)})
    later = sorted({n % period for n in range(least + 8 * period, least + 9 * period) if holds(n)})
    if not residues or residues != later:
        raise ExportError.at(None, "input", f"no repeating set of sizes satisfies every merge along {symbol}",
                             DIMENSION_HINT)
    first = min(n for n in range(least, least + period) if n % period in residues)
    return SizeRule(symbol, dims, first, period, tuple(residues))


def _refuse_size_dependent_weights(spec, report, constraints) -> None:
    from netspec.shapes import symbolic as sym

    for row in report.rows:
        depends = sorted(sym.symbols(row.params) | sym.symbols(row.buffers)) if row.leaf else []
        if depends:
            shape = "×".join(sym.fmt(d) for d in spec.input)
            raise ExportError.at(row.origin.mark, f"{row.origin.path} {row.kind}".strip(),
                                 f"its weights depend on {', '.join(depends)} ({sym.fmt(row.params)} parameters): "
                                 f"the input {shape} cannot be dynamic",
                                 f"give concrete sizes, e.g. --input {_example_input(spec, constraints)}")


def _example_input(spec, constraints) -> str:
    """C×H×W at sizes the spec takes: 32, or check's minimum where that is larger."""
    from netspec.shapes.constraints import minimum_sizes

    try:
        least = minimum_sizes(constraints, list(spec.symbols))
    except Exception:  # no size satisfies them: check reports that itself
        least = {}
    return "x".join(str(d) if isinstance(d, int) else str(max(32, least.get(_name(d), 1))) for d in spec.input)


def _refused(c, message: str) -> ExportError:
    where = f"{c.origin.path}" if c.origin else "input"
    return ExportError.at(c.origin.mark if c.origin else None, where, f"dynamic sizes: {message}", DIMENSION_HINT)


def _name(d) -> str:
    from netspec.shapes import symbolic as sym

    return sym.fmt(d)


@contextlib.contextmanager
def native_ceil_pools(model) -> Iterator[None]:
    """Within the block, the export rewrites of ceil_mode pools (netspec.exporters.ceil_pool, which
    sizes its padding in Python, at one size) are plain pools again where ONNX's rounding is
    PyTorch's at every size: stride 1 (nothing is rounded), or a max pool without padding whose
    kernel ≥ stride (torch's last window then never starts in padding). Other ceil_mode pools are
    refused, naming the module: their output size would be fixed. torch's symbolic-shape solver's
    warnings (tracebacks for floors it cannot reduce) are silenced for the block."""
    from netspec.exporters.ceil_pool import FloorAvgPool, FloorMaxPool

    swapped = []
    for qualified, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, (FloorMaxPool, FloorAvgPool)):
                continue
            native = _native_pool(child)
            if native is None:
                raise ExportError.at(None, f"{qualified}.{name}".lstrip("."), "this ceil_mode pool rounds its output "
                                     "size differently in ONNX at some sizes: it cannot have dynamic sizes",
                                     DIMENSION_HINT)
            swapped.append((parent, name, child))
            setattr(parent, name, native)
    solver = logging.getLogger("torch.fx.experimental.symbolic_shapes")
    level = solver.level
    solver.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():  # torch.onnx: "The axis name: S will not be used" for `[3, S, S]`
            warnings.filterwarnings("ignore", message=r".*axis name.*will not be used")
            yield
    finally:
        solver.setLevel(level)
        for parent, name, child in swapped:
            setattr(parent, name, child)


def _native_pool(pool):
    from torch import nn

    from netspec.exporters.ceil_pool import FloorMaxPool

    if all(s == 1 for s in pool.stride):  # ceil_mode rounds nothing
        if isinstance(pool, FloorMaxPool):
            return nn.MaxPool2d(pool.kernel, pool.stride, pool.padding, pool.dilation)
        return nn.AvgPool2d(pool.kernel, pool.stride, pool.padding, count_include_pad=pool.count_include_pad)
    if isinstance(pool, FloorMaxPool) and pool.padding == (0, 0) and pool.dilation == (1, 1) \
            and all(k >= s for k, s in zip(pool.kernel, pool.stride)):
        return nn.MaxPool2d(pool.kernel, pool.stride, 0, 1, ceil_mode=True)
    return None


def traceable_minimums(spec, dynamic: DynamicInput) -> dict[str, int]:
    """Per symbol, the least allowed size at which every size in the network that depends on it is
    at least 2. torch.export specialises sizes 0 and 1, so a program traced with a Dim whose range
    lets an intermediate size reach 1 fails its guards (resnet18 at `3xHxW`: H, W ≥ 33, where
    `check` allows H, W ≥ 1). A symbol whose sizes never reach 2 keeps its minimum (and the trace
    then fails as before)."""
    from netspec.shapes import symbolic as sym
    from netspec.shapes.inference import Walker

    report = Walker(spec).run()
    dims = [d for row in report.rows if row.output is not None for d in row.output if sym.symbols(d)]
    env = {rule.symbol: rule.min for rule in dynamic.rules}
    for rule in dynamic.rules:
        own = [d for d in dims if rule.symbol in sym.symbols(d)]

        def traceable(n: int, rule=rule, own=own) -> bool:
            size = rule.at_least(n)
            return size is not None and all(sym.evaluate(d, {**env, rule.symbol: size}) >= 2 for d in own)

        least = sym.smallest_satisfying(traceable, start=rule.min, limit=MAX_INPUT_SIDE)
        env[rule.symbol] = rule.at_least(least) if least is not None else rule.min
    return env
