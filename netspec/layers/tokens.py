"""Token sequences (ViT): `tokens`, `class_token`, `pos_embedding`, `attention`, `mlp`,
`token_ln`, `select_token`.

A token sequence is an L×D shape: torch's N×L×D tensor without the batch, the D features of
each token last (torchvision's VisionTransformer layout).
"""

from __future__ import annotations

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, confloat

from netspec.errors import ShapeError
from netspec.layers.base import InferContext, Layer, LayerInfo, Shape, register, require_rank
from netspec.shapes import symbolic as sym

Probability = confloat(ge=0, lt=1)
_SEQUENCE_HINT = "put `- tokens` after the patch conv to turn a C×H×W map into an L×D sequence"


def _sequence(inputs: list[Shape], kind: str) -> Shape:
    return require_rank(inputs, 2, kind, "an L×D token sequence", _SEQUENCE_HINT)


def _concrete_dim(dim, kind: str, what: str) -> int:
    if not isinstance(dim, int):
        raise ShapeError(f"{kind} needs a concrete {what}, got {sym.fmt(dim)}",
                         "give a concrete input size (--input CxHxW)")
    return dim


def _n(value) -> str:
    return f"{value:,}" if isinstance(value, int) else sym.fmt(value, grouped=True)


@register
class Tokens(Layer):
    kind = "tokens"
    torch_equivalent = "x.flatten(2).transpose(1, 2) (torchvision ViT: reshape(n, C, H·W).permute(0, 2, 1))"
    summary = "Turns a C×H×W feature map (e.g. patch embeddings) into an (H·W)×C token sequence."
    formula_doc = "L = H·W, D = C; no parameters"
    example = "- conv: {out: 16, kernel: 8, stride: 8}\n- tokens"

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        channels, height, width = require_rank(inputs, 3, self.kind, "a C×H×W feature map")
        length = sym.mul(height, width)
        return LayerInfo((length, channels), f"L = {sym.fmt(height)}·{sym.fmt(width)} = {sym.fmt(length)}, "
                                             f"D = {sym.fmt(channels)}")

    def build(self, inputs: list[Shape], output: Shape):
        from netspec.compile.token_modules import Tokens as TokensModule

        return TokensModule()


@register
class ClassToken(Layer):
    kind = "class_token"
    has_weights = True
    torch_equivalent = "torch.cat([class_token.expand(N, -1, -1), x], dim=1) (torchvision ViT's class_token)"
    summary = "Prepends a learnable 1×D class token to the sequence (initialised to zeros)."
    formula_doc = "L_out = L + 1; params = D"
    example = "- conv: {out: 16, kernel: 8, stride: 8}\n- tokens\n- class_token"

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        length, dim = _sequence(inputs, self.kind)
        out = sym.add(length, 1)
        return LayerInfo((out, dim), f"L = {sym.fmt(length)} + 1 = {sym.fmt(out)}", params=dim)

    def build(self, inputs: list[Shape], output: Shape):
        from netspec.compile.token_modules import ClassToken as ClassTokenModule

        return ClassTokenModule(inputs[0][1])


@register
class PosEmbedding(Layer):
    kind = "pos_embedding"
    has_weights = True
    torch_equivalent = "x + pos_embedding, a 1×L×D nn.Parameter (torchvision ViT's encoder.pos_embedding)"
    summary = "Adds a learned position embedding, one D-vector per token; L follows the input size."
    formula_doc = "shape unchanged; params = L·D (normal, std 0.02, as torchvision)"
    example = "- conv: {out: 16, kernel: 8, stride: 8}\n- tokens\n- class_token\n- pos_embedding"

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        length, dim = _sequence(inputs, self.kind)
        _concrete_dim(length, self.kind, "sequence length")
        return LayerInfo(inputs[0], f"same shape; embedding {length}×{sym.fmt(dim)}",
                         params=sym.mul(length, dim))

    def build(self, inputs: list[Shape], output: Shape):
        from netspec.compile.token_modules import PosEmbedding as PosEmbeddingModule

        return PosEmbeddingModule(*inputs[0])


