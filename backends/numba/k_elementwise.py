"""Elementwise kernels: unary maps, broadcasting binary ops, casts.

Binary ops run over `rows`: the output is seen as [R, L] (broadcast axes collapsed at compile
time); each operand gives a start offset per row and a step of 1 (a full row) or 0 (one value
repeated along the row). Work items are (row, column chunk), so both one long row and many
short rows spread over threads. The op is a runtime code, tested outside the inner loops, so
every inner loop is a plain vectorizable loop.
"""

from __future__ import annotations

import numpy as np
from numba import prange, types
from numba.extending import overload

from .jit import helper, subkernel, twin
from .mathfn import ferf, fexp, fgelu, fgelu_tanh, frelu, fsigmoid, ftanh

CHUNK = 16384
"""Columns per work item of the row kernels."""

BINARY_CODES = {"add": 0, "sub": 1, "mul": 2, "div": 3, "pow": 4, "maximum": 5, "minimum": 6}
FLOAT_UNARY_CODES = {"gelu": 0, "gelu_tanh": 1, "sigmoid": 2, "tanh": 3, "erf": 4, "sqrt": 5, "exp": 6,
                     "log": 7, "relu": 8, "neg": 9, "abs": 10, "clip": 11, "copy": 12}
INT_UNARY_CODES = {"relu": 0, "neg": 1, "abs": 2, "clip": 3, "copy": 4}


def ir_div(a, b):  # type: ignore[no-untyped-def]
    """The IR's division: true division for floats, truncation toward zero for integers (min / -1 wraps to min)."""
    raise NotImplementedError("only callable from Numba kernels")


@overload(ir_div)
def _ir_div(a, b):  # type: ignore[no-untyped-def]
    if isinstance(a, types.Integer) and isinstance(b, types.Integer):
        def impl(a, b):  # type: ignore[no-untyped-def]
            if b == 0:
                return a - a
            if b == -1:  # min // -1 overflows: numpy wraps it to min, as negation does
                return -a
            q = a // b
            return q + 1 if (q * b != a and (a < 0) != (b < 0)) else q
        return impl

    def fimpl(a, b):  # type: ignore[no-untyped-def]
        return a / b
    return fimpl


@helper
def _bin(op, a, b):  # type: ignore[no-untyped-def]
    if op == 0:
        return a + b
    if op == 1:
        return a - b
    if op == 2:
        return a * b
    if op == 3:
        return ir_div(a, b)
    if op == 4:
        return a**b
    if op == 5:
        return a if (a > b or a != a) else b
    return a if (a < b or a != a) else b


@subkernel
def _bin_vv(op, a, b, out):  # type: ignore[no-untyped-def]
    n = out.shape[0]
    if op == 0:
        for i in range(n):
            out[i] = a[i] + b[i]
    elif op == 1:
        for i in range(n):
            out[i] = a[i] - b[i]
    elif op == 2:
        for i in range(n):
            out[i] = a[i] * b[i]
    else:
        for i in range(n):
            out[i] = _bin(op, a[i], b[i])


@subkernel
def _bin_vs(op, a, s, out):  # type: ignore[no-untyped-def]
    n = out.shape[0]
    if op == 0:
        for i in range(n):
            out[i] = a[i] + s
    elif op == 2:
        for i in range(n):
            out[i] = a[i] * s
    else:
        for i in range(n):
            out[i] = _bin(op, a[i], s)


@subkernel
def _bin_sv(op, s, b, out):  # type: ignore[no-untyped-def]
    n = out.shape[0]
    if op == 0:
        for i in range(n):
            out[i] = s + b[i]
    elif op == 2:
        for i in range(n):
            out[i] = s * b[i]
    else:
        for i in range(n):
            out[i] = _bin(op, s, b[i])


@twin
def binary_rows(op, a, a_off, a_step, b, b_off, b_step, out):  # type: ignore[no-untyped-def]
    """out[r, j] = a[a_off[r] + j*a_step] (op) b[b_off[r] + j*b_step] for an output seen as [R, L]."""
    rows, length = out.shape
    nchunk = (length + CHUNK - 1) // CHUNK
    for t in prange(rows * nchunk):
        r = t // nchunk
        j0 = (t % nchunk) * CHUNK
        j1 = min(length, j0 + CHUNK)
        o = out[r, j0:j1]
        if a_step == 1 and b_step == 1:
            _bin_vv(op, a[a_off[r] + j0:a_off[r] + j1], b[b_off[r] + j0:b_off[r] + j1], o)
        elif a_step == 1:
            _bin_vs(op, a[a_off[r] + j0:a_off[r] + j1], b[b_off[r]], o)
        elif b_step == 1:
            _bin_sv(op, a[a_off[r]], b[b_off[r] + j0:b_off[r] + j1], o)
        else:
            v = _bin(op, a[a_off[r]], b[b_off[r]])
            for i in range(j1 - j0):
                o[i] = v


