"""LLVM-IR micro-kernels for sparse fp32 GEMMs: a K-gathering panel kernel (BSR) and an N:M row kernel.

Both keep a register tile of C in vector accumulators and run vector FMAs, like `k_microkernel`, but
read their operands through index lists:

- `bsr_ukernel` computes C[rows, NP] = sum over packed weight rows t of A[kidx[t]] (a column of
  an A panel, MRP values) times B row t (NP values): the nonzero blocks of one panel of NP output
  channels, their K indices listed once per weight row, accumulated in registers over all blocks.
- `nm_ukernel` computes a C^T tile [R, MV] (R output channels by MV input rows) where channel r
  adds vals[j, r] * A[idx[j, r]] (an MV-wide vector of a packed x^T panel) over its kept K indices.

The instruction set is a parameter (`Isa`), not only the host's: every path the host can execute
can be run and tested. Each kernel generates one loop per (configuration, rows) case and switches
on them at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .llvm_intrinsics import float_vector_fn, splat
from .llvm_loops import carried_loop

_FEATURES = llvm.get_host_cpu_features()


class Isa(IntEnum):
    """Vector instruction set of a sparse kernel path."""

    AVX2 = 0
    AVX512 = 1


HOST_ISAS: tuple[Isa, ...] = tuple(
    isa for isa, ok in ((Isa.AVX512, bool(_FEATURES.get("avx512f"))), (Isa.AVX2, bool(_FEATURES.get("avx2"))))
    if ok and _FEATURES.get("fma"))
"""Paths this host can execute, best first (empty without FMA)."""
HOST_ISA: Isa | None = HOST_ISAS[0] if HOST_ISAS else None
"""The path kernels use unless one is forced."""


@dataclass(frozen=True)
class PanelConfig:
    """A BSR register tile: A panels of `mr` rows, B panels of `nvec` vectors of `vw` floats."""

    code: int
    isa: Isa
    vw: int
    mr: int
    nvec: int

    @property
    def np_(self) -> int:
        """Panel width: output channels per B panel."""
        return self.vw * self.nvec

    @property
    def row_cases(self) -> tuple[int, ...]:
        """Row counts with a generated loop (a ragged last A panel runs the smallest that covers it)."""
        return tuple(sorted({self.mr, self.mr // 2, max(1, self.mr // 4), 1}))


PANEL_CONFIGS: tuple[PanelConfig, ...] = (
    PanelConfig(0, Isa.AVX512, 16, 12, 2),  # 24 zmm accumulators, 32 channels
    PanelConfig(1, Isa.AVX512, 16, 24, 1),  # 24 zmm accumulators, 16 channels
    PanelConfig(2, Isa.AVX2, 8, 6, 2),      # 12 ymm accumulators, 16 channels
    PanelConfig(3, Isa.AVX2, 8, 12, 1),     # 12 ymm accumulators, 8 channels
)
"""BSR register tiles by code; per ISA the wide one first."""


@dataclass(frozen=True)
class NMConfig:
    """An N:M register tile: `r` output channels by `nvec` vectors of `vw` input rows."""

    code: int
    isa: Isa
    vw: int
    r: int
    nvec: int

    @property
    def mv(self) -> int:
        """Input rows per x^T panel."""
        return self.vw * self.nvec


NM_CONFIGS: tuple[NMConfig, ...] = (
    NMConfig(0, Isa.AVX512, 16, 12, 2),  # 24 zmm accumulators
    NMConfig(1, Isa.AVX2, 8, 6, 2),      # 12 ymm accumulators
)
"""N:M register tiles by code, one per ISA."""


def _zeros(vw: int) -> ir.Constant:
    """A vector of vw float zeros."""
    return ir.Constant(ir.VectorType(ir.FloatType(), vw), [0.0] * vw)


def _vload(builder: ir.IRBuilder, ptr: ir.Value, off: int, vw: int) -> ir.Value:
    vt = ir.VectorType(ir.FloatType(), vw)
    return builder.load(builder.bitcast(builder.gep(ptr, [ir.Constant(ir.IntType(64), off)]), vt.as_pointer()),
                        align=4)


def _vstore(builder: ir.IRBuilder, val: ir.Value, ptr: ir.Value, off: ir.Value, vw: int) -> None:
    vt = ir.VectorType(ir.FloatType(), vw)
    builder.store(val, builder.bitcast(builder.gep(ptr, [off]), vt.as_pointer()), align=4)


def _data(context, builder, ty, val, off_ty=None, off=None):  # type: ignore[no-untyped-def]
    """Pointer to an array's data, advanced by `off` elements when given."""
    ptr = context.make_array(ty)(context, builder, val).data
    return ptr if off is None else builder.gep(ptr, [context.cast(builder, off, off_ty, types.intp)])


def _switch_cases(builder: ir.IRBuilder, key: ir.Value, cases: dict[int, object], emit) -> None:  # type: ignore[no-untyped-def]
    """Switch on `key` over `cases` (key -> case data); `emit(data)` builds each case; unknown keys do nothing."""
    end = builder.append_basic_block("sw_end")
    sw = builder.switch(key, end)
    for k, data in cases.items():
        blk = builder.append_basic_block(f"case_{k}")
        sw.add_case(ir.Constant(key.type, k), blk)
        builder.position_at_end(blk)
        emit(data)
        builder.branch(end)
    builder.position_at_end(end)


