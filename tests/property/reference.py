"""An independent torch reference for generated specs: builds each layer from the real tensor
that reaches it, never from netspec's shape rules."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from tests.property.generate import ACTIVATIONS, BATCH  # noqa: E402


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
            cls = {4: nn.BatchNorm2d, 2: nn.BatchNorm1d}[x.dim()]
            return self.make(cls(x.shape[1], **(args or {})))(x)
        if kind == "gn":
            groups = args["groups"] if isinstance(args, dict) else args
            return self.make(nn.GroupNorm(groups, x.shape[1]))(x)  # N×C×H×W or N×C, as torch takes them
        if kind == "ln":
            return self.make(nn.LayerNorm(list(x.shape[1:])))(x)
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
            # LANGUAGE RULE: linear needs a vector (torch would act on a map's last axis)
            need(x.dim() == 2, "linear needs a vector")
            return self.make(nn.Linear(x.shape[1], args["out"], bias=args.get("bias", True)))(x)
        if kind == "se":
            reduction = args["reduction"] if isinstance(args, dict) else (16 if args is None else args)
            need(x.dim() == 4, "se needs a feature map")
            channels = x.shape[1]
            hidden = channels // reduction
            need(hidden >= 1, "se needs a hidden unit")  # LANGUAGE RULE: torch builds Linear(C, 0)
            fc1, fc2 = self.make(nn.Linear(channels, hidden)), self.make(nn.Linear(hidden, channels))
            gate = torch.sigmoid(fc2(torch.relu(fc1(x.mean(dim=(2, 3))))))
            return x * gate[:, :, None, None]
        raise AssertionError(f"reference knows no layer {kind}")

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

