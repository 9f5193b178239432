"""AMX int8 tile kernels (tdpbusd on 16 x 64-byte tiles) in LLVM IR, and the tile-state permission.

The AMX path computes a panel of NR = 32 output columns in blocks of 32 (or 16) rows: C is a 2 x 2
(or 1 x 2) grid of 16 x 16 i32 tiles held in tile registers over the whole K loop. Per 64 k:

- A tiles (tmm4, tmm5): 16 rows x 64 u8, loaded straight from the row-major activations (stride Kp);
- B tiles (tmm6, tmm7): 16 k-groups x 16 columns x 4 s8, read from the panel layout the other paths
  share, data[p, g, n, j] with NR = 32, as two 64-byte halves of each 128-byte k-group row;
- tdpbusd adds, per C element, the 64 u8 x s8 products into i32 (exact, no saturation).

K beyond the last whole 64 is left to the AVX-512 VNNI micro-kernel (`int8_ukernel.py`, shape
"amx": 2 zmm = 32 columns), as are row remainders below 16: every AMX host has AVX-512 VNNI.

All eight tiles are configured as 16 rows x 64 bytes (palette 1). `tiles_begin()` loads that
configuration and `tiles_end()` releases the tile state; the drivers call them once per work item,
on the thread that runs it. Linux hands a process the (8 KiB) tile state only after it asks, once,
with arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); without that the first tile instruction
kills the process with SIGILL, so `request_tile_state()` is called before an AMX kernel is offered.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

from .llvm_intrinsics import declare
from .llvm_loops import counted_loop
from .llvm_prefetch import prefetch

TILE_ROWS = 16
"""Rows of every tile (and A rows per A tile)."""
TILE_K = 64
"""k values one A tile row holds (16 k-groups of 4 in a B tile)."""
AMX_NR = 32
"""Output columns of one AMX panel: two 16-column C tiles."""

_SYS_ARCH_PRCTL = 158
_ARCH_GET_XCOMP_PERM = 0x1022
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18

_I8, _I64 = ir.IntType(8), ir.IntType(64)
_VOID = ir.VoidType()
_PTR = _I8.as_pointer()
_C_TILES, _A_TILES, _B_TILES = (0, 1, 2, 3), (4, 5), (6, 7)


@functools.cache
def request_tile_state() -> str | None:
    """Ask Linux once per process for the AMX tile state; None when granted, else why not."""
    if not sys.platform.startswith("linux"):
        return f"AMX tile state is requested through Linux arch_prctl; this is {sys.platform}"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA)
        err = ctypes.get_errno()
        mask = ctypes.c_uint64(0)
        libc.syscall(_SYS_ARCH_PRCTL, _ARCH_GET_XCOMP_PERM, ctypes.byref(mask))
    except (OSError, AttributeError) as exc:
        return f"arch_prctl(ARCH_REQ_XCOMP_PERM) could not be called: {exc}"
    if rc != 0 or not mask.value >> _XFEATURE_XTILEDATA & 1:
        return f"Linux refused the AMX tile state (arch_prctl(ARCH_REQ_XCOMP_PERM, 18) = {rc}, errno {err})"
    return None


def _x86(module: ir.Module, name: str, args: list[ir.Type]) -> ir.Function:
    """The void LLVM intrinsic `llvm.x86.<name>` of `module`, declared on first use."""
    return declare(module, f"llvm.x86.{name}", _VOID, args)


def _tile(t: int) -> ir.Constant:
    return ir.Constant(_I8, t)


def _config_bytes() -> list[int]:
    """The 64-byte palette-1 tile configuration: tiles 0-7 of 16 rows x 64 bytes."""
    cfg = [0] * 64
    cfg[0] = 1
    for t in range(8):
        cfg[16 + 2 * t] = TILE_K  # colsb, little-endian u16
        cfg[48 + t] = TILE_ROWS
    return cfg


@intrinsic
def tiles_begin(typingctx):  # type: ignore[no-untyped-def]
    """Load the tile configuration (every tile 16 x 64 bytes) on the calling thread."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        arr_t = ir.ArrayType(_I8, 64)
        slot = cgutils.alloca_once(builder, arr_t)
        builder.store(ir.Constant(arr_t, _config_bytes()), slot)
        builder.call(_x86(builder.module, "ldtilecfg", [_PTR]), [builder.bitcast(slot, _PTR)])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def tiles_end(typingctx):  # type: ignore[no-untyped-def]
    """Release the tile state of the calling thread."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        builder.call(_x86(builder.module, "tilerelease", []), [])
        return context.get_dummy_value()

    return types.void(), codegen


def _check_c_array(arr: Any, what: str, dtype: Any) -> None:
    if not isinstance(arr, types.Array) or arr.layout != "C" or arr.dtype != dtype:
        raise TypingError(f"AMX kernel: {what} must be a C-contiguous {dtype} array, got {arr}")


def make_tile_block(row_tiles: int, interleaved: bool = True, prefetch_a: bool = True) -> Any:
    """The intrinsic computing a (16 * row_tiles) x 32 i32 block over kt * 64 k on tiles.

    blk(kt, a, a_off, lda, b, b_off, c, c_off, ldc): c[c_off + i*ldc + n] = sum over k < 64 kt of
    a[a_off + i*lda + k] * w[k, n], for i < 16 row_tiles, n < 32, with w read from the packed panel
    at b[b_off:] (layout [Kp / 4][32][4]); offsets in elements of the flat C-contiguous a (u8),
    b (s8) and c (i32); kt = 0 stores zeros. Needs the tile configuration loaded (`tiles_begin`). `interleaved`
    issues each tile load just before the first product that reads it, else every load first.
    `prefetch_a` asks for the next 64 k of every A row while this 64 is multiplied: an A tile's 16 rows
    are 16 lines at stride lda that the hardware prefetchers do not fetch ahead (measured on one core,
    int8 in and i32 out, A/B in one process: 4-30% more GOP/s on 1024^3 and the BERT shapes).
    """
    c_tiles = _C_TILES[:2 * row_tiles]

    def typer(typingctx, kt, a, a_off, lda, b, b_off, c, c_off, ldc):  # type: ignore[no-untyped-def]
        """Type an AMX tile block call."""
        _check_c_array(a, "activations", types.uint8)
        _check_c_array(b, "packed weights", types.int8)
        _check_c_array(c, "accumulators", types.int32)
        return types.void(kt, a, a_off, lda, b, b_off, c, c_off, ldc), codegen

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        st = signature.args

        def as_i64(idx: int) -> ir.Value:
            return context.cast(builder, args[idx], st[idx], types.intp)

        def base(idx: int, off_idx: int) -> ir.Value:
            arr = context.make_array(st[idx])(context, builder, args[idx])
            return builder.gep(arr.data, [as_i64(off_idx)])

        mod = builder.module
        zero_fn = _x86(mod, "tilezero", [_I8])
        load_fn = _x86(mod, "tileloadd64", [_I8, _PTR, _I64])
        dot_fn = _x86(mod, "tdpbusd", [_I8, _I8, _I8])
        store_fn = _x86(mod, "tilestored64", [_I8, _PTR, _I64])
        pa, pb, pc = base(1, 2), base(4, 5), base(6, 7)
        kt, lda, ldc = as_i64(0), as_i64(3), as_i64(8)
        for t in c_tiles:
            builder.call(zero_fn, [_tile(t)])

        def k_step(k: ir.Value) -> None:
            """One 64 k: load the A and B tiles, multiply them into the C tiles."""
            a_k = builder.gep(pa, [builder.mul(k, ir.Constant(_I64, TILE_K))])
            b_k = builder.gep(pb, [builder.mul(k, ir.Constant(_I64, TILE_K * AMX_NR))])

            def load_a(i: int) -> None:
                rows = builder.gep(a_k, [builder.mul(lda, ir.Constant(_I64, TILE_ROWS * i))])
                builder.call(load_fn, [_tile(_A_TILES[i]), builder.bitcast(rows, _PTR), lda])

            def load_b(j: int) -> None:
                half = builder.gep(b_k, [ir.Constant(_I64, 64 * j)])
                builder.call(load_fn, [_tile(_B_TILES[j]), builder.bitcast(half, _PTR), ir.Constant(_I64, 4 * AMX_NR)])

            def dot(i: int, j: int) -> None:
                builder.call(dot_fn, [_tile(c_tiles[2 * i + j]), _tile(_A_TILES[i]), _tile(_B_TILES[j])])

            if prefetch_a:  # the next 64 k of each A row (past the last k: a prefetch never faults)
                a_next = builder.gep(a_k, [ir.Constant(_I64, TILE_K)])
                for r in range(TILE_ROWS * row_tiles):
                    prefetch(builder, builder.gep(a_next, [builder.mul(lda, ir.Constant(_I64, r))]))

            if interleaved:  # each load just before its first reader: the next loads overlap the products
                load_a(0)
                load_b(0)
                dot(0, 0)
                load_b(1)
                dot(0, 1)
                for i in range(1, row_tiles):
                    load_a(i)
                    dot(i, 0)
                    dot(i, 1)
            else:
                for i in range(row_tiles):
                    load_a(i)
                for j in range(2):
                    load_b(j)
                for i in range(row_tiles):
                    for j in range(2):
                        dot(i, j)

        counted_loop(builder, ir.Constant(_I64, 0), kt, 1, k_step, "amx")
        row_bytes = builder.mul(ldc, ir.Constant(_I64, 4))
        for i in range(row_tiles):
            for j in range(2):
                offset = builder.add(builder.mul(ldc, ir.Constant(_I64, TILE_ROWS * i)), ir.Constant(_I64, 16 * j))
                builder.call(store_fn, [_tile(c_tiles[2 * i + j]), builder.bitcast(builder.gep(pc, [offset]), _PTR),
                                        row_bytes])
        return context.get_dummy_value()

    typer.__name__ = typer.__qualname__ = (f"amx_block_{TILE_ROWS * row_tiles}x{AMX_NR}{'_il' if interleaved else ''}"
                                           f"{'_pfa' if prefetch_a else ''}")
    return intrinsic(typer)


TILE_BLOCK_32 = make_tile_block(2)
"""32 x 32 block: two A tiles, two B tiles, four C tiles."""
TILE_BLOCK_16 = make_tile_block(1)
"""16 x 32 block: one A tile, two B tiles, two C tiles."""