@intrinsic
def bsr_ukernel(typingctx, cfg, rows, kidx, t0, t1, a, a_off, b, c, c_off, ldc):  # type: ignore[no-untyped-def]
    """C[rows, NP] (row stride ldc, at c_off) = sum_{t0 <= t < t1} A[kidx[t]] (x) B[t] for tile config `cfg`.

    A is a packed panel [K][MR] starting at a_off; B is the panel store [T, NP] (row t at t * NP);
    `rows` must be one of the config's `row_cases` (other values leave C untouched).
    """
    sig = types.void(cfg, rows, kidx, t0, t1, a, a_off, b, c, c_off, ldc)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        st = signature.args
        i64 = ir.IntType(64)

        def cast(i: int) -> ir.Value:
            return context.cast(builder, args[i], st[i], types.intp)

        pk = _data(context, builder, st[2], args[2])
        pa = _data(context, builder, st[5], args[5], st[6], args[6])
        pb = _data(context, builder, st[7], args[7])
        pc = _data(context, builder, st[8], args[8], st[9], args[9])
        lo, hi, ldc_v = cast(3), cast(4), cast(10)
        key = builder.add(builder.mul(cast(0), ir.Constant(i64, 256)), cast(1))
        cases = {c.code * 256 + r: (c, r) for c in PANEL_CONFIGS for r in c.row_cases}

        def emit(data):  # type: ignore[no-untyped-def]
            conf, nrows = data
            vw, nv, np_ = conf.vw, conf.nvec, conf.np_
            fma = float_vector_fn(builder.module, "fma", vw, 3)

            def body(t, accs):  # type: ignore[no-untyped-def]
                kk = builder.sext(builder.load(builder.gep(pk, [t]), align=4), i64)
                aptr = builder.gep(pa, [builder.mul(kk, ir.Constant(i64, conf.mr))])
                bptr = builder.gep(pb, [builder.mul(t, ir.Constant(i64, np_))])
                bv = [_vload(builder, bptr, j * vw, vw) for j in range(nv)]
                new = []
                for i in range(nrows):
                    s = splat(builder, builder.load(builder.gep(aptr, [ir.Constant(i64, i)]), align=4), vw)
                    new += [builder.call(fma, [s, bv[j], accs[i * nv + j]]) for j in range(nv)]
                return new

            fins = carried_loop(builder, lo, hi, 1, [_zeros(vw)] * (nrows * nv), body, "bsr")
            for i in range(nrows):
                row = builder.mul(ldc_v, ir.Constant(i64, i))
                for j in range(nv):
                    _vstore(builder, fins[i * nv + j], pc, builder.add(row, ir.Constant(i64, j * vw)), vw)

        _switch_cases(builder, key, cases, emit)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def nm_ukernel(typingctx, cfg, kc, idx, vals, g_off, a, a_off, ct):  # type: ignore[no-untyped-def]
    """ct[R, MV] = per channel r: sum_{j < kc} vals[g_off + j*R + r] * A[idx[g_off + j*R + r]] for config `cfg`.

    A is a packed x^T panel [K][MV] starting at a_off (MV input rows per K index); idx holds K
    indices (int32). ct (row stride MV, from its start) receives the tile of C^T.
    """
    sig = types.void(cfg, kc, idx, vals, g_off, a, a_off, ct)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        st = signature.args
        i64 = ir.IntType(64)
        pi = _data(context, builder, st[2], args[2], st[4], args[4])
        pv = _data(context, builder, st[3], args[3], st[4], args[4])
        pa = _data(context, builder, st[5], args[5], st[6], args[6])
        pc = _data(context, builder, st[7], args[7])
        kcv = context.cast(builder, args[1], st[1], types.intp)
        key = context.cast(builder, args[0], st[0], types.intp)

        def emit(conf):  # type: ignore[no-untyped-def]
            vw, nv, r_all, mv = conf.vw, conf.nvec, conf.r, conf.mv
            fma = float_vector_fn(builder.module, "fma", vw, 3)

            def body(j, accs):  # type: ignore[no-untyped-def]
                base = builder.mul(j, ir.Constant(i64, r_all))
                new = []
                for r in range(r_all):
                    at = builder.add(base, ir.Constant(i64, r))
                    kk = builder.sext(builder.load(builder.gep(pi, [at]), align=4), i64)
                    s = splat(builder, builder.load(builder.gep(pv, [at]), align=4), vw)
                    aptr = builder.gep(pa, [builder.mul(kk, ir.Constant(i64, mv))])
                    new += [builder.call(fma, [s, _vload(builder, aptr, q * vw, vw), accs[r * nv + q]])
                            for q in range(nv)]
                return new

            fins = carried_loop(builder, ir.Constant(i64, 0), kcv, 1, [_zeros(vw)] * (r_all * nv), body, "nm")
            for r in range(r_all):
                for q in range(nv):
                    _vstore(builder, fins[r * nv + q], pc, ir.Constant(i64, r * mv + q * vw), vw)

        _switch_cases(builder, key, {c.code: c for c in NM_CONFIGS}, emit)
        return context.get_dummy_value()

    return sig, codegen


def panel_configs(isa: Isa) -> tuple[PanelConfig, ...]:
    """The BSR tiles of `isa`, widest panel first."""
    return tuple(c for c in PANEL_CONFIGS if c.isa == isa)


def nm_config(isa: Isa) -> NMConfig:
    """The N:M tile of `isa`."""
    return next(c for c in NM_CONFIGS if c.isa == isa)


def resolve_isa(isa: Isa | str | None) -> Isa:
    """`isa` as an Isa (None: the host's best); an error when this host cannot execute it."""
    if isa is None:
        if HOST_ISA is None:
            raise RuntimeError("sparse GEMM kernels need AVX2 + FMA; this host has neither")
        return HOST_ISA
    chosen = Isa[isa.upper()] if isinstance(isa, str) else Isa(isa)
    if chosen not in HOST_ISAS:
        raise RuntimeError(f"sparse GEMM path {chosen.name} cannot run on this host (it runs "
                           f"{', '.join(i.name for i in HOST_ISAS) or 'none'})")
    return chosen
