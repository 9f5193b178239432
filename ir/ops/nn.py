"""Neural-network ops: linear, matmul, convolution, pooling, normalization, reductions."""

from __future__ import annotations

import math
from typing import Any

from ..dtypes import DType, i32, i64
from ..types import TensorType
from .elementwise import broadcast_shapes, require_float, same_dtype
from .registry import Attr, attr_error, register_op, shape_error
from .shape_ops import norm_axis


def accumulator_dtype(dt: DType) -> DType:
    """Products of 8-bit and 4-bit integers accumulate (and come out) in i32; others keep their dtype."""
    return i32 if dt.name in ("i8", "u8", "i4") else dt


@register_op("linear", ("x", "weight", "bias?"), doc="x @ weight^T + bias; weight is [out, in].")
def _linear(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, w = ts[0], ts[1]
    if x.rank < 1 or w.rank != 2:
        raise shape_error(f"linear: needs x of rank >= 1 and a 2-D weight, got {list(x.shape)} "
                          f"and {list(w.shape)}")
    if x.shape[-1] != w.shape[1]:
        raise shape_error(
            f"linear: x {list(x.shape)} has {x.shape[-1]} features but weight {list(w.shape)} expects {w.shape[1]}"
        )
    if len(ts) == 3 and ts[2].shape != (w.shape[0],):
        raise shape_error(f"linear: bias {list(ts[2].shape)} must be [{w.shape[0]}]")
    same_dtype("linear", [x, w] if x.quant or w.quant else ts)
    return [TensorType(x.shape[:-1] + (w.shape[0],), accumulator_dtype(x.dtype))]


@register_op("matmul", ("a", "b"), doc="numpy matmul: batched over leading axes with broadcasting.")
def _matmul(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, y = ts
    same_dtype("matmul", ts)
    if x.rank == 0 or y.rank == 0:
        raise shape_error("matmul: inputs must have rank >= 1")
    xs = (1,) + x.shape if x.rank == 1 else x.shape
    ys = y.shape + (1,) if y.rank == 1 else y.shape
    if xs[-1] != ys[-2]:
        raise shape_error(f"matmul: {list(x.shape)} @ {list(y.shape)}: inner dimensions {xs[-1]} != {ys[-2]}")
    batch = broadcast_shapes("matmul", xs[:-2], ys[:-2])
    out = batch + (xs[-2], ys[-1])
    if x.rank == 1:
        out = out[:-2] + out[-1:]
    if y.rank == 1:
        out = out[:-1]
    return [TensorType(out, accumulator_dtype(x.dtype))]


def conv_out(size: int, k: int, stride: int, pad_lo: int, pad_hi: int, dil: int, ceil: bool = False) -> int:
    """Output length of a convolution or pooling window along one axis."""
    span = dil * (k - 1) + 1
    num = size + pad_lo + pad_hi - span
    if num < 0:
        return 0
    out = (-(-num // stride) if ceil else num // stride) + 1
    if ceil and (out - 1) * stride >= size + pad_lo:
        out -= 1  # the last window must start inside the input or left padding
    return out


def is_plain_2x2_pool(node: Any) -> bool:
    """A pooling node with 2x2 windows at stride 2, no padding or dilation: no two windows overlap (on an input of
    even height and width every window lies inside it, whatever its ceil_mode)."""
    a = node.attrs
    return (tuple(a["kernel"]) == (2, 2) and tuple(a["strides"]) == (2, 2) and not any(a["pads"])
            and tuple(a["dilations"]) == (1, 1))


def _check_window(op: str, a: dict[str, Any], keys: tuple[str, ...]) -> None:
    for k, n in (("strides", 2), ("dilations", 2), ("pads", 4), ("kernel", 2)):
        if k in keys and len(a[k]) != n:
            raise attr_error(f"{op}: {k} must have {n} values, got {list(a[k])}")
    for k in ("strides", "dilations", "kernel"):
        if k in keys and any(v < 1 for v in a[k]):
            raise attr_error(f"{op}: {k} must be positive, got {list(a[k])}")
    if any(v < 0 for v in a["pads"]):
        raise attr_error(f"{op}: pads must be non-negative, got {list(a['pads'])}")


_WINDOW = (
    Attr("strides", "ints", (1, 1)),
    Attr("pads", "ints", (0, 0, 0, 0)),  # top, left, bottom, right
    Attr("dilations", "ints", (1, 1)),
)


@register_op("conv2d", ("x", "weight", "bias?"), (*_WINDOW, Attr("groups", "int", 1)),
             doc="2-D convolution, NCHW input, weight [C_out, C_in/groups, kH, kW]; "
                 "pads are [top, left, bottom, right].")
def _conv2d(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, w = ts[0], ts[1]
    _check_window("conv2d", a, ("strides", "dilations", "pads"))
    if x.rank != 4 or w.rank != 4:
        raise shape_error(f"conv2d: needs 4-D x and weight, got {list(x.shape)} and {list(w.shape)}")
    g = a["groups"]
    if g < 1 or x.shape[1] % g or w.shape[0] % g:
        raise attr_error(f"conv2d: groups={g} must divide C_in={x.shape[1]} and C_out={w.shape[0]}")
    if w.shape[1] * g != x.shape[1]:
        raise shape_error(
            f"conv2d: x has {x.shape[1]} channels but weight {list(w.shape)} with groups={g} expects {w.shape[1] * g}"
        )
    if len(ts) == 3 and ts[2].shape != (w.shape[0],):
        raise shape_error(f"conv2d: bias {list(ts[2].shape)} must be [{w.shape[0]}]")
    same_dtype("conv2d", [x, w] if x.quant or w.quant else ts)
    (sh, sw), (pt, pl, pb, pr), (dh, dw) = a["strides"], a["pads"], a["dilations"]
    ho = conv_out(x.shape[2], w.shape[2], sh, pt, pb, dh)
    wo = conv_out(x.shape[3], w.shape[3], sw, pl, pr, dw)
    if ho < 1 or wo < 1:
        raise shape_error(f"conv2d: kernel {list(w.shape[2:])} does not fit input {list(x.shape[2:])} "
                          f"with pads {list(a['pads'])}")
    return [TensorType((x.shape[0], w.shape[0], ho, wo), accumulator_dtype(x.dtype))]


def _pool(name: str, extra: tuple[Attr, ...], doc: str) -> None:
    @register_op(name, ("x",), (Attr("kernel", "ints"), *_WINDOW, Attr("ceil_mode", "bool", False), *extra), doc=doc)
    def infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        x = ts[0]
        _check_window(name, a, ("kernel", "strides", "dilations", "pads"))
        if x.rank != 4:
            raise shape_error(f"{name}: needs a 4-D NCHW input, got {list(x.shape)}")
        (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = a["kernel"], a["strides"], a["pads"], a["dilations"]
        if pt >= kh * dh or pb >= kh * dh or pl >= kw * dw or pr >= kw * dw:
            raise attr_error(f"{name}: pads {list(a['pads'])} must be smaller than the window {list(a['kernel'])}")
        ho = conv_out(x.shape[2], kh, sh, pt, pb, dh, a["ceil_mode"])
        wo = conv_out(x.shape[3], kw, sw, pl, pr, dw, a["ceil_mode"])
        if ho < 1 or wo < 1:
            raise shape_error(f"{name}: window {list(a['kernel'])} does not fit input {list(x.shape[2:])}")
        for axis, size, k, s, p, d, n in (("H", x.shape[2], kh, sh, pt, dh, ho), ("W", x.shape[3], kw, sw, pl, dw, wo)):
            o = _padding_only_window(size, k, s, p, d, n)
            if o is not None:
                raise attr_error(f"{name}: output {o} along {axis} pools only padding (input {list(x.shape[2:])}, "
                                 f"kernel {list(a['kernel'])}, pads {list(a['pads'])}, "
                                 f"dilations {list(a['dilations'])})")
        return [TensorType((x.shape[0], x.shape[1], ho, wo), x.dtype)]


def _padding_only_window(size: int, k: int, stride: int, pad_lo: int, dil: int, out: int) -> int | None:
    """The first output position along one axis whose window holds no input cell, or None."""
    for o in range(out):
        start = o * stride - pad_lo
        if not any(0 <= start + i * dil < size for i in range(k)):
            return o
    return None


_pool("maxpool2d", (), "Max over kH x kW windows of an NCHW tensor; padding never wins.")
_pool("avgpool2d", (Attr("count_include_pad", "bool", False),),
      "Mean over kH x kW windows of an NCHW tensor; padded cells count only with count_include_pad.")


@register_op("global-avgpool", ("x",), doc="Mean over all spatial axes: [N, C, ...] -> [N, C, 1, ...].")
def _gap(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = ts[0]
    if x.rank < 3:
        raise shape_error(f"global-avgpool: needs [N, C, spatial...], got {list(x.shape)}")
    return [TensorType(x.shape[:2] + (1,) * (x.rank - 2), x.dtype)]


@register_op("batchnorm", ("x", "scale", "bias", "mean", "var"), (Attr("epsilon", "float", 1e-5),),
             doc="Inference batch norm over channel axis 1: (x - mean) / sqrt(var + eps) * scale + bias.")
def _batchnorm(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = ts[0]
    require_float("batchnorm", x)
    if x.rank < 2:
        raise shape_error(f"batchnorm: needs [N, C, ...], got {list(x.shape)}")
    for name, t in zip(("scale", "bias", "mean", "var"), ts[1:]):
        if t.shape != (x.shape[1],):
            raise shape_error(f"batchnorm: {name} {list(t.shape)} must be [{x.shape[1]}]")
    same_dtype("batchnorm", ts)
    return [TensorType(x.shape, x.dtype)]


@register_op("layernorm", ("x", "scale?", "bias?"), (Attr("axis", "int", -1), Attr("epsilon", "float", 1e-5)),
             doc="Normalize over axes axis..last, then * scale + bias (scale/bias have shape x.shape[axis:]).")
def _layernorm(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = ts[0]
    require_float("layernorm", x)
    axis = norm_axis("layernorm", a["axis"], x.rank)
    for name, t in zip(("scale", "bias"), ts[1:]):
        if t.shape != x.shape[axis:]:
            raise shape_error(f"layernorm: {name} {list(t.shape)} must be {list(x.shape[axis:])}")
    same_dtype("layernorm", ts)
    return [TensorType(x.shape, x.dtype)]


@register_op("softmax", ("x",), (Attr("axis", "int", -1),), doc="exp(x) / sum(exp(x)) along axis.")
def _softmax(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    require_float("softmax", ts[0])
    norm_axis("softmax", a["axis"], ts[0].rank)
    return [TensorType(ts[0].shape, ts[0].dtype)]


@register_op("lrn", ("x",), (Attr("size", "int"), Attr("alpha", "float", 1e-4), Attr("beta", "float", 0.75),
                             Attr("bias", "float", 1.0)),
             doc="Local response normalization across channels (ONNX LRN).")
def _lrn(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    require_float("lrn", ts[0])
    if ts[0].rank < 3:
        raise shape_error(f"lrn: needs [N, C, ...], got {list(ts[0].shape)}")
    if a["size"] < 1:
        raise attr_error(f"lrn: size must be positive, got {a['size']}")
    return [TensorType(ts[0].shape, ts[0].dtype)]


def _reduce(name: str, doc: str) -> None:
    @register_op(name, ("x",), (Attr("axes", "ints", ()), Attr("keepdims", "bool", True)), doc=doc)
    def infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        x = ts[0]
        axes = {norm_axis(name, ax, x.rank) for ax in a["axes"]} if a["axes"] else set(range(x.rank))
        if len(axes) != len(a["axes"]) and a["axes"]:
            raise attr_error(f"{name}: axes {list(a['axes'])} repeat an axis")
        if a["keepdims"]:
            shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        return [TensorType(shape, x.dtype)]


def one_axis(op: str, x: TensorType, axis: int) -> int:
    """`axis` of x normalized, for an op that runs along one axis of an input of rank >= 1."""
    if x.rank == 0:
        raise shape_error(f"{op}: needs an input of rank >= 1")
    return norm_axis(op, axis, x.rank)


def _arg_extreme(name: str, which: str) -> None:
    @register_op(name, ("x",), (Attr("axis", "int", 0), Attr("keepdims", "bool", True),
                                Attr("select_last_index", "bool", False)),
                 doc=f"The index (i64) of the {which} along axis, the first one (the last with select_last_index); "
                     "a NaN counts as the extreme (numpy's rule).")
    def infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        x = ts[0]
        axis = one_axis(name, x, a["axis"])
        if x.shape[axis] == 0:
            raise shape_error(f"{name}: axis {axis} of {list(x.shape)} is empty")
        if a["keepdims"]:
            shape = tuple(1 if i == axis else d for i, d in enumerate(x.shape))
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i != axis)
        return [TensorType(shape, i64)]


@register_op("cumsum", ("x",), (Attr("axis", "int", 0), Attr("exclusive", "bool", False),
                                 Attr("reverse", "bool", False)),
             doc="Running sums along axis, in the input dtype, summed in order (from the end with reverse); "
                 "exclusive leaves each element out of its own sum.")
def _cumsum(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = ts[0]
    one_axis("cumsum", x, a["axis"])
    if x.dtype.name in ("bool", "i4"):
        raise shape_error(f"cumsum: sums numbers, got {x.dtype.name}")
    return [x]


@register_op("topk", ("x",), (Attr("k", "int"), Attr("axis", "int", -1), Attr("largest", "bool", True)),
             num_outputs=2,
             doc="(values, i64 indices) of the k largest (or smallest) along axis, in that order; equal values in "
                 "index order; NaN after every number (numpy's sort).")
def _topk(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = ts[0]
    axis = one_axis("topk", x, a["axis"])
    if not 0 <= a["k"] <= x.shape[axis]:
        raise attr_error(f"topk: k={a['k']} outside [0, {x.shape[axis]}] (axis {axis} of {list(x.shape)})")
    shape = tuple(a["k"] if i == axis else d for i, d in enumerate(x.shape))
    return [TensorType(shape, x.dtype), TensorType(shape, i64)]


_arg_extreme("argmax", "largest value")
_arg_extreme("argmin", "smallest value")
_reduce("reduce-sum", "Sum over axes (all when axes is empty).")
_reduce("reduce-mean", "Mean over axes (all when axes is empty).")
_reduce("reduce-max", "Max over axes (all when axes is empty).")


def numel(shape: tuple[int, ...]) -> int:
    """Number of elements of `shape`."""
    return math.prod(shape)
