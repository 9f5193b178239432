"""LLVM intrinsic declarations and vector idioms shared by the kernels written in LLVM IR."""

from __future__ import annotations

from llvmlite import ir


def declare(module: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    """The function `name` of `module` (an LLVM intrinsic such as `llvm.fma.v16f32`), declared on first use."""
    return module.globals.get(name) or ir.Function(module, ir.FunctionType(ret, args), name=name)


def float_vector_fn(module: ir.Module, name: str, width: int, arity: int) -> ir.Function:
    """The intrinsic `llvm.<name>.v<width>f32` on `arity` float vectors of `width` lanes (fma, maximum, rint, ...)."""
    vt = ir.VectorType(ir.FloatType(), width)
    return declare(module, f"llvm.{name}.v{width}f32", vt, [vt] * arity)


def splat(builder: ir.IRBuilder, scalar: ir.Value, width: int) -> ir.Value:
    """A vector of `width` copies of `scalar` (its type the lanes' type)."""
    vt = ir.VectorType(scalar.type, width)
    undef = ir.Constant(vt, ir.Undefined)
    one = builder.insert_element(undef, scalar, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(ir.IntType(32), width), [0] * width))
