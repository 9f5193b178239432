"""Counted loops for kernels written in LLVM IR: the index and the loop-carried values as phis."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from llvmlite import ir

I64 = ir.IntType(64)

LoopBody = Callable[[ir.Value, list[ir.Value]], Sequence[ir.Value]]
"""body(index, carried values) emits one iteration (it may add blocks) and returns the next carried values."""


def carried_loop(builder: ir.IRBuilder, start: ir.Value, stop: ir.Value, step: int | ir.Value,
                 inits: Sequence[ir.Value], body: LoopBody, name: str) -> list[ir.Value]:
    """Emit `for i in range(start, stop, step)` (i64, step > 0) carrying values that start as `inits`.

    Returns the carried values after the loop (`inits` when it runs no iteration); the builder is left
    after the loop. The blocks are named `<name>_loop` and `<name>_done`.
    """
    step_v = ir.Constant(I64, step) if isinstance(step, int) else step
    pre = builder.block
    loop, done = builder.append_basic_block(f"{name}_loop"), builder.append_basic_block(f"{name}_done")
    builder.cbranch(builder.icmp_signed("<", start, stop), loop, done)
    builder.position_at_end(loop)
    index = builder.phi(I64)
    index.add_incoming(start, pre)
    carried = []
    for init in inits:
        phi = builder.phi(init.type)
        phi.add_incoming(init, pre)
        carried.append(phi)
    new = list(body(index, carried))
    if len(new) != len(carried):
        raise ValueError(f"{name}: the loop body returned {len(new)} values for {len(carried)} carried ones")
    nxt = builder.add(index, step_v)
    last = builder.block
    index.add_incoming(nxt, last)
    for phi, value in zip(carried, new):
        phi.add_incoming(value, last)
    builder.cbranch(builder.icmp_signed("<", nxt, stop), loop, done)
    builder.position_at_end(done)
    finals = []
    for init, value in zip(inits, new):  # every phi first: LLVM wants them at the top of the block
        phi = builder.phi(init.type)
        phi.add_incoming(init, pre)
        phi.add_incoming(value, last)
        finals.append(phi)
    return finals


def counted_loop(builder: ir.IRBuilder, start: ir.Value, stop: ir.Value, step: int | ir.Value,
                 body: Callable[[ir.Value], None], name: str) -> None:
    """Emit `for i in range(start, stop, step)` (i64, step > 0) running `body(i)`; the builder is left after it."""

    def step_body(index: ir.Value, carried: list[ir.Value]) -> list[ir.Value]:
        body(index)
        return []

    carried_loop(builder, start, stop, step, [], step_body, name)
