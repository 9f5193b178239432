"""Register-blocked u8 x s8 -> i32 GEMM micro-kernels in LLVM IR, one per int8 path.

A micro-kernel computes an MR x NR block of i32 accumulators, held in vector registers, from
MR rows of row-major u8 activations and one packed s8 weight panel. Weights are packed in groups
of K_GROUP = 4 consecutive k per output column: panel [K/4][NR][4], so one 32-bit lane of a
weight vector holds the 4 weights of one column that meet the 4 bytes a[m, 4g:4g+4], which are
broadcast to every lane. Per group and lane the kernel adds sum_j a[m, 4g+j] * w[4g+j, n]:

- avx512vnni, avxvnni: one vpdpbusd (exact for all u8 x s8 values; on zmm, or on ymm with the VEX
  encoding of AVX-VNNI, which AVX2-only CPUs such as Intel's Alder Lake and Sierra Forest have);
- avx512bw, avx2: vpmaddubsw (adds the two products of each byte pair into an i16, saturating),
  then vpmaddwd against ones (adds the two i16 into the i32 lane), then an i32 add. The i16 sum
  of two products is exact only while it fits: with activations in [0, 255] this needs weights
  in [-64, 63] (2 * 255 * 64 = 32640 <= 32767), the AVX2 weight range `WEIGHT_RANGE` below.

The kernels exist as intrinsics for the full MR rows and for one row (ragged bottoms, M = 1).
Editing this file does not invalidate Numba's on-disk cache of the drivers that inline these
kernels (their own file, `int8_gemm.py`, is what is checked); delete backends/numba/__pycache__.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llvmlite import ir
from numba import types
from numba.core.errors import TypingError
from numba.extending import intrinsic

from .llvm_intrinsics import declare, splat
from .llvm_loops import carried_loop

K_GROUP = 4
"""Consecutive k values one 32-bit lane of a packed weight vector holds; K is padded to a multiple."""
FULL_S8 = (-128, 127)
MADDUBS_S8 = (-64, 63)


@dataclass(frozen=True)
class UkernelShape:
    """Register blocking of one path: MR rows x NRV vectors of VW i32 lanes (NR = NRV * VW columns)."""

    vw: int
    mr: int
    nrv: int
    dot: str
    weight_range: tuple[int, int]
    tile_rows: int = 0
    """Rows computed together on tiles (AMX: 32), or 0 when the vector micro-kernel does every row."""
    epilogue_panels: int = 1
    """Panels whose accumulators the drivers collect before one dequantization pass over them (`int8_drivers`)."""

    @property
    def nr(self) -> int:
        """Columns of one packed weight panel."""
        return self.vw * self.nrv

    @property
    def block_rows(self) -> int:
        """The row multiple a work item should have: the tile rows, else MR."""
        return self.tile_rows or self.mr


SHAPES: dict[str, UkernelShape] = {
    "amx": UkernelShape(vw=16, mr=6, nrv=2, dot="vpdpbusd", weight_range=FULL_S8, tile_rows=32,
                       epilogue_panels=8),
    "avx512vnni": UkernelShape(vw=16, mr=6, nrv=4, dot="vpdpbusd", weight_range=FULL_S8),
    "avxvnni": UkernelShape(vw=8, mr=6, nrv=2, dot="vpdpbusd", weight_range=FULL_S8),
    "avx512bw": UkernelShape(vw=16, mr=4, nrv=4, dot="pmaddubsw", weight_range=MADDUBS_S8),
    "avx2": UkernelShape(vw=8, mr=4, nrv=2, dot="pmaddubsw", weight_range=MADDUBS_S8),
}
"""Micro-kernel shape per path: 24 zmm accumulators with vpdpbusd on zmm, 12 of the 16 ymm on ymm; 16 zmm /
8 ymm where each product needs two temporaries (vpmaddubsw, vpmaddwd) besides the accumulators. The amx path's
vector micro-kernel (vpdpbusd on 32-column panels) computes only what its tiles leave: the K beyond
the last whole 64 and the rows below a 16-row tile (`int8_amx.py`). The amx path collects 8 panels' tiles
(256 columns) before each dequantization: vector work between tile blocks costs several times what it costs alone,
and less in fewer, longer passes (docs/numba-backend.md, "AMX")."""

WEIGHT_RANGE = {path: s.weight_range for path, s in SHAPES.items()}
"""Inclusive s8 weight range each path computes exactly (activations: the full u8 range)."""

_I8, _I16, _I32, _I64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)


def _dot_step(builder: ir.IRBuilder, shape: UkernelShape, acc: ir.Value, a: ir.Value, b: ir.Value) -> ir.Value:
    """acc + (per i32 lane) the sum of the 4 u8 x s8 products of byte vectors a and b."""
    vw = shape.vw
    vi32, vi8 = ir.VectorType(_I32, vw), ir.VectorType(_I8, 4 * vw)
    vi16 = ir.VectorType(_I16, 2 * vw)
    mod = builder.module
    if shape.dot == "vpdpbusd":  # the 256-bit intrinsic selects the VEX (AVX-VNNI) form where AVX-512 VL is absent
        fn = declare(mod, f"llvm.x86.avx512.vpdpbusd.{32 * vw}", vi32, [vi32, vi8, vi8])
        return builder.call(fn, [acc, a, b])
    if vw == 16:
        mub = declare(mod, "llvm.x86.avx512.pmaddubs.w.512", vi16, [vi8, vi8])
        mwd = declare(mod, "llvm.x86.avx512.pmaddw.d.512", vi32, [vi16, vi16])
    else:
        mub = declare(mod, "llvm.x86.avx2.pmadd.ub.sw", vi16, [vi8, vi8])
        mwd = declare(mod, "llvm.x86.avx2.pmadd.wd", vi32, [vi16, vi16])
    pairs = builder.call(mub, [a, b])
    quads = builder.call(mwd, [pairs, ir.Constant(vi16, [1] * (2 * vw))])
    return builder.add(acc, quads)


def _check_c_array(arr: Any, what: str, dtype: Any) -> None:
    """A TypingError unless `arr` is a C-contiguous array of `dtype`."""
    if not isinstance(arr, types.Array) or arr.layout != "C" or arr.dtype != dtype:
        raise TypingError(f"int8 micro-kernel: {what} must be a C-contiguous {dtype} array, got {arr}")


def make_ukernel(path: str, rows: int) -> Any:
    """The micro-kernel intrinsic of `path` for `rows` (1 or MR) activation rows.

    uk(kg, a, a_off, lda, b, b_off, c, c_off, ldc, accumulate): for i < rows and n < NR,
    c[c_off + i*ldc + n] (+)= sum over g < kg, j < 4 of a[a_off + i*lda + 4g + j] * b[b_off + (g*NR + n)*4 + j],
    with offsets in elements of the flat C-contiguous arrays a (u8), b (s8) and c (i32).
    """
    return ukernel_intrinsic(SHAPES[path], rows, False, f"i8uk_{path}_{rows}x{SHAPES[path].nr}")


def make_gather_ukernel(shape: UkernelShape, rows: int, name: str) -> Any:
    """A micro-kernel of `shape` for `rows` rows that reads its K groups through an index list (block-sparse).

    uk(kg, gidx, g_off, a, a_off, lda, b, b_off, c, c_off, ldc, accumulate): as `make_ukernel`'s, but packed
    group g (< kg) of b meets the activation bytes a[a_off + i*lda + 4*gidx[g_off + g] + j].
    """
    return ukernel_intrinsic(shape, rows, True, name)


def ukernel_intrinsic(shape: UkernelShape, rows: int, gathered: bool, name: str) -> Any:
    """The LLVM-IR micro-kernel of `shape` for `rows` rows: dense K groups, or `gathered` through an index list."""
    vw, nrv, nr = shape.vw, shape.nrv, shape.nr
    first = 3 if gathered else 1  # position of the activations: the index list and its offset come first

    def check(args: tuple[Any, ...]) -> Any:
        if gathered:
            _check_c_array(args[1], "group indices", types.int32)
        _check_c_array(args[first], "activations", types.uint8)
        _check_c_array(args[first + 3], "packed weights", types.int8)
        _check_c_array(args[first + 5], "accumulators", types.int32)
        return types.void(*args), codegen

    def typer(typingctx, kg, a, a_off, lda, b, b_off, c, c_off, ldc, accumulate):  # type: ignore[no-untyped-def]
        """Type an int8 micro-kernel call."""
        return check((kg, a, a_off, lda, b, b_off, c, c_off, ldc, accumulate))

    def gather_typer(typingctx, kg, gidx, g_off, a, a_off, lda, b, b_off, c, c_off, ldc,  # type: ignore[no-untyped-def]
                     accumulate):
        """Type a gathering int8 micro-kernel call."""
        return check((kg, gidx, g_off, a, a_off, lda, b, b_off, c, c_off, ldc, accumulate))

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        st = signature.args

        def as_intp(idx: int) -> ir.Value:
            return context.cast(builder, args[idx], st[idx], types.intp)

        def base(idx: int, off_idx: int) -> ir.Value:
            arr = context.make_array(st[idx])(context, builder, args[idx])
            return builder.gep(arr.data, [as_intp(off_idx)])

        vi32, vi8 = ir.VectorType(_I32, vw), ir.VectorType(_I8, 4 * vw)
        pa, pb, pc = base(first, first + 1), base(first + 3, first + 4), base(first + 5, first + 6)
        pg = base(1, 2) if gathered else None
        kg, lda, ldc = as_intp(0), as_intp(first + 2), as_intp(first + 7)
        zero = ir.Constant(vi32, [0] * vw)

        def k_group(g: ir.Value, accs: list[ir.Value]) -> list[ir.Value]:
            """One group of 4 k: each A row's 4 bytes against the B row's vectors, added to the accumulators."""
            bptr = builder.gep(pb, [builder.mul(g, ir.Constant(_I64, nr * 4))])
            bvec = [builder.load(builder.bitcast(builder.gep(bptr, [ir.Constant(_I64, j * vw * 4)]),
                                                 vi8.as_pointer()), align=1) for j in range(nrv)]
            col = builder.sext(builder.load(builder.gep(pg, [g])), _I64) if pg is not None else g
            aoff = builder.mul(col, ir.Constant(_I64, 4))
            new = []
            for i in range(rows):
                ap = builder.gep(pa, [builder.add(builder.mul(lda, ir.Constant(_I64, i)), aoff)])
                word = builder.load(builder.bitcast(ap, _I32.as_pointer()), align=1)
                av = builder.bitcast(splat(builder, word, vw), vi8)
                for j in range(nrv):
                    new.append(_dot_step(builder, shape, accs[i * nrv + j], av, bvec[j]))
            return new

        fins = carried_loop(builder, ir.Constant(_I64, 0), kg, 1, [zero] * (rows * nrv), k_group, "i8uk")
        acc_flag = context.cast(builder, args[first + 8], st[first + 8], types.boolean)
        for i in range(rows):
            row = builder.gep(pc, [builder.mul(ldc, ir.Constant(_I64, i))])
            for j in range(nrv):
                ptr = builder.bitcast(builder.gep(row, [ir.Constant(_I64, j * vw)]), vi32.as_pointer())
                old = builder.load(ptr, align=4)
                builder.store(builder.select(acc_flag, builder.add(fins[i * nrv + j], old), fins[i * nrv + j]), ptr,
                              align=4)
        return context.get_dummy_value()

    chosen = gather_typer if gathered else typer
    chosen.__name__ = chosen.__qualname__ = name
    return intrinsic(chosen)


ROW_COUNTS = (4, 2, 1)
"""Row counts of the micro-kernels for the rows below a full MR (a remainder, or M < MR): each call reads
its weight panel once for all its rows, so M = 4 costs one pass over the weights, not four."""

UKERNELS: dict[str, dict[int, Any]] = {
    p: {rows: make_ukernel(p, rows) for rows in sorted({s.mr, *ROW_COUNTS}, reverse=True)} for p, s in SHAPES.items()}
"""Per path: the micro-kernel of each row count (MR and ROW_COUNTS)."""
