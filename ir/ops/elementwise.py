"""Elementwise ops: binary arithmetic with numpy broadcasting, and unary activations."""

from __future__ import annotations

import math
from typing import Any

from ..dtypes import DTYPES
from ..types import TensorType
from .registry import Attr, dtype_error, register_op, shape_error


def broadcast_shapes(op: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    """numpy's broadcasting of `shapes`; a shape-mismatch error names the op and shapes."""
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            shown = " and ".join(str(list(s)) for s in shapes)
            raise shape_error(f"{op}: shapes {shown} do not broadcast (axis {i - rank})")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def same_dtype(op: str, types: list[TensorType]) -> None:
    """Raise a dtype-mismatch error unless all `types` share one dtype."""
    names = {t.dtype.name for t in types}
    if len(names) > 1:
        raise dtype_error(f"{op}: inputs have different dtypes {[t.dtype.name for t in types]}")


def require_float(op: str, t: TensorType) -> None:
    """Raise a dtype-mismatch error unless `t` is a floating type."""
    if not t.dtype.is_float:
        raise dtype_error(f"{op}: needs a floating-point input, got {t.dtype.name}")


def _binary(name: str, doc: str) -> None:
    @register_op(name, ("a", "b"), doc=doc, elementwise=True)
    def infer(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
        same_dtype(name, ts)
        return [TensorType(broadcast_shapes(name, ts[0].shape, ts[1].shape), ts[0].dtype)]


_binary("add", "a + b with numpy broadcasting.")
_binary("sub", "a - b with numpy broadcasting.")
_binary("mul", "a * b with numpy broadcasting.")
_binary("div", "a / b with numpy broadcasting (integer inputs divide toward zero).")
_binary("pow", "a ** b with numpy broadcasting.")
_binary("maximum", "Elementwise maximum with numpy broadcasting.")


@register_op("mod", ("a", "b"), (Attr("fmod", "bool", False),), elementwise=True,
             doc="The remainder of a / b with numpy broadcasting: with the divisor's sign (numpy's mod), or with "
                 "fmod the dividend's (C's fmod); an integer remainder by 0 is 0, a float one NaN.")
def _mod(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    same_dtype("mod", ts)
    if ts[0].dtype.name == "bool":
        raise dtype_error("mod: needs numbers, got bool")
    return [TensorType(broadcast_shapes("mod", ts[0].shape, ts[1].shape), ts[0].dtype)]
_binary("minimum", "Elementwise minimum with numpy broadcasting.")


def integer_clip_bounds(lo: float, hi: float, info: Any) -> tuple[int, int]:
    """clip's bounds on an integer dtype (`info` = np.iinfo): rounded inward, then saturated to the range.

    So clip(x, -60.5, -60.5) on u8 is 0 for every x (the real result -60.5 saturates to 0), never a
    wrapped value.
    """
    lo_i = math.ceil(lo) if math.isfinite(lo) else (info.min if lo < 0 else info.max)
    hi_i = math.floor(hi) if math.isfinite(hi) else (info.max if hi > 0 else info.min)
    return min(max(lo_i, info.min), info.max), min(max(hi_i, info.min), info.max)


def float_to_int_bounds(info: Any) -> tuple[float, float, int, int]:
    """(lo, hi_excl, min, max) of a saturating float -> integer cast to `info` (np.iinfo)'s dtype.

    x < lo gives min, x >= hi_excl gives max, NaN gives 0, anything else truncates toward zero; lo and
    hi_excl (the range's ends as powers of two) are exact in every float type the IR has.
    """
    return float(info.min), float(info.max) + 1.0, int(info.min), int(info.max)


def _unary(name: str, doc: str, attrs: tuple[Attr, ...] = (), floating: bool = True) -> None:
    @register_op(name, ("x",), attrs, doc=doc, elementwise=True)
    def infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        if floating:
            require_float(name, ts[0])
        return [TensorType(ts[0].shape, ts[0].dtype)]


_unary("relu", "max(x, 0).", floating=False)
_unary(
    "gelu",
    "x * Phi(x); approximate='tanh' uses 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))).",
    (Attr("approximate", "str", "none", ("none", "tanh")),),
)
_unary("sigmoid", "1 / (1 + exp(-x)).")
_unary("tanh", "Hyperbolic tangent.")
_unary("erf", "The error function.")
_unary("sqrt", "Square root.")
_unary("exp", "e ** x.")
_unary("log", "Natural logarithm.")
_unary("floor", "The largest integer not above x.")
_unary("ceil", "The smallest integer not below x.")
_unary("round", "x rounded to the nearest integer, halves to even.")
_unary("sin", "Sine.")
_unary("cos", "Cosine.")
_unary("tan", "Tangent.")
_unary("asin", "Arcsine (NaN outside [-1, 1]).")
_unary("acos", "Arccosine (NaN outside [-1, 1]).")
_unary("atan", "Arctangent.")
_unary("sinh", "Hyperbolic sine.")
_unary("cosh", "Hyperbolic cosine.")
_unary("asinh", "Inverse hyperbolic sine.")
_unary("acosh", "Inverse hyperbolic cosine (NaN below 1).")
_unary("atanh", "Inverse hyperbolic tangent (NaN outside [-1, 1], infinite at -1 and 1).")
_unary("sign", "-1, 0 or 1 by the sign of x (NaN stays NaN; -0.0 gives 0).", floating=False)
_unary("neg", "-x.", floating=False)
_unary("abs", "|x|.", floating=False)
_unary("identity", "x unchanged.", floating=False)
_unary("dropout", "Dropout; at inference it is the identity.", (Attr("ratio", "float", 0.5),),
       floating=False)
_unary(
    "clip",
    "min(max(x, min), max); on integers the bounds round inward and saturate to the dtype's range.",
    (Attr("min", "float", float("-inf")), Attr("max", "float", float("inf"))),
    floating=False,
)


@register_op("cast", ("x",), (Attr("dtype", "str", choices=tuple(DTYPES)),),
             doc="Convert dtype. Float to integer truncates toward zero and saturates to the integer range "
                 "(NaN gives 0); integer to integer wraps; anything to bool is x != 0.",
             elementwise=True)
def _cast(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    return [TensorType(ts[0].shape, DTYPES[a["dtype"]])]
