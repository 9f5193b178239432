"""Numpy rules that fold IR ops at import when every input is known (shape computations, weights).

These follow the reference backend's semantics for the ops they cover: arithmetic in the
inputs' dtype (half types computed in f32), integer division toward zero, and exact data
movement. Ops not listed here are emitted as IR nodes even when their inputs are constants.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .dtypes import DTYPES

FoldRule = Callable[[list[np.ndarray], dict[str, Any]], np.ndarray]


def _compute_dtype(x: np.ndarray) -> np.dtype:
    if x.dtype.name == "bfloat16" or (x.dtype.kind == "f" and x.dtype.itemsize < 4):
        return np.dtype(np.float32)
    return x.dtype


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> FoldRule:
    def rule(xs: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
        a, b = xs
        if a.dtype != b.dtype:
            raise ValueError(f"inputs have different dtypes {a.dtype} and {b.dtype}")
        dt = _compute_dtype(a)
        with np.errstate(all="ignore"):
            return np.asarray(fn(a.astype(dt, copy=False), b.astype(dt, copy=False))).astype(a.dtype)

    return rule


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu":
        if np.any(b == 0):
            raise ValueError("integer division by zero")
        q = np.floor_divide(a, b)
        fix = (np.remainder(a, b) != 0) & ((a < 0) ^ (b < 0))
        return q + fix.astype(q.dtype)
    return a / b


def _slice(xs: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    x = xs[0]
    idx = [slice(None)] * x.ndim
    for st, en, ax, sp in zip(a["starts"], a["ends"], a["axes"], a["steps"]):
        idx[ax] = slice(st, en, sp)
    return x[tuple(idx)]


def _gather(xs: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    data, idx = xs
    axis = a["axis"] % max(data.ndim, 1)
    n = data.shape[axis]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise ValueError(f"gather index out of range [{-n}, {n}) on axis {axis}: min {idx.min()}, max {idx.max()}")
    return np.take(data, idx.astype(np.int64), axis=axis)


def _reduce(fn: str) -> FoldRule:
    def rule(xs: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
        x = xs[0]
        axes = tuple(ax % x.ndim for ax in a["axes"]) or None
        if fn == "max":
            return np.max(x, axis=axes, keepdims=a["keepdims"])
        acc = np.float64 if x.dtype.kind == "f" else np.int64
        return np.asarray(getattr(np, fn)(x, axis=axes, keepdims=a["keepdims"], dtype=acc)).astype(x.dtype)

    return rule


def _flatten(xs: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    x = xs[0]
    axis = a["axis"] + x.ndim if a["axis"] < 0 else a["axis"]
    return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), int(np.prod(x.shape[axis:], dtype=np.int64)))


FOLD_RULES: dict[str, FoldRule] = {
    "add": _binary(np.add),
    "sub": _binary(np.subtract),
    "mul": _binary(np.multiply),
    "div": _binary(_div),
    "maximum": _binary(np.maximum),
    "minimum": _binary(np.minimum),
    "neg": lambda xs, a: np.negative(xs[0]),
    "floor": lambda xs, a: np.floor(xs[0]),
    "ceil": lambda xs, a: np.ceil(xs[0]),
    "round": lambda xs, a: np.rint(xs[0]),
    "sign": lambda xs, a: np.sign(xs[0]) + xs[0].dtype.type(0),
    "abs": lambda xs, a: np.abs(xs[0]),
    "relu": lambda xs, a: np.maximum(xs[0], xs[0].dtype.type(0)),
    "identity": lambda xs, a: xs[0],
    "dropout": lambda xs, a: xs[0],
    "cast": lambda xs, a: xs[0].astype(DTYPES[a["dtype"]].np_dtype),
    "reshape": lambda xs, a: xs[0].reshape(a["shape"]),
    "flatten": _flatten,
    "transpose": lambda xs, a: np.transpose(xs[0], a["perm"]),
    "concat": lambda xs, a: np.concatenate(xs, axis=a["axis"]),
    "slice": _slice,
    "gather": _gather,
    "reduce-sum": _reduce("sum"),
    "reduce-mean": _reduce("mean"),
    "reduce-max": _reduce("max"),
}
"""IR op -> numpy rule `(arrays, normalized attrs) -> array` used to fold at import."""
