"""float64 on the Numba backend: every op family against the reference backend, casts, fused regions, passes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_array_equal, assert_array_max_ulp
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.backends.numba.reference_steps import F64_KERNEL_OPS, runs_reference_rule
from tensorsmith.ir import Graph, GraphBuilder, Value, f64, parse, print_graph
from tensorsmith.passes import PassContext, run_pipeline
from tensorsmith.runtime.numba_exec import NumbaExecutable

from .numba_check import SERIAL

RNG = np.random.default_rng(64)
THIRD = 1.0 / 3.0 + 1e-12
"""An f64 value f32 cannot hold: a result computed in f32 and widened differs from the reference."""


def _run_both(g: Graph, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    return reference.run(g, feeds), NumbaExecutable(g, parallel_threshold=SERIAL).run(feeds)


def _graph(build: Any, shape: tuple[int, ...] = (2, 3, 4, 4)) -> tuple[Graph, dict[str, np.ndarray]]:
    b = GraphBuilder("f64")
    x = b.input("x", f64[shape])
    b.output(build(b, x))
    return b.build(), {"x": RNG.standard_normal(shape) + THIRD}


def _c(b: GraphBuilder, a: Any, name: str | None = None) -> Value:
    return b.const(np.asarray(a, np.float64), name, dtype=f64)


FAMILIES = {
    "add": lambda b, x: b.add(x, _c(b, THIRD)),
    "sub-broadcast": lambda b, x: b.sub(x, _c(b, RNG.standard_normal((3, 1, 1)))),
    "mul": lambda b, x: b.mul(x, x),
    "div": lambda b, x: b.div(x, _c(b, 3.0)),
    "pow": lambda b, x: b.pow(b.abs(x), _c(b, 1.5)),
    "maximum": lambda b, x: b.maximum(x, _c(b, THIRD)),
    "minimum": lambda b, x: b.minimum(x, _c(b, THIRD)),
    "relu": lambda b, x: b.relu(x),
    "neg-abs": lambda b, x: b.abs(b.neg(x)),
    "clip": lambda b, x: b.clip(x, min=-THIRD, max=THIRD),
    "sqrt": lambda b, x: b.sqrt(b.abs(x)),
    "exp": lambda b, x: b.exp(x),
    "tanh": lambda b, x: b.tanh(x),
    "gelu": lambda b, x: b.gelu(x),
    "sigmoid": lambda b, x: b.sigmoid(x),
    "softmax": lambda b, x: b.softmax(x, axis=-1),
    "layernorm": lambda b, x: b.layernorm(x, _c(b, RNG.standard_normal(4)), _c(b, RNG.standard_normal(4)), axis=-1),
    "batchnorm": lambda b, x: b.batchnorm(x, *(_c(b, RNG.uniform(0.5, 1.5, 3), f"p{i}") for i in range(4))),
    "reduce-sum": lambda b, x: b.op("reduce-sum", x, axes=[1, 3], keepdims=True),
    "reduce-max": lambda b, x: b.op("reduce-max", x, axes=[2], keepdims=False),
    "reduce-mean": lambda b, x: b.op("reduce-mean", x, axes=[-1], keepdims=True),
    "maxpool": lambda b, x: b.maxpool2d(x, [2, 2]),
    "avgpool": lambda b, x: b.avgpool2d(x, [3, 3], pads=[1, 1, 1, 1]),
    "global-avgpool": lambda b, x: b.op("global-avgpool", x),
    "conv2d": lambda b, x: b.conv2d(x, _c(b, RNG.standard_normal((5, 3, 3, 3))), _c(b, RNG.standard_normal(5))),
    "linear": lambda b, x: b.linear(x, _c(b, RNG.standard_normal((6, 4))), _c(b, RNG.standard_normal(6))),
    "matmul": lambda b, x: b.matmul(x, _c(b, RNG.standard_normal((4, 5)))),
    "transpose-slice-concat": lambda b, x: b.concat([b.transpose(x, [0, 1, 3, 2]),
                                                     b.slice(x, [0], [2], axes=[3])], axis=3),
    "reshape-gather": lambda b, x: b.gather(b.reshape(x, [6, 16]), np.array([4, 0, 2], np.int64), axis=0),
}


ULP_FAMILIES = {"div": 2, "pow": 2}
"""Families whose kernels may round differently from numpy: the binary kernels' fast-math `arcp` turns
division by a constant into a product with its reciprocal, and `**` is LLVM's pow, not numpy's (ulps)."""


@pytest.mark.parametrize("family", FAMILIES)
def test_f64_family_matches_reference(family: str) -> None:
    """Dtype-generic kernels compute in f64; the others run the reference rule: equal bit for bit
    (within ULP_FAMILIES' ulps where the kernel's arithmetic differs)."""
    g, feeds = _graph(FAMILIES[family])
    ref, got = _run_both(g, feeds)
    for k in ref:
        assert got[k].dtype == np.float64 and got[k].shape == ref[k].shape
        if family in ULP_FAMILIES:
            assert_array_max_ulp(got[k], ref[k], maxulp=ULP_FAMILIES[family])
        else:
            assert_array_equal(got[k], ref[k], err_msg=family)


@pytest.mark.parametrize("to", ["f32", "f16", "bf16", "i32", "i64", "u8", "bool"])
def test_casts_from_and_to_f64_match_reference(to: str) -> None:
    x = np.concatenate([RNG.uniform(0, 200, 61), [THIRD, 1 + 2**-11, 1 + 2**-11 + 2**-40]])
    b = GraphBuilder("cast")
    v = b.input("x", f64[x.shape])
    there = b.op("cast", v, dtype=to)
    b.output(there, b.op("cast", there, dtype="f64"))
    g = b.build()
    ref, got = _run_both(g, {"x": x})
    for k in ref:
        assert got[k].dtype == ref[k].dtype
        assert_array_equal(got[k].astype(np.float64), ref[k].astype(np.float64), err_msg=to)


def test_the_reference_rule_runs_only_for_ops_without_an_f64_kernel() -> None:
    g, _ = _graph(lambda b, x: b.softmax(b.add(b.exp(x), _c(b, THIRD)), axis=-1))
    chosen = {n.op: runs_reference_rule(n) for n in g.nodes}
    assert chosen == {"exp": True, "add": False, "softmax": True}
    assert "add" in F64_KERNEL_OPS
    kernels = [s.kernel for s in NumbaExecutable(g, parallel_threshold=SERIAL).plan.steps if not s.is_view]
    assert kernels == ["reference_exp", "binary_add", "reference_softmax"]


def _model() -> tuple[Graph, dict[str, np.ndarray]]:
    b = GraphBuilder("f64_model")
    x = b.input("x", f64[4, 16])
    h = b.linear(x, _c(b, RNG.standard_normal((32, 16)), "w1"), _c(b, RNG.standard_normal(32), "b1"))
    h = b.relu(b.add(b.mul(h, _c(b, 0.5, "half")), _c(b, THIRD, "third")))
    h = b.linear(h, _c(b, RNG.standard_normal((8, 32)), "w2"), _c(b, RNG.standard_normal(8), "b2"))
    b.output(b.softmax(h, axis=-1, name="y"))
    return b.build(), {"x": RNG.standard_normal((4, 16))}


def test_compiled_f64_model_with_fused_regions_matches_reference() -> None:
    g, feeds = _model()
    ref = reference.run(g, feeds)
    exe = runtime.compile(g, "numba")
    got = exe.run(feeds)
    assert_array_equal(got["y"], ref["y"])


def test_text_form_round_trips_f64_constants_exactly() -> None:
    g, feeds = _model()
    g2 = parse(print_graph(g))
    assert_array_equal(reference.run(g2, feeds)["y"], reference.run(g, feeds)["y"])


def test_quantize_skips_f64_layers_with_a_reason() -> None:
    g, feeds = _model()
    ctx = PassContext()
    g2 = run_pipeline(g, "quantize{precision=int8}", ctx=ctx)
    assert "not f32" in ctx.report(details=True)
    assert_array_equal(reference.run(g2, feeds)["y"], reference.run(g, feeds)["y"])


def test_prune_keeps_f64_weights_f64_and_both_backends_agree() -> None:
    g, feeds = _model()
    g2 = run_pipeline(g, "prune{sparsity=0.5}")
    weights = [n.inputs[1] for n in g2.nodes if n.op == "linear"]
    assert all(w.type.dtype.name == "f64" and w.data.dtype == np.float64 for w in weights)
    assert min((w.data == 0).mean() for w in weights) >= 0.5
    ref, got = _run_both(g2, feeds)
    assert_array_equal(got["y"], ref["y"])
