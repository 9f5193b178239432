"""Reduction kernels over one contiguous run of axes: the input is seen as [A, R, B].

Sums accumulate in float64 for floats and int64 for integers (as the reference does);
`div` (the element count, or 1) turns the last sum into a mean. Several separated runs of
axes are reduced one run at a time by the lowering.
"""

from __future__ import annotations

import numpy as np
from numba import prange, types
from numba.extending import overload

from .jit import twin

SUM, MAX = 0, 1


def acc_zero(x):  # type: ignore[no-untyped-def]
    """The zero of the accumulator type for elements like `x` (float64 or int64)."""
    raise NotImplementedError("only callable from Numba kernels")


@overload(acc_zero)
def _acc_zero(x):  # type: ignore[no-untyped-def]
    if isinstance(x, types.Float):
        return lambda x: np.float64(0.0)
    return lambda x: np.int64(0)


@twin
def reduce_rows(x, out, op, div):  # type: ignore[no-untyped-def]
    """out[a] = reduce(x[a, :]) for 2-D [A, R] arrays (B == 1)."""
    na, length = x.shape
    for a in prange(na):
        xr = x[a]
        if op == SUM:
            s = acc_zero(out[a])
            for j in range(length):
                s += xr[j]
            if div != 1.0:
                out[a] = s / div
            else:
                out[a] = s
        else:
            m = xr[0]
            for j in range(1, length):
                v = xr[j]
                m = v if (v > m or v != v) else m
            out[a] = m


@twin
def reduce_mid(x, out, acc, op, div):  # type: ignore[no-untyped-def]
    """out[a, b] = reduce over r of x[a, r, b] for 3-D arrays; acc is accumulator scratch [A, B]."""
    na, length, nb = x.shape
    for a in prange(na):
        ac = acc[a]
        if op == SUM:
            for b in range(nb):
                ac[b] = 0
            for r in range(length):
                xr = x[a, r]
                for b in range(nb):
                    ac[b] += xr[b]
            o = out[a]
            if div != 1.0:
                for b in range(nb):
                    o[b] = ac[b] / div
            else:
                for b in range(nb):
                    o[b] = ac[b]
        else:
            o = out[a]
            xr = x[a, 0]
            for b in range(nb):
                o[b] = xr[b]
            for r in range(1, length):
                xr = x[a, r]
                for b in range(nb):
                    v = xr[b]
                    m = o[b]
                    o[b] = v if (v > m or v != v) else m


@twin
def arg_extreme(x, out, largest, last):  # type: ignore[no-untyped-def]
    """out[a, b] = the index r of the largest (or smallest) x[a, r, b], the first of equal ones (the last with
    `last`); a NaN counts as the extreme: the first NaN wins (the last with `last`), as numpy's argmax."""
    na, length, nb = x.shape
    for a in prange(na):
        o = out[a]
        for b in range(nb):
            m = x[a, 0, b]
            k = 0
            for r in range(1, length):
                v = x[a, r, b]
                if v != v:
                    better = m == m or last
                elif m != m:
                    better = False
                elif largest:
                    better = v > m or (last and v == m)
                else:
                    better = v < m or (last and v == m)
                if better:
                    m = v
                    k = r
            o[b] = k


@twin
def cumulative_sum(x, out, exclusive, reverse):  # type: ignore[no-untyped-def]
    """out[a, r, b] = the sum of x[a, s, b] over s <= r (s < r when exclusive; s >= r / s > r with reverse), in
    the dtype of x and in order along r, as the reference accumulates."""
    na, length, nb = x.shape
    first = length - 1 if reverse else 0
    step = -1 if reverse else 1
    for a in prange(na):
        for b in range(nb):
            s = x[a, first, b]
            if exclusive:
                out[a, first, b] = 0
            else:
                out[a, first, b] = s
            r = first
            for _ in range(1, length):
                r += step
                if exclusive:
                    out[a, r, b] = s
                    s += x[a, r, b]
                else:
                    s += x[a, r, b]
                    out[a, r, b] = s


@twin
def top_k(x, values, indices, largest):  # type: ignore[no-untyped-def]
    """values / indices [A, K, B] = the K largest (or smallest) x[a, :, b] (x [A, R, B]) and their positions, from
    the extreme down, equal values in position order, NaN last: a stable sort of the values as float64, negated
    for the largest (as the reference sorts)."""
    na, length, nb = x.shape
    k = values.shape[1]
    for t in prange(na * nb):
        a = t // nb
        b = t - a * nb
        key = np.empty(length, np.float64)
        for r in range(length):
            v = np.float64(x[a, r, b])
            key[r] = -v if largest else v
        order = np.argsort(key, kind="mergesort")
        for j in range(k):
            r = order[j]
            values[a, j, b] = x[a, r, b]
            indices[a, j, b] = r