@register
class Attention(Layer):
    kind = "attention"
    has_weights = True
    primary = "heads"
    torch_equivalent = "torch.nn.MultiheadAttention(D, heads, batch_first=True)(x, x, x, need_weights=False)[0]"
    summary = "Multi-head self-attention over an L×D token sequence."
    formula_doc = ("shape unchanged; heads must divide D; params = 4·D² + 4·D (in_proj 3·D² + 3·D, out_proj "
                   "D² + D; no biases: 4·D²); MACs = in_proj 3·L·D² + scores L²·D + weighted sum L²·D + "
                   "out_proj L·D², all four counted (as torchvision's GFLOPS column)")
    example = "- conv: {out: 16, kernel: 8, stride: 8}\n- tokens\n- attention: {heads: 4}"

    heads: PositiveInt = Field(description="number of attention heads; must divide D")
    dropout: Probability = Field(0.0, description="dropout on the attention weights (training only)")
    bias: bool = Field(True, description="biases in the input and output projections")

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        length, dim = _sequence(inputs, self.kind)
        dim = _concrete_dim(dim, self.kind, "token width D")
        if dim % self.heads:
            raise ShapeError(f"heads={self.heads} does not divide the token width {dim}",
                             "choose a head count that divides D")
        params = 4 * dim * dim + (4 * dim if self.bias else 0)
        in_proj = sym.mul(3 * dim * dim, length)
        scores = sym.mul(sym.mul(length, length), dim)
        out_proj = sym.mul(dim * dim, length)
        macs = sym.add(sym.add(in_proj, sym.mul(2, scores)), out_proj)
        formula = (f"same shape; {self.heads} heads of {dim // self.heads}; MACs: in_proj 3·L·D² {_n(in_proj)} + "
                   f"scores L²·D {_n(scores)} + weighted sum L²·D {_n(scores)} + out_proj L·D² {_n(out_proj)}")
        return LayerInfo(inputs[0], formula, params=params, macs=macs)

    def build(self, inputs: list[Shape], output: Shape):
        from netspec.compile.token_modules import SelfAttention

        return SelfAttention(inputs[0][1], self.heads, dropout=self.dropout, bias=self.bias)


@register
class MLP(Layer):
    kind = "mlp"
    has_weights = True
    primary = "hidden"
    torch_equivalent = ("torchvision.ops.MLP / ViT MLPBlock: Sequential(Linear(D, hidden), GELU, Dropout, "
                        "Linear(hidden, D), Dropout)")
    summary = "Per-token MLP of a transformer block: Linear → GELU → Dropout → Linear → Dropout, back to D."
    formula_doc = "shape unchanged; params = 2·D·hidden + hidden + D; MACs = 2·L·D·hidden"
    example = "- conv: {out: 16, kernel: 8, stride: 8}\n- tokens\n- mlp: 64"

    hidden: PositiveInt = Field(description="hidden width (torchvision's mlp_dim)")
    dropout: Probability = Field(0.0, description="dropout after the GELU and after the second linear")

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        length, dim = _sequence(inputs, self.kind)
        params = sym.add(sym.mul(2 * self.hidden, dim), sym.add(dim, self.hidden))
        macs = sym.mul(sym.mul(length, dim), 2 * self.hidden)
        return LayerInfo(inputs[0], f"{sym.fmt(dim)} → {self.hidden} → {sym.fmt(dim)} per token",
                         params=params, macs=macs)

    def build(self, inputs: list[Shape], output: Shape):
        from torch import nn

        dim = inputs[0][1]
        return nn.Sequential(nn.Linear(dim, self.hidden), nn.GELU(), nn.Dropout(self.dropout),
                             nn.Linear(self.hidden, dim), nn.Dropout(self.dropout))


@register
class TokenLayerNorm(Layer):
    kind = "token_ln"
    has_weights = True
    torch_equivalent = "torch.nn.LayerNorm(D) on an N×L×D sequence"
    summary = "Layer normalisation of each token over its D features (the last axis)."
    formula_doc = "shape unchanged; params = 2·D when elementwise_affine"
    example = "- conv: {out: 16, kernel: 8, stride: 8}\n- tokens\n- token_ln: {eps: 1.0e-6}"

    eps: PositiveFloat = Field(1e-5, description="added to the variance (torchvision's ViT uses 1e-6)")
    elementwise_affine: bool = Field(True, description="learn a per-feature scale and shift")

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        _, dim = _sequence(inputs, self.kind)
        return LayerInfo(inputs[0], f"same shape; normalised over D = {sym.fmt(dim)}",
                         params=sym.mul(2, dim) if self.elementwise_affine else 0)

    def build(self, inputs: list[Shape], output: Shape):
        from torch import nn

        return nn.LayerNorm(inputs[0][1], eps=self.eps, elementwise_affine=self.elementwise_affine)


@register
class SelectToken(Layer):
    kind = "select_token"
    primary = "index"
    torch_equivalent = "x[:, index] (torchvision ViT: x[:, 0], the class token)"
    summary = "Picks one token of an L×D sequence as a D-vector (index 0: the class token)."
    formula_doc = "L×D → D; index < L"
    example = "- conv: {out: 16, kernel: 8, stride: 8}\n- tokens\n- class_token\n- select_token: 0\n- linear: 10"

    index: NonNegativeInt = Field(0, description="which token, 0 = the first (the class token)")

    def infer(self, inputs: list[Shape], ctx: InferContext) -> LayerInfo:
        length, dim = _sequence(inputs, self.kind)
        ctx.at_least(length, self.index + 1, f"select_token: {self.index} needs more than {self.index} tokens, "
                     f"the sequence has {sym.fmt(length)}")
        return LayerInfo((dim,), f"token {self.index} of {sym.fmt(length)}: D = {sym.fmt(dim)}")

    def build(self, inputs: list[Shape], output: Shape):
        from netspec.compile.token_modules import SelectToken as SelectTokenModule

        return SelectTokenModule(self.index)
