"""Reference semantics of elementwise and data-movement ops (numpy; the golden truth)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...ir.dtypes import dtype_from_numpy
from ...ir.graph import Node
from ...ir.ops.elementwise import float_to_int_bounds, integer_clip_bounds

Arrays = list[np.ndarray]


def scipy_special(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """scipy.special.`name`, imported on the first call: importing the backend loads no second BLAS library
    (scipy brings its own OpenBLAS and thread pool) into a process that only does numpy work."""

    def call(x: np.ndarray) -> np.ndarray:
        from scipy import special

        return getattr(special, name)(x)

    return call


_erf = scipy_special("erf")


def compute_dtype(x: np.ndarray) -> np.dtype:
    """The dtype arithmetic runs in: f16/bf16 widen to f32 (numpy has no fast half math)."""
    if x.dtype.name == "bfloat16" or (x.dtype.kind == "f" and x.dtype.itemsize < 4):
        return np.dtype(np.float32)
    return x.dtype


def out_dtype(node: Node) -> np.dtype:
    """The numpy dtype of the node's first output."""
    return node.outputs[0].type.dtype.np_dtype


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    q = np.floor_divide(a, b)
    fix = (np.remainder(a, b) != 0) & ((a < 0) ^ (b < 0))
    return q + fix.astype(q.dtype)


def _binary(fn):  # type: ignore[no-untyped-def]
    def rule(node: Node, xs: Arrays) -> np.ndarray:
        a, b = xs
        dt = compute_dtype(a)
        return fn(a.astype(dt, copy=False), b.astype(dt, copy=False)).astype(out_dtype(node), copy=False)

    return rule


def _mod(node: Node, xs: Arrays) -> np.ndarray:
    """numpy's mod (the divisor's sign) or fmod (the dividend's); an integer remainder by 0 is 0."""
    a, b = xs
    dt = compute_dtype(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (np.fmod if node.attrs["fmod"] else np.mod)(a.astype(dt, copy=False), b.astype(dt, copy=False))
    return np.asarray(r).astype(out_dtype(node), copy=False)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu":
        return _int_div(a, b)
    return a / b


def _float_unary(fn):  # type: ignore[no-untyped-def]
    """Transcendentals are evaluated in float64 and rounded once to the output dtype; outside its domain a function
    gives NaN (or an infinity at a pole, or on overflow), as IEEE 754 defines, without numpy's warning."""

    def rule(node: Node, xs: Arrays) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            return fn(xs[0].astype(np.float64)).astype(out_dtype(node))

    return rule


def _gelu(node: Node, xs: Arrays) -> np.ndarray:
    x = xs[0].astype(np.float64)
    if node.attrs.get("approximate", "none") == "tanh":
        y = 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
    else:
        y = 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))
    return y.astype(out_dtype(node))


def _clip(node: Node, xs: Arrays) -> np.ndarray:
    x = xs[0]
    lo, hi = node.attrs.get("min", -np.inf), node.attrs.get("max", np.inf)
    if x.dtype.kind in "iu":
        lo, hi = integer_clip_bounds(lo, hi, np.iinfo(x.dtype))
        return np.minimum(np.maximum(x, x.dtype.type(lo)), x.dtype.type(hi))
    return np.clip(x, lo, hi).astype(x.dtype)


def _cast(node: Node, xs: Arrays) -> np.ndarray:
    x, dt = xs[0], out_dtype(node)
    if not (np.issubdtype(dt, np.integer) and dtype_from_numpy(x.dtype).is_float):
        return x.astype(dt)
    x = x.astype(np.float64)  # exact for every float type the IR has, and for the bounds
    lo, hi_excl, lo_i, hi_i = float_to_int_bounds(np.iinfo(dt))
    inside = (x >= lo) & (x < hi_excl)  # False for NaN
    out = np.where(inside, x, 0).astype(dt)  # only values in range are converted
    out[x < lo] = lo_i
    out[x >= hi_excl] = hi_i
    return out


def _reshape(node: Node, xs: Arrays) -> np.ndarray:
    return xs[0].reshape(node.outputs[0].type.shape)


def _transpose(node: Node, xs: Arrays) -> np.ndarray:
    return np.transpose(xs[0], node.attrs["perm"])


def _concat(node: Node, xs: Arrays) -> np.ndarray:
    return np.concatenate(xs, axis=node.attrs["axis"])


def _slice(node: Node, xs: Arrays) -> np.ndarray:
    x = xs[0]
    idx = [slice(None)] * x.ndim
    a = node.attrs
    for st, en, ax, sp in zip(a["starts"], a["ends"], a["axes"], a["steps"]):
        idx[ax] = slice(st, en, sp)
    return x[tuple(idx)]


def _gather(node: Node, xs: Arrays) -> np.ndarray:
    data, idx = xs
    axis = node.attrs.get("axis", 0)
    n = data.shape[axis]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"gather index out of range [{-n}, {n}) on axis {axis}: "
                         f"min {idx.min()}, max {idx.max()}")
    return np.take(data, idx.astype(np.int64), axis=axis)


