"""What a matrix region can absorb after its product: `EPILOGUE_RULES`, one named check per kind of equation.

A check sees the candidate equation, the value it reads from the chain, and the anchor; it returns
None when the equation joins the region, else the reason it does not (shown in the fuse report).
The kinds are those every matrix kernel applies per output tile: per-channel affine by a constant
vector (bias, scale, shift), inference batchnorm, one residual add, activations; and as the region's last
equation (a tail), for a batched matmul a transpose that keeps the last axis (the kernel writes straight into
that layout), for a convolution a 2x2 max pool at stride 2 (the kernel pools each finished tile).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..ir.graph import Node, Value
from ..ir.ops.nn import is_plain_2x2_pool
from ..ir.regions import CONV_OPS


@dataclass(frozen=True)
class Candidate:
    """An equation that might join a matrix region: it reads `cur`, the chain's current result."""

    node: Node
    cur: Value
    anchor: Node
    has_residual: bool
    after_tail: bool

    @property
    def channel_axis(self) -> int:
        """The axis per-channel vectors run along: 1 for conv2d, the last axis for products."""
        return 1 if self.anchor.op in CONV_OPS else self.cur.type.rank - 1

    def other(self) -> tuple[Value, bool]:
        """The binary equation's other operand, and whether `cur` is its first operand."""
        a, b = self.node.inputs
        return (b, True) if a is self.cur else (a, False)


@dataclass(frozen=True)
class EpilogueRule:
    """One kind of epilogue equation: its ops and the check that accepts a candidate (None) or says why not."""

    name: str
    ops: tuple[str, ...]
    check: Callable[[Candidate], str | None]


def is_batched_matmul(node: Node) -> bool:
    """A matmul that is not one 2-D GEMM (its B operand has rank > 2, as in attention heads)."""
    return node.op == "matmul" and (node.inputs[1].type.rank != 2 or node.inputs[0].type.rank < 2)


def per_channel(shape: tuple[int, ...], out_shape: tuple[int, ...], axis: int) -> bool:
    """True when an array of `shape` broadcasts to `out_shape` along `axis` only (or is a scalar)."""
    if len(shape) > len(out_shape):
        return False
    full = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    return all(d == 1 or (i == axis and d == out_shape[axis]) for i, d in enumerate(full))


def _common(c: Candidate) -> str | None:
    if c.after_tail:
        return "the region already ends in a tail (a layout transpose, a pool or a mean)"
    if c.node.outputs[0].type.dtype.name != "f32":
        return f"its output is {c.node.outputs[0].type.dtype.name}, not f32"
    if c.node.outputs[0].type.shape != c.cur.type.shape:
        return f"it broadcasts the product's {list(c.cur.type.shape)} to {list(c.node.outputs[0].type.shape)}"
    return None


def check_affine(c: Candidate) -> str | None:
    """add / sub / mul / div by a constant that runs along the channel axis (c / x is not an epilogue)."""
    why = _common(c)
    if why:
        return why
    other, cur_first = c.other()
    if not other.is_constant:
        return f"%{other.name} is not a constant"
    if not per_channel(other.type.shape, c.cur.type.shape, c.channel_axis):
        return (f"@{other.name} {list(other.type.shape)} does not run along the channel axis of "
                f"{list(c.cur.type.shape)}")
    if c.node.op == "div" and not cur_first:
        return "dividing a constant by the product is not an epilogue"
    return None


def check_residual(c: Candidate) -> str | None:
    """add of a computed tensor of exactly the product's shape (one per region)."""
    why = _common(c)
    if why:
        return why
    other, _ = c.other()
    if other.is_constant:
        return "a constant that does not run along the channel axis"
    if other.type.shape != c.cur.type.shape or other.type.dtype != c.cur.type.dtype:
        return f"%{other.name} {list(other.type.shape)} is not shaped like the product {list(c.cur.type.shape)}"
    if c.has_residual:
        return "the region already adds a residual"
    return None


def check_batchnorm(c: Candidate) -> str | None:
    """Inference batchnorm with constant parameters, on the product's channel axis (axis 1)."""
    why = _common(c)
    if why:
        return why
    if c.node.inputs[0] is not c.cur:
        return "the product is not the normalized input"
    if not all(v.is_constant for v in c.node.inputs[1:]):
        return "its scale, bias, mean and variance are not all constants"
    if c.channel_axis != 1:
        return f"batchnorm normalizes axis 1, the product's channels are axis {c.channel_axis}"
    return None


def check_activation(c: Candidate) -> str | None:
    """relu, gelu, sigmoid, tanh, clip: applied to each element of the tile."""
    return _common(c)


def check_layout(c: Candidate) -> str | None:
    """A transpose after a batched matmul that keeps the last axis last: the product writes in that order."""
    if c.after_tail:
        return "the region already ends in a tail (a layout transpose, a pool or a mean)"
    if not is_batched_matmul(c.anchor):
        return "only a batched matmul writes a transposed layout"
    perm = c.node.attrs["perm"]
    if perm[-1] != len(perm) - 1:
        return f"perm {list(perm)} moves the last axis"
    return None


def _conv_tail(c: Candidate, does: str) -> str | None:
    """Why a pool cannot end this region: a tail already, not after an f32 conv2d (that `does` it); else None."""
    if c.after_tail:
        return "the region already ends in a tail (a layout transpose, a pool or a mean)"
    if c.anchor.op != "conv2d":
        return f"only a conv2d {does}, not {c.anchor.op}"
    if c.node.outputs[0].type.dtype.name != "f32":
        return f"its output is {c.node.outputs[0].type.dtype.name}, not f32"
    return None


def check_pool(c: Candidate) -> str | None:
    """A 2x2 max pool at stride 2 after a convolution: the kernel pools each tile before it stores it."""
    why = _conv_tail(c, "pools its tiles")
    if why:
        return why
    if not is_plain_2x2_pool(c.node):
        a = c.node.attrs
        return (f"only 2x2 windows at stride 2 without padding fuse (kernel {list(a['kernel'])}, "
                f"strides {list(a['strides'])}, pads {list(a['pads'])})")
    return None


def check_mean(c: Candidate) -> str | None:
    """A global average pool after a convolution: the kernel averages each image's channels as it finishes them."""
    return _conv_tail(c, "averages its images")


EPILOGUE_RULES: tuple[EpilogueRule, ...] = (
    EpilogueRule("bias", ("add",), check_affine),
    EpilogueRule("residual", ("add",), check_residual),
    EpilogueRule("affine", ("sub", "mul", "div"), check_affine),
    EpilogueRule("batchnorm", ("batchnorm",), check_batchnorm),
    EpilogueRule("activation", ("relu", "gelu", "sigmoid", "tanh", "clip"), check_activation),
    EpilogueRule("layout", ("transpose",), check_layout),
    EpilogueRule("pool", ("maxpool2d",), check_pool),
    EpilogueRule("mean", ("global-avgpool",), check_mean),
)
"""Tried in order; the first rule whose ops include the equation's op and whose check passes takes it."""
TAIL_RULES = ("layout", "pool", "mean")
"""Rules whose equation ends the region: nothing joins after it."""