@subkernel
def float_unary_span(op, x, out, lo, hi):  # type: ignore[no-untyped-def]
    """Apply float unary op `op` to x into out (1-D spans of equal length); lo/hi are clip bounds."""
    n = out.shape[0]
    if op == 0:
        for i in range(n):
            out[i] = fgelu(x[i])
    elif op == 1:
        for i in range(n):
            out[i] = fgelu_tanh(x[i])
    elif op == 2:
        for i in range(n):
            out[i] = fsigmoid(x[i])
    elif op == 3:
        for i in range(n):
            out[i] = ftanh(x[i])
    elif op == 4:
        for i in range(n):
            out[i] = ferf(x[i])
    elif op == 5:
        for i in range(n):
            out[i] = np.sqrt(x[i])
    elif op == 6:
        for i in range(n):
            out[i] = fexp(x[i])
    elif op == 7:
        for i in range(n):
            out[i] = np.log(x[i])
    elif op == 8:
        for i in range(n):
            out[i] = frelu(x[i])
    elif op == 9:
        for i in range(n):
            out[i] = -x[i]
    elif op == 10:
        for i in range(n):
            out[i] = abs(x[i])
    elif op == 11:
        for i in range(n):
            v = x[i]
            v = lo if v < lo else v
            out[i] = hi if v > hi else v
    else:
        for i in range(n):
            out[i] = x[i]


@twin
def float_unary(op, x, out, lo, hi):  # type: ignore[no-untyped-def]
    """out = op(x) elementwise over flat float32 arrays."""
    n = out.shape[0]
    nchunk = (n + CHUNK - 1) // CHUNK
    for t in prange(nchunk):
        j0 = t * CHUNK
        j1 = min(n, j0 + CHUNK)
        float_unary_span(op, x[j0:j1], out[j0:j1], lo, hi)


@twin
def int_unary(op, x, out, lo, hi):  # type: ignore[no-untyped-def]
    """out = op(x) elementwise over flat integer arrays (relu, neg, abs, clip, copy)."""
    n = out.shape[0]
    nchunk = (n + CHUNK - 1) // CHUNK
    for t in prange(nchunk):
        j0 = t * CHUNK
        j1 = min(n, j0 + CHUNK)
        xs = x[j0:j1]
        o = out[j0:j1]
        if op == 0:
            for i in range(j1 - j0):
                o[i] = xs[i] if xs[i] > 0 else xs[i] - xs[i]
        elif op == 1:
            for i in range(j1 - j0):
                o[i] = -xs[i]
        elif op == 2:
            for i in range(j1 - j0):
                o[i] = abs(xs[i])
        elif op == 3:
            for i in range(j1 - j0):
                v = xs[i]
                v = lo if v < lo else v
                o[i] = hi if v > hi else v
        else:
            for i in range(j1 - j0):
                o[i] = xs[i]


@twin
def cast(x, out):  # type: ignore[no-untyped-def]
    """out = x converted to out's dtype: float to float, integer to integer (wrapping), integer to float."""
    n = out.shape[0]
    nchunk = (n + CHUNK - 1) // CHUNK
    for t in prange(nchunk):
        j0 = t * CHUNK
        j1 = min(n, j0 + CHUNK)
        xs = x[j0:j1]
        o = out[j0:j1]
        for i in range(j1 - j0):
            o[i] = xs[i]


@twin
def cast_saturating(x, out, lo, hi_excl, lo_i, hi_i):  # type: ignore[no-untyped-def]
    """out = float x to out's integer dtype: truncated, lo_i below lo, hi_i from hi_excl up, 0 for NaN."""
    n = out.shape[0]
    nchunk = (n + CHUNK - 1) // CHUNK
    for t in prange(nchunk):
        j0 = t * CHUNK
        j1 = min(n, j0 + CHUNK)
        xs = x[j0:j1]
        o = out[j0:j1]
        for i in range(j1 - j0):
            v = xs[i]
            edge = lo_i if v < lo else (hi_i if v >= hi_excl else 0)  # an int64 either way, never a float
            o[i] = np.int64(v) if v >= lo and v < hi_excl else edge


@twin
def cast_to_bool(x, out):  # type: ignore[no-untyped-def]
    """out = (x != 0)."""
    n = out.shape[0]
    for i in prange(n):
        out[i] = x[i] != 0

