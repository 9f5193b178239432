"""Inputs given to a graph, checked against its declared inputs: names, dtype, shape, layout, casts.

The rules, the same on every backend:
- an array must have the input's dtype exactly; another dtype is an InputError naming the input, the
  dtype given and the one expected, unless `cast=True`, which converts it, and still refuses a
  conversion that changes a value (an integer out of range, a fraction or NaN to an integer, a finite
  number that overflows a float type; rounding to the nearest float of the narrower type is allowed);
- a Python list, tuple or scalar has no dtype of its own: it is converted to the input's dtype when
  its elements are of that kind (numbers for a float input, integers for an integer one, booleans for a
  bool one) and the conversion keeps every value; otherwise it is refused;
- a non-contiguous array (a transposed or strided view) or a misaligned one is copied into a C-contiguous,
  aligned one, never refused;
- a graph with one input also takes the array itself instead of a dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .dtypes import DType
from .graph import Graph, Value


class InputError(ValueError):
    """Inputs given to a graph do not match its declared inputs; the message names the input."""


def as_input_mapping(graph: Graph, inputs: Any) -> Mapping[str, Any]:
    """`inputs` as a dict by name: a mapping as it is, or one array for a graph with exactly one input."""
    if isinstance(inputs, Mapping):
        return inputs
    names = [v.name for v in graph.inputs]
    if len(names) == 1:
        return {names[0]: inputs}
    raise InputError(f"graph {graph.name}: got one {type(inputs).__name__} but the graph has {len(names)} inputs "
                     f"{names}; pass a dict by name")


def _describe(v: Value) -> str:
    return f"{v.type.dtype.name} ({v.type.dtype.np_dtype})"


def _lossless(a: np.ndarray, want: DType) -> str | None:
    """Why converting `a` to `want` would change a value, or None when it keeps every value."""
    target = want.np_dtype
    if a.size == 0:
        return None
    if want.name == "bool":
        ok = np.isin(a, (0, 1)) if a.dtype.kind != "b" else np.ones(a.shape, bool)
        return None if ok.all() else "values other than 0 and 1"
    if not want.is_float:
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            return "NaN or infinity has no integer value"
        if a.dtype.kind == "f" and not np.all(a == np.trunc(a)):
            return "fractions would be cut off"
        lo, hi = (-(1 << (want.bits - 1)), (1 << (want.bits - 1)) - 1) if want.is_signed else (0, (1 << want.bits) - 1)
        bad = (a < lo) | (a > hi)
        if np.any(bad):
            return f"{a[bad].reshape(-1)[0].item()!r} is outside {want.name}'s range [{lo}, {hi}]"
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        converted = a.astype(target)
        finite = np.isfinite(a.astype(np.float64)) if a.dtype.kind in "fiub" else np.ones(a.shape, bool)
        overflow = finite & ~np.isfinite(converted.astype(np.float64))
    if np.any(overflow):
        return f"{a[overflow].reshape(-1)[0].item()!r} overflows {want.name}"
    return None


def _from_python(graph: Graph, v: Value, given: Any) -> np.ndarray:
    """A list, tuple or scalar converted to the input's dtype when that is unambiguous."""
    want = v.type.dtype
    where = f"graph {graph.name}: input {v.name!r}"
    try:
        a = np.asarray(given)
    except ValueError as e:
        raise InputError(f"{where}: a {type(given).__name__} that is not a rectangular array ({e})") from None
    kind = a.dtype.kind
    fits = (kind in "fiu" if want.is_float else kind == "b" if want.name == "bool" else kind in "iu")
    if not fits:
        held = {"U": "text", "S": "bytes", "O": "Python object"}.get(kind, str(a.dtype))
        raise InputError(f"{where}: a {type(given).__name__} of {held} values cannot become {_describe(v)} "
                         f"without choosing a conversion; pass a numpy array of dtype {want.np_dtype}")
    why = _lossless(a, want)
    if why:
        raise InputError(f"{where}: a {type(given).__name__} whose values do not fit {want.name}: {why}")
    return a.astype(want.np_dtype)