def _gather_elements(node: Node, xs: Arrays) -> np.ndarray:
    data, idx = xs
    axis = node.attrs["axis"] % data.ndim
    n = data.shape[axis]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"gather-elements index out of range [{-n}, {n}) on axis {axis}: "
                         f"min {idx.min()}, max {idx.max()}")
    idx = idx.astype(np.int64)
    return np.take_along_axis(data, np.where(idx < 0, idx + n, idx), axis=axis)


def _nd_tuples(op: str, idx: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
    """Index tuples (last axis) with negative entries counted from the end; an entry out of range is an IndexError."""
    lo, hi = -np.asarray(dims, np.int64), np.asarray(dims, np.int64)
    if idx.size and ((idx < lo).any() or (idx >= hi).any()):
        raise IndexError(f"{op}: an index tuple of {idx.reshape(-1, len(dims))[0].tolist()}... leaves the "
                         f"indexed axes {list(dims)}")
    return np.where(idx < 0, idx + hi, idx).astype(np.int64)


def _gather_nd(node: Node, xs: Arrays) -> np.ndarray:
    data, idx = xs
    b, k = node.attrs["batch_dims"], idx.shape[-1]
    tuples = _nd_tuples("gather-nd", idx, data.shape[b:b + k])
    nb = int(np.prod(data.shape[:b], dtype=np.int64))
    d2 = data.reshape((nb,) + data.shape[b:])
    t2 = tuples.reshape(nb, -1, k)
    parts = [d2[i][tuple(t2[i].T)] for i in range(nb)]
    return np.stack(parts).reshape(idx.shape[:-1] + data.shape[b + k:])


def _scatter_nd(node: Node, xs: Arrays) -> np.ndarray:
    data, idx, upd = xs
    k = idx.shape[-1]
    tuples = _nd_tuples("scatter-nd", idx, data.shape[:k]).reshape(-1, k)
    rows = upd.reshape((tuples.shape[0],) + data.shape[k:])
    out = data.copy()
    reduction = node.attrs["reduction"]
    for t, row in zip(tuples, rows):  # in update order
        pos = tuple(t)
        out[pos] = row if reduction == "none" else _SCATTER_UFUNCS[reduction](out[pos], row)
    return out


_SCATTER_UFUNCS = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scatter_elements(node: Node, xs: Arrays) -> np.ndarray:
    data, idx, upd = xs
    axis, reduction = node.attrs["axis"] % data.ndim, node.attrs["reduction"]
    n = data.shape[axis]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"scatter-elements index out of range [{-n}, {n}) on axis {axis}: "
                         f"min {idx.min()}, max {idx.max()}")
    where = list(np.indices(idx.shape, sparse=True))
    where[axis] = np.where(idx < 0, idx + n, idx).astype(np.int64)
    out = data.copy()
    if reduction == "none":  # in update order: the last of duplicates wins
        flat = np.ravel_multi_index(np.broadcast_arrays(*where), data.shape).reshape(-1)
        out.reshape(-1)[flat] = upd.reshape(-1)
    else:
        _SCATTER_UFUNCS[reduction].at(out, tuple(where), upd)
    return out


ELEMENTWISE_RULES = {
    "add": _binary(np.add),
    "sub": _binary(np.subtract),
    "mul": _binary(np.multiply),
    "div": _binary(_div),
    "pow": _binary(np.power),
    "maximum": _binary(np.maximum),
    "mod": _mod,
    "minimum": _binary(np.minimum),
    "relu": lambda n, xs: np.maximum(xs[0], xs[0].dtype.type(0)),
    "gelu": _gelu,
    "sigmoid": _float_unary(scipy_special("expit")),
    "tanh": _float_unary(np.tanh),
    "erf": _float_unary(_erf),
    "sqrt": _float_unary(np.sqrt),
    "exp": _float_unary(np.exp),
    "log": _float_unary(np.log),
    "floor": _float_unary(np.floor),
    "ceil": _float_unary(np.ceil),
    "round": _float_unary(np.rint),
    "sin": _float_unary(np.sin),
    "cos": _float_unary(np.cos),
    "tan": _float_unary(np.tan),
    "asin": _float_unary(np.arcsin),
    "acos": _float_unary(np.arccos),
    "atan": _float_unary(np.arctan),
    "sinh": _float_unary(np.sinh),
    "cosh": _float_unary(np.cosh),
    "asinh": _float_unary(np.arcsinh),
    "acosh": _float_unary(np.arccosh),
    "atanh": _float_unary(np.arctanh),
    "sign": lambda n, xs: np.sign(xs[0]) + xs[0].dtype.type(0),
    "neg": lambda n, xs: np.negative(xs[0]),
    "abs": lambda n, xs: np.abs(xs[0]),
    "identity": lambda n, xs: xs[0],
    "dropout": lambda n, xs: xs[0],
    "clip": _clip,
    "cast": _cast,
    "reshape": _reshape,
    "flatten": _reshape,
    "transpose": _transpose,
    "concat": _concat,
    "slice": _slice,
    "gather": _gather,
    "gather-elements": _gather_elements,
    "scatter-elements": _scatter_elements,
    "gather-nd": _gather_nd,
    "scatter-nd": _scatter_nd,
}
