"""Elementwise kernels: unary maps, broadcasting binary ops, casts.

Binary ops run over `rows`: the output is seen as [R, L] (broadcast axes collapsed at compile
time); each operand gives a start offset per row and a step of 1 (a full row) or 0 (one value
repeated along the row). Work items are (row, column chunk), so both one long row and many
short rows spread over threads. The op is a runtime code, tested outside the inner loops, so
every inner loop is a plain vectorizable loop.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from numba import prange, types
from numba.extending import overload

from .jit import helper, subkernel, twin
from .mathfn import ferf, fexp, fgelu, fgelu_tanh, frelu, fsigmoid, ftanh

CHUNK = 16384
"""Columns per work item of the row kernels."""

class BinaryOp(IntEnum):
    """The binary op a `binary_rows` call applies (a runtime code, tested outside the inner loops)."""

    ADD = 0
    SUB = 1
    MUL = 2
    DIV = 3
    POW = 4
    MAXIMUM = 5
    MINIMUM = 6


class FloatUnary(IntEnum):
    """The map a `float_unary` call applies."""

    GELU = 0
    GELU_TANH = 1
    SIGMOID = 2
    TANH = 3
    ERF = 4
    SQRT = 5
    EXP = 6
    LOG = 7
    RELU = 8
    NEG = 9
    ABS = 10
    CLIP = 11
    COPY = 12


class IntUnary(IntEnum):
    """The map an `int_unary` call applies."""

    RELU = 0
    NEG = 1
    ABS = 2
    CLIP = 3
    COPY = 4


BINARY_CODES = {op.name.lower(): int(op) for op in BinaryOp}
FLOAT_UNARY_CODES = {op.name.lower(): int(op) for op in FloatUnary}
INT_UNARY_CODES = {op.name.lower(): int(op) for op in IntUnary}
"""IR op names (and gelu's tanh form, `gelu_tanh`) to the kernels' codes."""

B_ADD = int(BinaryOp.ADD)
B_SUB = int(BinaryOp.SUB)
B_MUL = int(BinaryOp.MUL)
B_DIV = int(BinaryOp.DIV)
B_POW = int(BinaryOp.POW)
B_MAXIMUM = int(BinaryOp.MAXIMUM)
F_GELU = int(FloatUnary.GELU)
F_GELU_TANH = int(FloatUnary.GELU_TANH)
F_SIGMOID = int(FloatUnary.SIGMOID)
F_TANH = int(FloatUnary.TANH)
F_ERF = int(FloatUnary.ERF)
F_SQRT = int(FloatUnary.SQRT)
F_EXP = int(FloatUnary.EXP)
F_LOG = int(FloatUnary.LOG)
F_RELU = int(FloatUnary.RELU)
F_NEG = int(FloatUnary.NEG)
F_ABS = int(FloatUnary.ABS)
F_CLIP = int(FloatUnary.CLIP)
I_RELU = int(IntUnary.RELU)
I_NEG = int(IntUnary.NEG)
I_ABS = int(IntUnary.ABS)
I_CLIP = int(IntUnary.CLIP)
"""The codes as plain ints: Numba freezes module-level ints into the kernels as constants."""


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
    if op == B_ADD:
        return a + b
    if op == B_SUB:
        return a - b
    if op == B_MUL:
        return a * b
    if op == B_DIV:
        return ir_div(a, b)
    if op == B_POW:
        return a**b
    if op == B_MAXIMUM:
        return a if (a > b or a != a) else b
    return a if (a < b or a != a) else b  # MINIMUM


@subkernel
def _bin_vv(op, a, b, out):  # type: ignore[no-untyped-def]
    n = out.shape[0]
    if op == B_ADD:
        for i in range(n):
            out[i] = a[i] + b[i]
    elif op == B_SUB:
        for i in range(n):
            out[i] = a[i] - b[i]
    elif op == B_MUL:
        for i in range(n):
            out[i] = a[i] * b[i]
    else:
        for i in range(n):
            out[i] = _bin(op, a[i], b[i])


@subkernel
def _bin_vs(op, a, s, out):  # type: ignore[no-untyped-def]
    n = out.shape[0]
    if op == B_ADD:
        for i in range(n):
            out[i] = a[i] + s
    elif op == B_MUL:
        for i in range(n):
            out[i] = a[i] * s
    else:
        for i in range(n):
            out[i] = _bin(op, a[i], s)


@subkernel
def _bin_sv(op, s, b, out):  # type: ignore[no-untyped-def]
    n = out.shape[0]
    if op == B_ADD:
        for i in range(n):
            out[i] = s + b[i]
    elif op == B_MUL:
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
    if op == F_GELU:
        for i in range(n):
            out[i] = fgelu(x[i])
    elif op == F_GELU_TANH:
        for i in range(n):
            out[i] = fgelu_tanh(x[i])
    elif op == F_SIGMOID:
        for i in range(n):
            out[i] = fsigmoid(x[i])
    elif op == F_TANH:
        for i in range(n):
            out[i] = ftanh(x[i])
    elif op == F_ERF:
        for i in range(n):
            out[i] = ferf(x[i])
    elif op == F_SQRT:
        for i in range(n):
            out[i] = np.sqrt(x[i])
    elif op == F_EXP:
        for i in range(n):
            out[i] = fexp(x[i])
    elif op == F_LOG:
        for i in range(n):
            out[i] = np.log(x[i])
    elif op == F_RELU:
        for i in range(n):
            out[i] = frelu(x[i])
    elif op == F_NEG:
        for i in range(n):
            out[i] = -x[i]
    elif op == F_ABS:
        for i in range(n):
            out[i] = abs(x[i])
    elif op == F_CLIP:
        for i in range(n):
            v = x[i]
            v = lo if v < lo else v
            out[i] = hi if v > hi else v
    else:  # COPY
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
        if op == I_RELU:
            for i in range(j1 - j0):
                o[i] = xs[i] if xs[i] > 0 else xs[i] - xs[i]
        elif op == I_NEG:
            for i in range(j1 - j0):
                o[i] = -xs[i]
        elif op == I_ABS:
            for i in range(j1 - j0):
                o[i] = abs(xs[i])
        elif op == I_CLIP:
            for i in range(j1 - j0):
                v = xs[i]
                v = lo if v < lo else v
                o[i] = hi if v > hi else v
        else:  # COPY
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