def check_input(graph: Graph, v: Value, given: Any, cast: bool = False) -> np.ndarray:
    """The array to feed input `v`: dtype, shape and layout checked by the rules of this module."""
    want = v.type.dtype
    if type(given) is np.ndarray and given.dtype == want.np_dtype and given.shape == v.type.shape \
            and _laid_out(given):
        return given  # the common case, checked before anything is formatted
    where = f"graph {graph.name}: input {v.name!r}"
    if isinstance(given, np.ndarray | np.generic):
        a = np.asarray(given)
        if a.dtype != want.np_dtype:
            if not cast:
                raise InputError(f"{where} has dtype {a.dtype}, expected {_describe(v)}; convert it, or pass "
                                 "cast=True to convert when no value changes")
            why = _lossless(a, want)
            if why:
                raise InputError(f"{where}: cannot cast {a.dtype} to {want.name} even with cast=True: {why}")
            with np.errstate(over="ignore", invalid="ignore"):
                a = a.astype(want.np_dtype)
    else:
        a = _from_python(graph, v, given)
    if a.shape != v.type.shape:
        raise InputError(f"{where} has shape {list(a.shape)}, expected {list(v.type.shape)}")
    return a if _laid_out(a) else np.array(a, order="C")


def _laid_out(a: np.ndarray) -> bool:
    """C-contiguous and aligned: the layout every backend's kernels are compiled for (else the input is copied)."""
    return a.flags.c_contiguous and a.flags.aligned


InputSpec = tuple[str, np.dtype, tuple[int, ...]]
"""(name, numpy dtype, shape) of one graph input."""


def input_specs(graph: Graph) -> tuple[InputSpec, ...]:
    """What `matched_inputs` checks, per graph input in order (made once by a runtime that runs many times)."""
    return tuple((v.name, v.type.dtype.np_dtype, v.type.shape) for v in graph.inputs)


def matched_inputs(specs: tuple[InputSpec, ...], inputs: Any) -> list[np.ndarray] | None:
    """The common case, checked first: `inputs` a dict of exactly these names holding C-contiguous, aligned arrays
    of the declared dtypes and shapes; their arrays in spec order (no copy), else None (`check_inputs` decides).
    It touches only the specs and the arrays: after a kernel that streamed megabytes, the graph's own objects
    are out of cache (the check through them took 15.6 us there, this 10.4)."""
    if type(inputs) is not dict or len(inputs) != len(specs):
        return None
    arrays = []
    for name, dtype, shape in specs:
        a = inputs.get(name)
        if type(a) is not np.ndarray or a.dtype != dtype or a.shape != shape or not _laid_out(a):
            return None
        arrays.append(a)
    return arrays


def check_inputs(graph: Graph, inputs: Any, cast: bool = False) -> dict[int, np.ndarray]:
    """Match `inputs` (a dict by name, or one array for a one-input graph) to the graph's inputs; id -> array."""
    fast = matched_inputs(input_specs(graph), inputs)
    if fast is not None:
        return {id(v): a for v, a in zip(graph.inputs, fast)}
    if type(inputs) is np.ndarray and len(graph.inputs) == 1:  # `exe(x)` on a one-input graph
        v = graph.inputs[0]
        if inputs.dtype == v.type.dtype.np_dtype and inputs.shape == v.type.shape and _laid_out(inputs):
            return {id(v): inputs}
    inputs = as_input_mapping(graph, inputs)
    if len(inputs) != len(graph.inputs) or any(v.name not in inputs for v in graph.inputs):
        names = [v.name for v in graph.inputs]
        unknown = sorted(set(inputs) - set(names))
        if unknown:
            raise InputError(f"graph {graph.name}: unknown input(s) {unknown}; inputs are {names}")
        missing = next(v for v in graph.inputs if v.name not in inputs)
        raise InputError(f"graph {graph.name}: missing input {missing.name!r} ({missing.type})")
    return {id(v): check_input(graph, v, inputs[v.name], cast) for v in graph.inputs}
