"""The LLVM-IR loop helpers: index range, carried values, empty ranges, and a body of several blocks."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from llvmlite import ir
from numba import types
from numba.extending import intrinsic
from tensorsmith.backends.numba.llvm_loops import I64, carried_loop, counted_loop


@intrinsic
def _sum_and_count(typingctx, start, stop, step):  # type: ignore[no-untyped-def]
    """(sum of range(start, stop, step) with odd indices counted twice, its length) through `carried_loop`."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        zero = ir.Constant(I64, 0)

        def body(i, carried):  # type: ignore[no-untyped-def]
            total, count = carried
            odd = builder.append_basic_block("odd")  # a body that adds blocks: odd indices count twice
            join = builder.append_basic_block("join")
            from_entry = builder.block
            builder.cbranch(builder.trunc(i, ir.IntType(1)), odd, join)
            builder.position_at_end(odd)
            builder.branch(join)
            builder.position_at_end(join)
            weight = builder.phi(I64)
            weight.add_incoming(ir.Constant(I64, 1), from_entry)
            weight.add_incoming(ir.Constant(I64, 2), odd)
            return [builder.add(total, builder.mul(i, weight)), builder.add(count, ir.Constant(I64, 1))]

        total, count = carried_loop(builder, args[0], args[1], args[2], [zero, zero], body, "sum")
        return context.make_tuple(builder, signature.return_type, [total, count])

    return types.UniTuple(types.int64, 2)(start, stop, step), codegen


@intrinsic
def _fill(typingctx, out, stop):  # type: ignore[no-untyped-def]
    """out[i] = i for i in range(stop) through `counted_loop`."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        counted_loop(builder, ir.Constant(I64, 0), args[1], 1, lambda i: builder.store(i, builder.gep(data, [i])),
                     "fill")
        return context.get_dummy_value()

    return types.void(out, stop), codegen


@numba.njit
def _run_sum(start, stop, step):  # type: ignore[no-untyped-def]
    return _sum_and_count(start, stop, step)


@pytest.mark.parametrize("start,stop,step", [(0, 10, 1), (3, 20, 3), (5, 5, 1), (7, 2, 2), (-4, 9, 4)])
def test_carried_loop_runs_the_range_with_its_values(start: int, stop: int, step: int) -> None:
    want = sum(i * (2 if i % 2 else 1) for i in range(start, stop, step)), len(range(start, stop, step))
    assert _run_sum(start, stop, step) == want


def test_counted_loop_writes_every_index_and_nothing_past_it() -> None:
    @numba.njit
    def fill(out, n):  # type: ignore[no-untyped-def]
        _fill(out, n)

    out = np.full(8, -1, np.int64)
    fill(out, 5)
    assert out.tolist() == [0, 1, 2, 3, 4, -1, -1, -1]
    fill(out, 0)
    assert out.tolist() == [0, 1, 2, 3, 4, -1, -1, -1]


def test_a_body_returning_the_wrong_number_of_values_is_refused() -> None:
    module = ir.Module()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [I64]), "f")
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    with pytest.raises(ValueError, match="bad: the loop body returned 0 values for 1 carried ones"):
        carried_loop(builder, ir.Constant(I64, 0), fn.args[0], 1, [ir.Constant(I64, 0)], lambda i, c: [], "bad")
