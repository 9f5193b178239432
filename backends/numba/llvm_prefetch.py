"""A cache-line prefetch for kernels written in LLVM IR (`llvm.prefetch`)."""

from __future__ import annotations

from llvmlite import ir

from .llvm_intrinsics import declare

PREFETCH_INTRINSIC = "llvm.prefetch.p0i8"
LINE_FLOATS = 16
"""Floats of a 64-byte cache line: the step of a prefetch stream that asks for consecutive lines."""
L1, L2 = 3, 2
"""`llvm.prefetch` locality hints: into every level (prefetcht0) or from L2 outward (prefetcht1)."""


def prefetch(builder: ir.IRBuilder, ptr: ir.Value, locality: int = L1) -> None:
    """A read prefetch of the data line at `ptr` (never faults, whatever the address)."""
    i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
    fn = declare(builder.module, PREFETCH_INTRINSIC, ir.VoidType(), [i8p, i32, i32, i32])
    builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, locality), ir.Constant(i32, 1)])
