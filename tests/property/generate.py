"""Hypothesis strategies that generate random netspec specs (valid and invalid) and their YAML."""

from __future__ import annotations

import os

import pytest
from hypothesis import strategies as st

torch = pytest.importorskip("torch")


BATCH = 2
MAX_EXAMPLES = int(os.environ.get("NETSPEC_PROPERTY_EXAMPLES", "250"))
DERANDOMIZE = not os.environ.get("NETSPEC_PROPERTY_RANDOM")

ACTIVATIONS = ["relu", "relu6", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "leaky_relu", "gelu",
               "softmax", "log_softmax"]


# ==============================================================================================
# The generator: a spec as a Python structure (items) and as YAML text
# ==============================================================================================

def as_pair(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def item(kind, args=None, **keys):
    """One layer entry: {type, args, name, from, repeat, trainable}."""
    return {"type": kind, "args": args, **{k: v for k, v in keys.items() if v is not None}}


def flow(value) -> str:
    """A YAML flow value: `{out: 4, kernel: [3, 1]}`."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)  # ints, floats, and plain words (auto, same, reflect, ...)


def emit(items, indent: int) -> list[str]:
    """Block-style YAML lines for a layer list (macros nest their lists in block style)."""
    pad = " " * indent
    lines = []
    for entry in items:
        kind, args = entry["type"], entry["args"]
        keys = [f"{k}: {flow(entry[k])}" for k in ("name", "from", "repeat", "trainable") if k in entry]
        if kind in ("residual", "parallel"):
            lines.append(f"{pad}- {kind}:")
            if kind == "residual":
                lines.append(f"{pad}    body:")
                lines += emit(args["body"], indent + 6)
                if isinstance(args["shortcut"], str):
                    lines.append(f"{pad}    shortcut: {args['shortcut']}")
                else:
                    lines.append(f"{pad}    shortcut:")
                    lines += emit(args["shortcut"], indent + 6)
            else:
                lines.append(f"{pad}    paths:")
                for path in args["paths"]:
                    lines.append(f"{pad}      -")
                    lines += emit(path, indent + 8)
                lines.append(f"{pad}    merge: {args['merge']}")
        elif args is None and not keys:
            lines.append(f"{pad}- {kind}")
        else:
            lines.append(f"{pad}- {kind}:" + ("" if args is None else f" {flow(args)}"))
        lines += [f"{pad}  {k}" for k in keys]
    return lines


def to_yaml(spec) -> str:
    return "\n".join(["name: prop", f"input: {flow(list(spec['input']))}", "layers:",
                      *emit(spec["layers"], 2)]) + "\n"


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


class Gen:
    """Draws items while tracking the channel count (None once flattened), so that `groups`,
    parallel `add` and the like are valid often enough — but not always."""

    def __init__(self, draw, channels: int):
        self.draw = draw
        self.c: int | None = channels
        self.names = 0

    def d(self, strategy):
        return self.draw(strategy)

    def chance(self, p: float) -> bool:
        """True with probability p; shrinks towards False (the plainer spec)."""
        return self.d(st.integers(0, 999)) >= 1000 - int(p * 1000)

    def pick(self, *options):
        return self.d(st.sampled_from(options))

    def fresh_name(self) -> str:
        self.names += 1
        return f"n{self.names}"

    def pair(self, lo: int, hi: int, pair_chance: float = 0.15):
        if self.chance(pair_chance):
            return [self.d(st.integers(lo, hi)), self.d(st.integers(lo, hi))]
        return self.d(st.integers(lo, hi))

    def node_keys(self, entry, repeatable: bool = True):
        if repeatable and self.chance(0.06):
            entry["repeat"] = self.d(st.integers(2, 3))
        if self.chance(0.05):
            entry["trainable"] = False
        return entry

    # -- layers -----------------------------------------------------------------------------------
    def conv(self, small: bool = False, aligned: bool = False):
        """A conv; `aligned` ones keep H×W (or halve it with stride 2), as real networks do."""
        c = self.c or self.d(st.integers(1, 8))
        mode = self.pick(*["one"] * 6 + ["divides"] * 3 + ["any"])
        groups = 1 if mode == "one" else self.pick(*divisors(c)) if mode == "divides" else self.d(st.integers(2, 4))
        out = self.d(st.integers(1, 12))
        if groups > 1 and self.chance(0.9):
            out = groups * self.d(st.integers(1, max(1, 12 // groups)))
        if aligned:
            kernel = self.pick(1, 3, 3, 5)
            args = {"out": out, "kernel": kernel}
            if self.chance(0.3):
                args["stride"] = 2
            args["padding"] = "same" if "stride" not in args and self.chance(0.3) else kernel // 2
            if groups != 1:
                args["groups"] = groups
            if self.chance(0.3):
                args["bias"] = self.d(st.booleans())
            self.c = out
            return self.node_keys(item("conv", args))
        args = {"out": out, "kernel": self.pair(1, 3 if small else 5)}
        stride = self.pair(1, 2 if small else 3, 0.1) if self.chance(0.5) else 1
        if stride != 1:
            args["stride"] = stride
        padding_kind = self.pick("int", "int", "int", "pair", "same", "valid", "none")
        if padding_kind == "same":
            if stride == 1 or self.chance(0.1):  # strided `same` is an error, now and then
                args["padding"] = "same"
        elif padding_kind == "valid":
            args["padding"] = "valid"
        elif padding_kind == "int":
            args["padding"] = self.d(st.integers(0, 1 if small else 3))
        elif padding_kind == "pair":
            args["padding"] = [self.d(st.integers(0, 3)), self.d(st.integers(0, 3))]
        if self.chance(0.2):
            args["dilation"] = self.pair(1, 2, 0.2)
        if groups != 1 or self.chance(0.1):
            args["groups"] = groups
        if self.chance(0.3):
            args["bias"] = self.d(st.booleans())
        if self.chance(0.2):
            args["padding_mode"] = self.pick("zeros", "reflect", "replicate", "circular")
        entry = self.node_keys(item("conv", args))
        self.c = out
        return entry

    def pool(self, kind: str | None = None):
        kind = kind or self.pick("maxpool", "avgpool")
        kernel = self.pair(1, 4)
        args = {"kernel": kernel}
        if self.chance(0.6):
            args["stride"] = self.pair(1, 3, 0.1)
        if self.chance(0.4):  # at most half the window, but now and then more
            limit = 2 if self.chance(0.3) else min(as_pair(kernel)) // 2
            args["padding"] = self.pair(0, limit, 0.1)
        if self.chance(0.3):
            args["ceil_mode"] = self.d(st.booleans())
        if kind == "maxpool" and self.chance(0.25):
            args["dilation"] = self.pair(1, 2, 0.2)
        if kind == "avgpool" and self.chance(0.15):
            args["count_include_pad"] = self.d(st.booleans())
        if list(args) == ["kernel"] and self.chance(0.5):
            args = kernel  # short form `maxpool: 2`
        return self.node_keys(item(kind, args))

    def adaptive(self):
        output = self.pair(1, 4, 0.3)
        return self.node_keys(item("adaptive_avgpool", output if self.chance(0.5) else {"output": output}),
                              repeatable=False)

    def activation(self):
        kind = self.pick(*ACTIVATIONS)
        if kind == "leaky_relu" and self.chance(0.5):
            return item(kind, self.pick(0.1, 0.2))
        if kind == "gelu" and self.chance(0.3):
            return item(kind, {"approximate": "tanh"})
        return item(kind)

    def norm(self):
        kind = self.pick("bn", "bn", "bn", "bn", "gn", "ln")
        if kind == "gn":
            c = self.c or 1
            groups = self.pick(*divisors(c)) if self.chance(0.7) else self.d(st.integers(2, 4))
            return self.node_keys(item("gn", groups if self.chance(0.5) else {"groups": groups}), False)
        if kind == "bn" and self.chance(0.15):
            return self.node_keys(item("bn", {"affine": self.d(st.booleans()),
                                              "track_running_stats": self.d(st.booleans())}))
        return self.node_keys(item(kind))

    def dropout(self):
        kind = self.pick("dropout", "dropout", "dropout2d")
        p = self.pick(None, 0.0, 0.1, 0.5, 0.9)
        return item(kind, p)

    def se(self):
        reduction = self.d(st.integers(1, 8 if self.c is None or self.chance(0.2) else max(1, min(8, self.c))))
        if self.chance(0.5):
            return self.node_keys(item("se", reduction if self.chance(0.5) else {"reduction": reduction}), False)
        # the generalised se: hidden width given or rounded, its activation, gate and form
        args = {"hidden": self.d(st.integers(1, 6))} if self.chance(0.3) else {"reduction": reduction}
        if "reduction" in args and self.chance(0.4):
            args["divisor"] = self.pick(1, 2, 4, 8)
        if self.chance(0.05):
            args["reduction"] = reduction  # with `hidden`: an error
        if self.chance(0.5):
            args["act"] = self.pick("relu", "silu", "hardswish", "gelu")
        if self.chance(0.5):
            args["gate"] = self.pick("sigmoid", "hardsigmoid")
        if self.chance(0.6):
            args["form"] = self.pick("linear", "conv")
        return self.node_keys(item("se", args), False)

    def modern(self):
        """ConvNeXt / EfficientNet layers that keep the channel count (or change it, for linear)."""
        which = self.pick("stochastic_depth", "layer_scale", "ln_channels", "linear_channels", "permute")
        if which == "stochastic_depth":
            p = self.pick(0.0, 0.2, 0.5)
            return item(which, p if self.chance(0.5) else {"p": p, "mode": self.pick("row", "batch")})
        if which == "layer_scale":
            return self.node_keys(item(which, self.pick(None, 1e-6, 0.5)), False)
        if which == "ln_channels":
            return self.node_keys(item("ln", {"over": self.pick("channels", "last"), "eps": 1e-6}), False)
        if which == "linear_channels":  # on a vector too, where it is the plain linear
            out = self.d(st.integers(1, 8))
            self.c = out if self.c is not None else None
            return self.node_keys(item("linear", {"out": out, "over": "channels"}), False)
        dims = [0, *self.d(st.permutations([1, 2, 3]))] if self.chance(0.85) else self.pick([1, 0, 2, 3], [0, 2, 1])
        self.c = None if dims[1] != 1 else self.c  # a lone permute: its channels are another axis
        return item("permute", dims)

    def channels_last(self) -> list:
        """ConvNeXt's block body: channels-last, ln and linear over the last axis, channels-first again."""
        items = [item("permute", [0, 2, 3, 1])]
        for _ in range(self.d(st.integers(1, 3))):
            which = self.pick("ln", "linear", "linear", "gelu", "layer_scale")
            if which == "ln":
                items.append(item("ln", {"over": "last", "eps": 1e-6}))
            elif which == "linear":
                out = self.d(st.integers(1, 8))
                items.append(self.node_keys(item("linear", {"out": out, "over": "last"}), False))
                self.c = out
            else:
                items.append(item(which))  # layer_scale on H×W×C scales the H axis: valid, if odd
        items.append(item("permute", [0, 3, 1, 2]))
        return items

    def flatten_linear(self):
        items = [item("flatten")]
        self.c = None
        for _ in range(self.d(st.integers(0, 2))):
            items.append(self.pick(item("relu"), item("bn"), item("dropout", 0.5), item("tanh"),
                                   item("gn", self.pick(1, 2, 3, 4))))  # gn on a vector: groups of features
        items.append(self.node_keys(item("linear", self.d(st.integers(1, 10))), False))
        if self.chance(0.3):
            items.append(item("relu"))
            items.append(item("linear", {"out": self.d(st.integers(1, 10)), "bias": self.d(st.booleans())}))
        return items

    # -- macros -----------------------------------------------------------------------------------
    def residual(self):
        c_in = self.c
        shortcut = self.pick("auto", "auto", "auto", "auto", "auto", "identity", "layers")
        keep = shortcut == "identity" and c_in is not None and self.chance(0.75)  # body keeps the shape
        body, stride, tidy = [], 1, True
        for _ in range(self.d(st.integers(1, 3))):
            which = self.pick("conv", "conv", "bn", "relu")
            if which != "conv":
                body.append(item(which))
                continue
            aligned = keep or self.chance(0.75)
            entry = self.conv(small=True, aligned=aligned)
            if keep:
                entry["args"].update(out=c_in)
                entry["args"].pop("stride", None)
                entry["args"].pop("groups", None)
                self.c = c_in
            tidy = tidy and aligned
            stride *= entry["args"].get("stride", 1) if aligned else 1
            body.append(entry)
        if shortcut == "layers":
            c_out = self.c
            if tidy and c_out is not None and self.chance(0.8):  # the projection, written out
                shortcut = [item("conv", {"out": c_out, "kernel": 1, "stride": stride, "bias": False}), item("bn")]
            else:
                self.c = c_in
                shortcut = [self.conv(small=True)]
                if self.chance(0.5):
                    shortcut.append(item("bn"))
            self.c = c_out
        return self.node_keys(item("residual", {"body": body, "shortcut": shortcut}))

    def parallel(self):
        c_in = self.c
        merge = self.pick("concat", "add")
        # mostly every path ends with the same channels and keeps H×W, so the merge works
        common = self.d(st.integers(1, 8)) if self.chance(0.8 if merge == "add" else 0.4) else None
        aligned = self.chance(0.7)
        paths, outs = [], []
        for _ in range(self.d(st.integers(2, 3))):
            self.c = c_in
            path = []
            for position in range(self.d(st.integers(1, 2))):
                which = self.pick("conv", "conv", "conv", "maxpool", "avgpool", "bn", "relu", "identity")
                if common is not None and position == 0:
                    which = "conv"
                if which == "conv":
                    entry = self.conv(small=True, aligned=aligned)
                    if aligned:
                        entry["args"].pop("stride", None)
                    if common is not None:
                        entry["args"]["out"] = common
                        entry["args"].pop("groups", None)
                        self.c = common
                    path.append(entry)
                elif which in ("maxpool", "avgpool"):
                    path.append(item(which, {"kernel": 3, "stride": 1, "padding": 1}) if aligned else self.pool(which))
                else:
                    path.append(item(which))
            paths.append(path)
            outs.append(self.c)
        self.c = (sum(outs) if None not in outs else None) if merge == "concat" else outs[0]
        return self.node_keys(item("parallel", {"paths": paths, "merge": merge}), repeatable=False)

    def skip(self):
        """A hand-written graph: a named tap, a few layers, then add / mul / concat of both."""
        c_in = self.c
        tap = self.fresh_name()
        items = [item("identity", name=tap)]
        shape = self.pick("layers", "layers", "layers", "gate", "gate", "vector")
        if shape == "gate":  # squeeze to C×1×1, the classic `mul` gate
            items += [item("global_avgpool"), item(self.pick("sigmoid", "relu"))]
        elif shape == "vector":  # a vector meets a feature map: rank mismatch
            self.c = c_in
            items += self.flatten_linear()
        else:
            for _ in range(self.d(st.integers(1, 3))):
                items.append(self.simple())
        last = self.fresh_name()
        items[-1] = {**items[-1], "name": last}
        items[-1].pop("repeat", None)
        merge = self.pick("add", "add", "mul", "concat")
        order = [tap, last] if self.chance(0.5) else [last, tap]
        items.append(item(merge, **{"from": order}))
        self.c = c_in if merge != "concat" or self.c is None or c_in is None else c_in + self.c
        return items

    def shuffle(self) -> list:
        """ShuffleNetV2's plumbing: a split, a concat of (some of) its parts in any order, a shuffle."""
        c = self.c or 1
        chunks = self.pick(*([d for d in divisors(c) if 2 <= d <= 4] or [2])) if self.chance(0.9) else self.pick(2, 3)
        name = self.fresh_name()
        items = [item("split", chunks if self.chance(0.7) else {"chunks": chunks}, name=name)]
        parts = self.d(st.permutations([f"{name}.{i}" for i in range(chunks)]))[:self.d(st.integers(2, chunks))]
        items.append(item("concat", **{"from": parts}))
        self.c = None if self.c is None else self.c // chunks * len(parts)
        if self.chance(0.7):
            c = self.c or 1
            groups = self.pick(*divisors(c)) if self.chance(0.9) else self.d(st.integers(2, 4))
            items.append(item("channel_shuffle", groups if self.chance(0.7) else {"groups": groups}))
        return items

    def simple(self):
        which = self.pick("conv", "conv", "conv", "pool", "pool", "adaptive", "global", "norm", "activation",
                          "activation", "dropout", "se", "identity", "vgg", "modern", "modern")
        if which == "modern":
            return self.modern()
        if which == "conv":
            return self.conv()
        if which == "pool":
            return self.pool()
        if which == "adaptive":
            return self.adaptive()
        if which == "global":
            return item("global_avgpool")
        if which == "norm":
            return self.norm()
        if which == "activation":
            return self.activation()
        if which == "dropout":
            return self.dropout()
        if which == "se":
            return self.se()
        if which == "vgg":
            cfg = [self.pick(1, 2, 4, 8, "M") for _ in range(self.d(st.integers(1, 4)))]
            cfg[0] = cfg[0] if cfg[0] != "M" or self.chance(0.3) else 4
            numbers = [n for n in cfg if n != "M"]
            self.c = numbers[-1] if numbers else self.c
            args = {"cfg": cfg, "batch_norm": True} if self.chance(0.5) else cfg
            return self.node_keys(item("vgg", args), repeatable=False)
        return item("identity")

    def token_seq(self) -> list:
        """ViT layers: a map to tokens, class token, position embedding, per-token layers, then
        mostly the class token as a vector; now and then the L×D sequence is left for what follows,
        or `tokens` meets a vector."""
        items = [item("tokens")]
        width = self.c
        self.c = None
        if self.chance(0.6):
            items.append(item("class_token"))
        if self.chance(0.6):
            items.append(item("pos_embedding"))
        for _ in range(self.d(st.integers(0, 3))):
            which = self.pick("mlp", "mlp", "token_ln", "residual", "gelu", "dropout", "attention", "attention")
            if which == "attention":
                divisors = [h for h in range(1, (width or 1) + 1) if (width or 1) % h == 0]
                heads = self.pick(*divisors) if self.chance(0.9) else self.d(st.integers(1, 6))  # may not divide
                items.append(self.node_keys(item("attention", {"heads": heads})))
            elif which == "mlp":
                hidden = self.d(st.integers(1, 12))
                args = hidden if self.chance(0.5) else {"hidden": hidden, "dropout": self.pick(0.0, 0.1)}
                items.append(self.node_keys(item("mlp", args)))
            elif which == "token_ln":
                items.append(self.node_keys(item("token_ln", self.pick(None, {"eps": 0.001})), False))
            elif which == "residual":
                body = [item("token_ln"), item("mlp", self.d(st.integers(1, 8)))]
                shortcut = self.pick("auto", "identity")
                items.append(self.node_keys(item("residual", {"body": body, "shortcut": shortcut})))
            else:
                items.append(item(which))
        if self.chance(0.8):
            items.append(item("select_token", self.pick(None, 0, 0, 1, {"index": 3})))
        if width is not None and self.chance(0.1):
            items.append(item("tokens"))  # tokens of a sequence: an error
        return items

    def stack_item(self) -> list:
        which = self.pick(*(["simple"] * 40 + ["residual"] * 12 + ["parallel"] * 12 + ["skip"] * 8
                            + ["flatten", "linear"] + ["token_seq"] * 4 + ["channels_last"] * 3
                            + ["shuffle"] * 3))
        if which == "shuffle":
            return self.shuffle()
        if which == "channels_last":
            return self.channels_last()
        if which == "token_seq":
            return self.token_seq()
        if which == "simple":
            return [self.simple()]
        if which == "residual":
            return [self.residual()]
        if which == "parallel":
            return [self.parallel()]
        if which == "skip":
            return self.skip()
        if which == "flatten":  # a flatten in the middle: what follows may need a feature map
            self.c = None
            return [item("flatten")]
        return [item("linear", self.d(st.integers(1, 10)))]  # a linear that may lack its flatten


@st.composite
def specs(draw):
    size = st.integers(1, 40) | st.integers(1, 8)  # small sizes are where the edge cases are
    channels, height, width = draw(st.integers(1, 8)), draw(size), draw(size)
    gen = Gen(draw, channels)
    layers = []
    for _ in range(draw(st.integers(1, 8))):
        layers += gen.stack_item()
    tail = gen.pick("none", "none", "flatten_linear", "gap_linear", "vit")
    if tail == "vit":  # a ViT head: tokens … select_token, then a linear on the class token
        layers += gen.token_seq()
        layers.append(item("linear", gen.d(st.integers(1, 10))))
    if tail == "gap_linear":
        layers.append(item("global_avgpool"))
    if tail != "none":
        layers += gen.flatten_linear()
    return {"input": (channels, height, width), "layers": layers}


# ==============================================================================================
# The reference: the same network built directly in torch, shapes from real tensors
# ==============================================================================================

