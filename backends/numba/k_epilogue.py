"""The per-tile epilogue routines every matrix kernel calls on its output tiles (see epilogue.py).

A kernel passes the epilogue as `stages` (int64 StageKind codes), `vecs` (one float32 row per
vector stage, indexed by channel), `params` (float32 [stages, 2]: clip bounds) and `res` (the
residual rows, or a dummy when there is no RESIDUAL stage).
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from .epilogue import StageKind
from .jit import helper, subkernel
from .mathfn import fgelu, fgelu_tanh, frelu, fsigmoid, ftanh

ADD = int(StageKind.ADD)
MUL = int(StageKind.MUL)
DIV = int(StageKind.DIV)
RESIDUAL = int(StageKind.RESIDUAL)
RELU = int(StageKind.RELU)
GELU = int(StageKind.GELU)
GELU_TANH = int(StageKind.GELU_TANH)
SIGMOID = int(StageKind.SIGMOID)
TANH = int(StageKind.TANH)
CLIP = int(StageKind.CLIP)
CHUNK_FLOATS = 8192
"""Rows of a tile whose epilogue runs stage by stage together: at most this many elements (32 KB, in L1)."""
PATTERN_FLOATS = 512
"""Elements (at least) of a channel vector repeated along whole rows: the run a flat tile's vector stages read."""


def rows_as_flat(a, m0, m1):  # type: ignore[no-untyped-def]
    """(True, a[m0:m1] as one 1-D run) when `a` is a C-contiguous matrix, else (False, an empty run)."""
    if a.ndim == 2 and a.flags.c_contiguous:
        return True, a[m0:m1].reshape(-1)
    return False, np.empty(0, a.dtype)


@overload(rows_as_flat)
def _rows_as_flat_overload(a, m0, m1):  # type: ignore[no-untyped-def]
    if isinstance(a, types.Array) and a.ndim == 2 and a.layout == "C":
        return lambda a, m0, m1: (True, a[m0:m1].reshape(-1))
    dtype = a.dtype
    return lambda a, m0, m1: (False, np.empty(0, dtype))


