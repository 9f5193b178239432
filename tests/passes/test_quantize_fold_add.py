"""quantize-fold rule 4: quantize(add(dequantize, dequantize)) becomes qadd, exactly; what stays is reported."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.ir import Graph, GraphBuilder, f32
from tensorsmith.passes import PassContext, run_pipeline

RNG = np.random.default_rng(8)


def _residual(shape_y: tuple[int, ...] = (4, 96), per_axis: bool = False, tap_sum: bool = False) -> Graph:
    """x, y quantized (u8 / s8), dequantized, added; the sum quantized and dequantized (a QDQ residual)."""
    b = GraphBuilder("residual")
    x, y = b.input("x", f32[4, 96]), b.input("y", f32[shape_y])
    xd = b.dequantize(b.quantize(x, 0.031, 121, dtype="u8"), name="x.dq")
    yd = b.dequantize(b.quantize(y, 0.0173, -7, dtype="i8"), name="y.dq")
    s = b.add(xd, yd, name="sum")
    q = (b.quantize(s, [0.05] * 96, [128] * 96, axis=1, dtype="u8", name="sum.q") if per_axis
         else b.quantize(s, 0.047, 130, dtype="u8", name="sum.q"))
    outs = [b.dequantize(q, name="out")]
    if tap_sum:
        outs.append(b.relu(s, name="tap"))
    b.output(*outs)
    return b.build()


def _feeds(g: Graph) -> dict[str, np.ndarray]:
    return {v.name: (RNG.standard_normal(v.type.shape) * 2).astype(np.float32) for v in g.inputs}


def test_residual_add_folds_into_qadd_exactly() -> None:
    g = _residual()
    ctx = PassContext()
    f = run_pipeline(g, "quantize-fold", ctx=ctx)
    ops = [n.op for n in f.nodes]
    assert ops.count("qadd") == 1 and "add" not in ops and ops.count("dequantize") == 1  # only the output's
    assert "folded 1 add(s) of dequantized tensors into qadd: sum" in ctx.report(details=True)
    feeds = _feeds(g)
    want = reference.run(g, feeds)["out"]
    assert_array_equal(reference.run(f, feeds)["out"], want)
    assert_array_equal(runtime.compile(f, backend="numba").run(feeds)["out"], want)


@pytest.mark.parametrize("case,reason", [
    ({"shape_y": (1, 96)}, "its operands have different shapes (qadd does not broadcast)"),
    ({"per_axis": True}, "quantized per axis (qadd takes one scale per tensor)"),
    ({"tap_sum": True}, "its f32 result has readers besides quantize %sum.q"),
])
def test_adds_that_stay_are_reported(case: dict[str, object], reason: str) -> None:
    ctx = PassContext()
    f = run_pipeline(_residual(**case), "quantize-fold", ctx=ctx)  # type: ignore[arg-type]
    assert "qadd" not in [n.op for n in f.nodes]
    assert reason in ctx.report(details=True)
