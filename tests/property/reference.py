"""An independent torch reference for generated specs: builds each layer from the real tensor
that reaches it, never from netspec's shape rules."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torchvision.models._utils import _make_divisible  # noqa: E402
from torchvision.models.shufflenetv2 import channel_shuffle  # noqa: E402
from torchvision.ops import Permute, SqueezeExcitation, StochasticDepth  # noqa: E402

from tests.property.generate import ACTIVATIONS, BATCH  # noqa: E402

TOKEN_KINDS = ("tokens", "class_token", "pos_embedding", "attention", "mlp", "token_ln", "select_token")


class Rejected(Exception):
    """The reference refuses the network (a LANGUAGE RULE, or torch raised)."""


@dataclass
class Rec:
    """The reference's record for one item, mirroring the IR tree of `report.root`."""

    shape: tuple
    children: list | None = None  # repeat: one record per copy
    body: list | None = None  # residual
    shortcut: object = None  # residual: None = identity, a shape = auto projection, a list = layers
    paths: list | None = None  # parallel


def _chunks(args) -> int:
    return args["chunks"] if isinstance(args, dict) else args


def need(condition: bool, message: str):
    if not condition:
        raise Rejected(message)


class Reference:
    def __init__(self):
        self.modules: list[nn.Module] = []

    def make(self, module: nn.Module) -> nn.Module:
        module.eval()
        self.modules.append(module)
        return module

    # -- one layer ----------------------------------------------------------------------------------
    def layer(self, kind, args, x):
        if kind == "conv":
            args = dict(args)
            return self.make(nn.Conv2d(x.shape[1] if x.dim() == 4 else 1, args.pop("out"),
                                       args.pop("kernel"), **args))(x)
        if kind in ("maxpool", "avgpool"):
            args = {"kernel": args} if not isinstance(args, dict) else dict(args)
            kernel = args.pop("kernel")
            stride = args.pop("stride", None)
            cls = nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d
            need(x.dim() == 4, "pooling needs a feature map")  # torch would take a 3-D tensor as unbatched
            return self.make(cls(kernel, stride, args.pop("padding", 0), **args))(x)
        if kind == "adaptive_avgpool":
            output = args["output"] if isinstance(args, dict) else args
            need(x.dim() == 4, "adaptive pooling needs a feature map")
            return self.make(nn.AdaptiveAvgPool2d(output))(x)
        if kind == "global_avgpool":
            need(x.dim() == 4, "global pooling needs a feature map")
            return self.make(nn.AdaptiveAvgPool2d(1))(x)
        if kind == "bn":
            cls = {4: nn.BatchNorm2d, 3: nn.BatchNorm1d, 2: nn.BatchNorm1d}[x.dim()]  # N×C×L: a sequence
            return self.make(cls(x.shape[1], **(args or {})))(x)
        if kind == "gn":
            groups = args["groups"] if isinstance(args, dict) else args
            return self.make(nn.GroupNorm(groups, x.shape[1]))(x)  # N×C×H×W or N×C, as torch takes them
        if kind == "ln":
            over = (args or {}).get("over", "all")
            eps = (args or {}).get("eps", 1e-5)
            if over == "all":
                return self.make(nn.LayerNorm(list(x.shape[1:]), eps=eps))(x)
            if over == "last":
                return self.make(nn.LayerNorm(x.shape[-1], eps=eps))(x)
            return self.make(nn.LayerNorm(x.shape[1], eps=eps))(x.movedim(1, -1)).movedim(-1, 1)
        if kind in ACTIVATIONS:
            if kind == "leaky_relu":
                return self.make(nn.LeakyReLU(args if args is not None else 0.01))(x)
            if kind == "gelu":
                return self.make(nn.GELU(**(args or {})))(x)
            if kind in ("softmax", "log_softmax"):
                return self.make(nn.Softmax(dim=1) if kind == "softmax" else nn.LogSoftmax(dim=1))(x)
            return self.make(getattr(nn, {"relu": "ReLU", "relu6": "ReLU6", "silu": "SiLU", "sigmoid": "Sigmoid",
                                          "tanh": "Tanh", "hardswish": "Hardswish",
                                          "hardsigmoid": "Hardsigmoid"}[kind])())(x)
        if kind == "dropout":
            return self.make(nn.Dropout(0.5 if args is None else args))(x)
        if kind == "dropout2d":
            need(x.dim() == 4, "dropout2d needs a feature map")  # LANGUAGE RULE: torch only warns
            return self.make(nn.Dropout2d(0.5 if args is None else args))(x)
        if kind == "identity":
            return x
        if kind == "flatten":
            return torch.flatten(x, 1)
        if kind == "linear":
            args = args if isinstance(args, dict) else {"out": args}
            over = args.get("over", "features")
            # LANGUAGE RULE: linear needs a vector (torch would act on a map's last axis) unless `over:` says
            need(x.dim() == 2 or over != "features", "linear needs a vector")
            if over == "channels":
                x = x.movedim(1, -1)
            y = self.make(nn.Linear(x.shape[-1], args["out"], bias=args.get("bias", True)))(x)
            return y.movedim(-1, 1) if over == "channels" else y
        if kind in ("stochastic_depth", "layer_scale", "permute"):
            return self.modern(kind, args, x)
        if kind == "se":
            args = args if isinstance(args, dict) else {"reduction": 16 if args is None else args}
            need(x.dim() == 4, "se needs a feature map")
            channels = x.shape[1]
            # LANGUAGE RULE: one width, given or by reduction
            need("hidden" not in args or not {"reduction", "divisor"} & set(args), "se: hidden and reduction")
            hidden = args.get("hidden", channels // args.get("reduction", 16))
            if "divisor" in args:
                hidden = _make_divisible(hidden, args["divisor"])
            need(hidden >= 1, "se needs a hidden unit")  # LANGUAGE RULE: torch builds Linear(C, 0)
            act, gate = (getattr(nn, {"relu": "ReLU", "silu": "SiLU", "hardswish": "Hardswish", "gelu": "GELU",
                                      "sigmoid": "Sigmoid", "hardsigmoid": "Hardsigmoid"}[args.get(key, default)])()
                         for key, default in (("act", "relu"), ("gate", "sigmoid")))
            if args.get("form") == "conv":
                return self.make(SqueezeExcitation(channels, hidden, lambda: act, lambda: gate))(x)
            fc1, fc2 = self.make(nn.Linear(channels, hidden)), self.make(nn.Linear(hidden, channels))
            return x * gate(fc2(act(fc1(x.mean(dim=(2, 3))))))[:, :, None, None]
        if kind in TOKEN_KINDS:
            return self.token_layer(kind, args, x)
        if kind == "split":  # LANGUAGE RULE: equal parts only (torch.chunk would give uneven ones)
            need(x.dim() >= 2 and x.shape[1] % _chunks(args) == 0, "split into unequal parts")
            return torch.stack(x.chunk(_chunks(args), 1), 1)  # the row shows the parts stacked
        if kind == "channel_shuffle":
            return channel_shuffle(x, args if not isinstance(args, dict) else args["groups"])
        raise AssertionError(f"reference knows no layer {kind}")

    def modern(self, kind, args, x):
        """torchvision's StochasticDepth (eval: the identity), ConvNeXt's layer scale, ops.Permute."""
        if kind == "stochastic_depth":
            args = args if isinstance(args, dict) else {"p": args}
            return self.make(StochasticDepth(args["p"], args.get("mode", "row")))(x)
        if kind == "layer_scale":
            gamma = torch.ones(x.shape[1], *[1] * (x.dim() - 2)) * (1e-6 if args is None else args)
            return gamma * x
        need(args[0] == 0, "permute moves the batch axis")  # LANGUAGE RULE: torch would permute the batch
        return self.make(Permute(args))(x)

    def token_layer(self, kind, args, x):
        """ViT's layers on N×L×D sequences, as torchvision's VisionTransformer computes them."""
        if kind == "tokens":
            need(x.dim() == 4, "tokens needs a feature map")
            return x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        need(x.dim() == 3, f"{kind} needs a token sequence")  # LANGUAGE RULE: only N×L×D sequences
        n, length, width = x.shape
        if kind == "class_token":
            return torch.cat([torch.zeros(n, 1, width), x], dim=1)
        if kind == "pos_embedding":
            return x + torch.zeros(1, length, width).normal_(std=0.02)
        if kind == "attention":
            args = args if isinstance(args, dict) else {"heads": args}
            attention = self.make(nn.MultiheadAttention(width, args["heads"], dropout=args.get("dropout", 0.0),
                                                        bias=args.get("bias", True), batch_first=True))
            return attention(x, x, x, need_weights=False)[0]
        if kind == "mlp":
            args = args if isinstance(args, dict) else {"hidden": args}
            p = args.get("dropout", 0.0)
            return self.make(nn.Sequential(nn.Linear(width, args["hidden"]), nn.GELU(), nn.Dropout(p),
                                           nn.Linear(args["hidden"], width), nn.Dropout(p)))(x)
        if kind == "token_ln":
            return self.make(nn.LayerNorm(width, **(args or {})))(x)
        index = args["index"] if isinstance(args, dict) else (0 if args is None else args)
        return x[:, index]  # IndexError past the end

    # -- lists and macros ---------------------------------------------------------------------------
    def seq(self, items, x):
        names = {"input": x}
        records = []
        for entry in items:
            sources = entry.get("from")
            if sources is not None:
                inputs = [names[s] for s in sources]
                y, record = self.merge(entry["type"], inputs), None
            else:
                y, record = self.entry(entry, x)
            records.append(record or Rec(tuple(y.shape[1:])))
            if "name" in entry:
                names[entry["name"]] = y
            if entry["type"] == "split":  # its parts, read as `from: NAME.i`
                for i, part in enumerate(x.chunk(_chunks(entry["args"]), 1)):
                    names[f"{entry['name']}.{i}"] = part
            x = y
        return x, records

    def merge(self, kind, inputs):
        if kind == "concat":
            return torch.cat(inputs, dim=1)
        # LANGUAGE RULE: torch broadcasts the batched tensors, so a lower-rank input would have its
        # batch axis aligned with a feature axis; a merge of different ranks is an error.
        need(len({t.dim() for t in inputs}) == 1, "merge of different ranks")
        out = inputs[0]
        for other in inputs[1:]:
            out = out + other if kind == "add" else out * other
        return out

    def entry(self, entry, x):
        kind, args = entry["type"], entry["args"]
        repeat = entry.get("repeat", 1)
        if repeat > 1:
            copies = []
            for _ in range(repeat):
                x, record = self.single(kind, args, x)
                copies.append(record)
            return x, Rec(tuple(x.shape[1:]), children=copies)
        return self.single(kind, args, x)

    def single(self, kind, args, x):
        if kind == "residual":
            return self.residual(args, x)
        if kind == "vgg":  # torchvision's make_layers
            cfg, batch_norm = (args["cfg"], args.get("batch_norm", False)) if isinstance(args, dict) else (args, False)
            records = []
            for n in cfg:
                if n == "M":
                    x = self.make(nn.MaxPool2d(2, 2))(x)
                    records.append(Rec(tuple(x.shape[1:])))
                    continue
                x = self.make(nn.Conv2d(x.shape[1] if x.dim() == 4 else 1, n, 3, padding=1))(x)
                records.append(Rec(tuple(x.shape[1:])))
                if batch_norm:
                    x = self.make(nn.BatchNorm2d(n))(x)
                    records.append(Rec(tuple(x.shape[1:])))
                x = torch.relu(x)
                records.append(Rec(tuple(x.shape[1:])))
            return x, Rec(tuple(x.shape[1:]), children=records)
        if kind == "parallel":
            return self.parallel(args, x)
        y = self.layer(kind, args, x)
        return y, Rec(tuple(y.shape[1:]))

    def residual(self, args, x):
        y, body = self.seq(args["body"], x)
        shortcut = args["shortcut"]
        record = Rec(tuple(y.shape[1:]), body=body)
        if shortcut == "auto" and y.shape != x.shape:
            # torchvision's downsample: conv1x1(stride s) + bn, s such that ⌊(H − 1)/s⌋ + 1 = H_body
            need(x.dim() == 4 and y.dim() == 4, "auto projection needs feature maps")
            strides = []
            for size, wanted in zip(x.shape[2:], y.shape[2:]):
                found = [s for s in range(1, 65) if (size - 1) // s + 1 == wanted]
                need(bool(found), f"no 1×1 stride maps {size} to {wanted}")
                strides.append(found[0])
            conv = self.make(nn.Conv2d(x.shape[1], y.shape[1], 1, stride=tuple(strides), bias=False))
            s = self.make(nn.BatchNorm2d(y.shape[1]))(conv(x))
            record.shortcut = tuple(s.shape[1:])
        elif isinstance(shortcut, list):
            s, record.shortcut = self.seq(shortcut, x)
        else:
            s = x
        # LANGUAGE RULE: body and shortcut must have exactly the same shape (torch would broadcast)
        need(s.shape == y.shape, f"residual body {tuple(y.shape)} vs shortcut {tuple(s.shape)}")
        return y + s, record

    def parallel(self, args, x):
        outputs, paths = [], []
        for path in args["paths"]:
            y, records = self.seq(path, x)
            outputs.append(y)
            paths.append(records)
        if args["merge"] == "concat":
            out = torch.cat(outputs, dim=1)
        else:
            # LANGUAGE RULE: parallel `add` needs equal shapes (torch would broadcast)
            need(len({tuple(o.shape) for o in outputs}) == 1, "parallel add of different shapes")
            out = outputs[0]
            for other in outputs[1:]:
                out = out + other
        return out, Rec(tuple(out.shape[1:]), paths=paths)

    def run(self, spec):
        x = torch.randn(BATCH, *spec["input"])
        with torch.no_grad():
            out, records = self.seq(spec["layers"], x)
        return tuple(out.shape[1:]), records


def reference(spec):
    """(output shape, records) or (None, the exception torch or a language rule raised)."""
    try:
        return Reference().run(spec)
    except Exception as e:  # any exception: torch rejects the network
        return None, e


# ==============================================================================================
# Comparing netspec with torch
# ==============================================================================================