@helper
def pattern_length(w):  # type: ignore[no-untyped-def]
    """Elements of a channel vector of w entries repeated over whole rows: at least PATTERN_FLOATS (or one row)."""
    return w * max(1, PATTERN_FLOATS // max(w, 1))


@helper
def repeat_rows_into(rep, vec, w):  # type: ignore[no-untyped-def]
    """rep = vec[:w] repeated over whole rows of w (rep's length a multiple of w)."""
    for j in range(w):
        rep[j] = vec[j]
    done = w
    while done < rep.shape[0]:  # doubling copies: long runs, not one short loop per row
        n = min(done, rep.shape[0] - done)
        src, dst = rep[:n], rep[done:done + n]
        for j in range(n):
            dst[j] = src[j]
        done += n


@helper
def repeated_rows(vec, w):  # type: ignore[no-untyped-def]
    """vec[:w] repeated over whole rows of w, `pattern_length(w)` elements."""
    rep = np.empty(pattern_length(w), vec.dtype)
    repeat_rows_into(rep, vec, w)
    return rep


@helper
def apply_stage(o, n, code, lo, hi, rr):  # type: ignore[no-untyped-def]
    """o[:n] = non-vector stage `code` of o[:n]: RESIDUAL adds rr[:n], CLIP clamps to [lo, hi], else an activation."""
    if code == RESIDUAL:
        for j in range(n):
            o[j] += rr[j]
    elif code == RELU:
        for j in range(n):
            o[j] = frelu(o[j])
    elif code == GELU:
        for j in range(n):
            o[j] = fgelu(o[j])
    elif code == GELU_TANH:
        for j in range(n):
            o[j] = fgelu_tanh(o[j])
    elif code == SIGMOID:
        for j in range(n):
            o[j] = fsigmoid(o[j])
    elif code == TANH:
        for j in range(n):
            o[j] = ftanh(o[j])
    elif code == CLIP:
        for j in range(n):
            x = o[j]
            x = lo if x < lo else x
            o[j] = hi if x > hi else x


@helper
def is_vector_stage(code):  # type: ignore[no-untyped-def]
    """Whether stage `code` reads a per-channel vector."""
    return code == ADD or code == MUL or code == DIV


AFFINE_STAGES = 3
"""Leading per-channel ADD / MUL stages that one pass over a channel's row applies together (a bias, then an
inference batch norm's scale and shift)."""


@helper
def leading_affine(stages):  # type: ignore[no-untyped-def]
    """len(stages) when one pass per channel row can apply them all: two stages or more, 1 to AFFINE_STAGES ADD /
    MUL stages then at most one RELU or CLIP; else 0 (the stages run one by one)."""
    n = stages.shape[0]
    k = 0
    while k < n and k < AFFINE_STAGES and (stages[k] == ADD or stages[k] == MUL):
        k += 1
    if n < 2 or k == 0 or k < n - 1 or (k == n - 1 and stages[k] != RELU and stages[k] != CLIP):
        return 0  # a lone stage runs as fast by itself (one add, not three multiply-adds)
    return n


@helper
def affine_stage(stages, s, k, vecs, chan):  # type: ignore[no-untyped-def]
    """(m, a) of stage s < k as v * m + a: ADD (1, its vector's value for `chan`), MUL (the value, 0); (1, 0) for
    any other stage or s >= k."""
    one, zero = np.float32(1.0), np.float32(0.0)
    if s >= k or (stages[s] != ADD and stages[s] != MUL):
        return one, zero
    v = vecs[s, chan]
    return (v, zero) if stages[s] == MUL else (one, v)


@helper
def affine_pass(row, w, m0, a0, m1, a1, m2, a2, act, lo, hi):  # type: ignore[no-untyped-def]
    """row[:w] = act(((row * m0 + a0) * m1 + a1) * m2 + a2), act RELU, CLIP to [lo, hi], or none (-1). Each
    multiply-add has an exact identity part, so it rounds as the one stage it stands for."""
    if act == RELU:
        for j in range(w):
            row[j] = frelu(((row[j] * m0 + a0) * m1 + a1) * m2 + a2)
    elif act == CLIP:
        for j in range(w):
            x = ((row[j] * m0 + a0) * m1 + a1) * m2 + a2
            x = lo if x < lo else x
            row[j] = hi if x > hi else x
    else:
        for j in range(w):
            row[j] = ((row[j] * m0 + a0) * m1 + a1) * m2 + a2


@subkernel
def epi_row(dst, src, copy, stages, vecs, params, c0, chan, res):  # type: ignore[no-untyped-def]
    """Apply epilogue `stages` to one output row.

    dst = src (when `copy`), then each stage in order: vector stages read vecs[k, c0 + j]
    (row layout: the channel is the column) or vecs[k, chan] when chan >= 0 (one channel per
    row); RESIDUAL adds the row `res`; CLIP reads its bounds from params[s]. Callers pass c0 and chan as
    int64 values (`np.int64(0)`), not literals: Numba compiles a routine again for each literal argument.
    """
    n = dst.shape[0]
    if copy:
        for j in range(n):
            dst[j] = src[j]
    vi = 0
    for s in range(stages.shape[0]):
        code = stages[s]
        if is_vector_stage(code):
            if chan >= 0:
                v = vecs[vi, chan]
                if code == ADD:
                    for j in range(n):
                        dst[j] += v
                elif code == MUL:
                    for j in range(n):
                        dst[j] *= v
                else:
                    for j in range(n):
                        dst[j] /= v
            else:
                vv = vecs[vi, c0:c0 + n]
                if code == ADD:
                    for j in range(n):
                        dst[j] += vv[j]
                elif code == MUL:
                    for j in range(n):
                        dst[j] *= vv[j]
                else:
                    for j in range(n):
                        dst[j] /= vv[j]
            vi += 1
        else:
            apply_stage(dst, n, code, params[s, 0], params[s, 1], res)


@helper
def epi_tile(out, m0, m1, c0, c1, stages, vecs, params, res):  # type: ignore[no-untyped-def]
    """The epilogue of the tile out[m0:m1, c0:c1]: on whole rows of a C-contiguous `out` as one flat run
    (`epi_flat`), else row by row (`epi_block`)."""
    if c0 == 0 and c1 == out.shape[1] and c1 > 0 and m1 > m0:
        ok, flat = rows_as_flat(out, m0, m1)
        ok_res, flat_res = rows_as_flat(res, m0, m1)
        residual = False
        for s in range(stages.shape[0]):
            residual = residual or stages[s] == RESIDUAL
        if ok and (not residual or (ok_res and res.shape[0] >= m1 and res.shape[1] == c1)):
            epi_flat(flat, c1, stages, vecs, params, flat_res)
            return
    # int64 bounds, never literals: a constant bound (wgemm's m0 = 0) would compile epi_block once more
    epi_block(out, np.int64(m0), np.int64(m1), np.int64(c0), np.int64(c1), stages, vecs, params, res)


@subkernel
def epi_flat(flat, w, stages, vecs, params, flat_res):  # type: ignore[no-untyped-def]
    """Apply epilogue `stages` to `flat`, whole rows of w channels in one run (flat_res: the residual's rows alike).

    The same arithmetic on every element as `epi_row`, stage by stage over chunks of whole rows (in L1 while
    their stages run). A vector stage reads its vector repeated over whole rows (`repeated_rows`), so that every
    loop runs over hundreds of elements however narrow the rows: a tile of 4096 rows of 16 channels (a
    convolution's pixels) took 600 us row by row with three stages, 32 us flat in tiles of 256 rows.
    """
    size = flat.shape[0]
    vector_stages = 0
    for s in range(stages.shape[0]):
        vector_stages += is_vector_stage(stages[s])
    reps = np.empty((vector_stages, pattern_length(w)), flat.dtype)
    for v in range(vector_stages):
        repeat_rows_into(reps[v], vecs[v], w)
    step = reps.shape[1]
    chunk = step * max(1, CHUNK_FLOATS // step)
    for c0 in range(0, size, chunk):
        c1 = min(size, c0 + chunk)
        vi = 0
        for s in range(stages.shape[0]):
            code = stages[s]
            if is_vector_stage(code):
                for s0 in range(c0, c1, step):
                    n = min(step, c1 - s0)
                    run = flat[s0:s0 + n]
                    rep = reps[vi]
                    if code == ADD:
                        for j in range(n):
                            run[j] += rep[j]
                    elif code == MUL:
                        for j in range(n):
                            run[j] *= rep[j]
                    else:
                        for j in range(n):
                            run[j] /= rep[j]
                vi += 1
            else:
                apply_stage(flat[c0:c1], c1 - c0, code, params[s, 0], params[s, 1], flat_res[c0:c1])


@subkernel
def epi_block(out, m0, m1, c0, c1, stages, vecs, params, res):  # type: ignore[no-untyped-def]
    """Apply epilogue `stages` to out[m0:m1, c0:c1] (vectors run along the columns).

    The same arithmetic on every element as `epi_row`, stage by stage over chunks of rows of at most
    CHUNK_FLOATS (in L1 while their stages run) with 2-D indexing: a row costs a loop start per stage, not a
    row view and a stage switch (a 64 x 10 tile with a bias: 2.48 -> 0.18 us).
    """
    step = max(1, CHUNK_FLOATS // max(c1 - c0, 1))
    for r0 in range(m0, m1, step):
        epi_rows(out, r0, min(m1, r0 + step), c0, c1, stages, vecs, params, res)


@helper
def epi_rows(out, m0, m1, c0, c1, stages, vecs, params, res):  # type: ignore[no-untyped-def]
    """`epi_block` on rows m0..m1, stage by stage.

    Loops index row views from 0 (`out[r, c0:c1]`, `vecs[k, c0:c1]`) so that they vectorize: indexing
    out[r, j] from j = c0 keeps numpy's negative-index handling in the loop, which stops vectorization
    (a 64 x 512 tile with a bias: 43 -> 4.7 us).
    """
    last = res.shape[0] - 1
    w = c1 - c0
    vi = 0
    for s in range(stages.shape[0]):
        code = stages[s]
        lo, hi = params[s, 0], params[s, 1]
        for r in range(m0, m1):
            row = out[r, c0:c1]
            if code == ADD:
                vv = vecs[vi, c0:c1]
                for j in range(w):
                    row[j] += vv[j]
            elif code == MUL:
                vv = vecs[vi, c0:c1]
                for j in range(w):
                    row[j] *= vv[j]
            elif code == DIV:
                vv = vecs[vi, c0:c1]
                for j in range(w):
                    row[j] /= vv[j]
            else:
                apply_stage(row, w, code, lo, hi, res[min(r, last), c0:c1])
        if is_vector_stage(code):
            vi += 1


@subkernel
def epi_channel_rows(t, j0, w, c0, stages, vecs, params, res, n, lo):  # type: ignore[no-untyped-def]
    """Apply epilogue `stages` to t[:, j0:j0 + w], a 2-D tile whose row r is channel c0 + r.

    The same arithmetic on every element as `epi_row` with one channel per row, stage by stage over the
    whole tile (in L1 while its stages run; a row costs a loop start per stage): vector stages read
    vecs[k, c]; RESIDUAL adds res[n, c, lo:lo + w] (res holds the output's [N, C, pixels]); CLIP reads
    params[s]. Loops index row views from 0 so that they vectorize (an offset index of unknown sign
    would not). A bias, batch norm and activation (`leading_affine`) run in one pass per row instead
    (`affine_pass`; alone on a tile 1.7-2.4x faster; the zoo CNN's convolutions with bias, batch norm and
    ReLU, one thread: 3 -> 16 channels 41 -> 38.5 us, 32 -> 64 60 -> 56.5 us, 16 -> 32 level).
    """
    k = leading_affine(stages)
    if k > 0:
        closing = stages[k - 1]
        act = closing if closing == RELU or closing == CLIP else -1
        for r in range(t.shape[0]):
            m0, a0 = affine_stage(stages, 0, k, vecs, c0 + r)
            m1, a1 = affine_stage(stages, 1, k, vecs, c0 + r)
            m2, a2 = affine_stage(stages, 2, k, vecs, c0 + r)
            affine_pass(t[r, j0:j0 + w], w, m0, a0, m1, a1, m2, a2, act, params[k - 1, 0], params[k - 1, 1])
        return
    vi = 0
    for s in range(stages.shape[0]):
        code = stages[s]
        lo_v, hi_v = params[s, 0], params[s, 1]
        for r in range(t.shape[0]):
            row = t[r, j0:j0 + w]
            if code == ADD:
                v = vecs[vi, c0 + r]
                for j in range(w):
                    row[j] += v
            elif code == MUL:
                v = vecs[vi, c0 + r]
                for j in range(w):
                    row[j] *= v
            elif code == DIV:
                v = vecs[vi, c0 + r]
                for j in range(w):
                    row[j] /= v
            elif code == RESIDUAL:
                rr = res[n, c0 + r, lo:lo + w]
                for j in range(w):
                    row[j] += rr[j]
            else:
                apply_stage(row, w, code, lo_v, hi_v, row)
        if is_vector_stage(code):
            vi += 1
