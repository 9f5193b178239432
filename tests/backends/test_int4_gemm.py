"""The weight-only GEMM (int4 / int8 weights, group scales) alone and through runtime.compile, against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.backends.numba import rules_weight_gemm
from tensorsmith.backends.numba.epilogue import Epilogue, Stage, StageKind
from tensorsmith.backends.numba.int4_gemm import MAX_ROWS, max_rows, pack_int4_weights, pack_int8_rows, weight_gemm
from tensorsmith.ir import Graph, GraphBuilder, f32
from tensorsmith.passes import run_pipeline

from .numba_check import PARALLEL, SERIAL

RNG = np.random.default_rng(7)
SHAPES = [(1, 64, 16, 32), (3, 100, 33, 32), (16, 77, 17, 0), (2, 9, 5, 0), (1, 40, 3, 128), (4, 130, 40, 64),
          (16, 256, 70, 128), (5, 96, 1, 16)]
"""(M, K, N, group size; 0 = per channel): K not a multiple of the group, odd K, N not a multiple of 16."""


def _problem(m: int, k: int, n: int, group: int, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, integer weights, scales, the dequantized f32 weights as the reference computes them)."""
    qmax = 7 if bits == 4 else 127
    q = RNG.integers(-qmax, qmax + 1, (n, k)).astype(np.int8)
    s = RNG.uniform(0.01, 1.0, (n, -(-k // group)) if group else n).astype(np.float32)
    full = np.repeat(s, group, axis=1)[:, :k] if group else s[:, None]
    return RNG.standard_normal((m, k)).astype(np.float32), q, s, q.astype(np.float32) * full


def _tol(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """f32 summation in another order: a few ulps of sum_k |x_k w_k| per output."""
    return 4 * (x.shape[1] + 2) * 2.0**-24 * (np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T) + 1e-6


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("m,k,n,group", SHAPES)
def test_kernel_matches_the_dequantized_product(m: int, k: int, n: int, group: int, bits: int, parallel: bool) -> None:
    x, q, s, w = _problem(m, k, n, group, bits)
    packed = (pack_int4_weights if bits == 4 else pack_int8_rows)(q, s, group)
    if bits == 4:
        assert packed.data.nbytes <= n * (k + 1) // 2 + n  # two weights per byte
    y = weight_gemm(x, packed, parallel)
    ref = x.astype(np.float64) @ w.astype(np.float64).T
    assert np.all(np.abs(y - ref) <= _tol(x, w))


def test_kernel_runs_the_epilogue_on_each_column_block() -> None:
    x, q, s, w = _problem(3, 100, 40, 32, 4)
    bias = RNG.standard_normal(40).astype(np.float32)
    epi = Epilogue(40, [Stage(StageKind.ADD, bias), Stage(StageKind.RELU)])
    y = weight_gemm(x, pack_int4_weights(q, s, 32), True, epi.codes(), epi.vectors(), epi.params())
    ref = np.maximum(x.astype(np.float64) @ w.astype(np.float64).T + bias, 0)
    assert np.all(np.abs(y - ref) <= _tol(x, w))


def test_packing_refuses_bad_weights_and_scales() -> None:
    with pytest.raises(ValueError, match=r"int4 weights must lie in \[-8, 7\]"):
        pack_int4_weights(np.int8([[8, 0]]), np.ones(1, np.float32))
    with pytest.raises(ValueError, match="even length"):
        pack_int4_weights(np.zeros((2, 9), np.int8), np.ones((2, 3), np.float32), 3)
    with pytest.raises(ValueError, match=r"need scales of shape \(2, 2\)"):
        pack_int4_weights(np.zeros((2, 64), np.int8), np.ones((2, 3), np.float32), 32)
    with pytest.raises(ValueError, match="2-D integer array"):
        pack_int8_rows(np.zeros((2, 4), np.float32), np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"x must be f32 \[M, 64\]"):
        weight_gemm(np.zeros((1, 63), np.float32), pack_int4_weights(np.zeros((2, 64), np.int8), np.ones(2)))


def _model(m: int, k: int, n: int, act: str, matmul: bool = False) -> Graph:
    b = GraphBuilder("layer")
    x = b.input("x", f32[m, k])
    if matmul:
        y = b.matmul(x, b.const(RNG.standard_normal((k, n)).astype(np.float32), "w"), name="fc")
        y = b.add(y, b.const(RNG.standard_normal(n).astype(np.float32), "b"))
    else:
        y = b.linear(x, b.const(RNG.standard_normal((n, k)).astype(np.float32), "w"),
                     b.const(RNG.standard_normal(n).astype(np.float32), "b"), name="fc")
    b.output(b.op(act, y, name="out"))
    return b.build()


@pytest.fixture(autouse=True)
def _every_weight_on_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """The small weights of these tests run on the weight-only GEMM (the real rule keeps cached ones f32)."""
    monkeypatch.setattr(rules_weight_gemm, "max_rows", lambda n, k: MAX_ROWS)


def _check(q: Graph, m: int, k: int, threshold: int) -> dict[str, dict[str, str]]:
    exe = runtime.compile(q, backend="numba", parallel_threshold=threshold)
    x = RNG.standard_normal((m, k)).astype(np.float32)
    got = exe.run({"x": x})["out"]
    want = reference.run(q, {"x": x})["out"]
    assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max() + 1))
    return exe.stats["kernels_by_layer"]


@pytest.mark.parametrize("m", [1, 3, MAX_ROWS])
@pytest.mark.parametrize("k,n,group,act", [(100, 33, 32, "relu"), (64, 20, 0, "gelu"), (130, 17, 64, "gelu"),
                                           (256, 48, 128, "relu")])
def test_quantized_linear_through_compile_matches_the_reference(m: int, k: int, n: int, group: int, act: str) -> None:
    opts = f"precision=int4,group_size={group}" if group else "precision=int4"
    q = run_pipeline(_model(m, k, n, act), f"quantize{{{opts}}}")
    kernels = _check(q, m, k, PARALLEL if m == 3 else SERIAL)
    label = kernels["fc"]["kernel"]
    assert label.startswith(f"gemm_w4{'g' + str(group) if group else 'c'}"), kernels
    assert "add" in label and act in label, "bias and activation run as the kernel's epilogue"


def test_int8_weight_only_and_a_grouped_matmul_use_the_kernel() -> None:
    q = run_pipeline(_model(2, 96, 24, "relu"), "quantize{precision=int8,group_size=32}")
    assert _check(q, 2, 96, SERIAL)["fc"]["kernel"].startswith("gemm_w8g32")
    q = run_pipeline(_model(2, 96, 24, "relu"), "quantize{precision=int8}")
    assert _check(q, 2, 96, SERIAL)["fc"]["kernel"].startswith("gemm_w8c")
    q = run_pipeline(_model(4, 96, 24, "relu", matmul=True), "quantize{precision=int4,group_size=32}")
    assert _check(q, 4, 96, PARALLEL)["fc"]["kernel"].startswith("gemm_w4g32")


def test_more_rows_dequantize_at_compile_time_and_say_so() -> None:
    m = MAX_ROWS + 1
    q = run_pipeline(_model(m, 64, 24, "relu"), "quantize{precision=int4,group_size=32}")
    rec = _check(q, m, 64, SERIAL)["fc"]
    assert not rec["kernel"].startswith("gemm_w4") and "dequantized to f32 at compile time" in rec["reason"]
    assert f"M = {m} > {MAX_ROWS}" in rec["reason"]
    assert rec["kernel"].startswith("gemm_uk"), "the weight dequantized at compile time is packed like a constant"


def test_the_rule_keeps_cached_weights_f32_and_sends_large_ones_to_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rules_weight_gemm, "max_rows", max_rows)
    assert (max_rows(512, 256), max_rows(1536, 384), max_rows(2048, 2048), max_rows(4096, 4096)) == (0, 4, 4, 12)
    q = run_pipeline(_model(1, 256, 64, "relu"), "quantize{precision=int4,group_size=32}")
    rec = _check(q, 1, 256, SERIAL)["fc"]
    assert not rec["kernel"].startswith("gemm_w4") and "read from cache in fp32" in rec["reason"]
    for m, on_kernel in ((4, True), (5, False)):
        q = run_pipeline(_model(m, 512, 1024, "relu"), "quantize{precision=int4,group_size=32}")
        rec = _check(q, m, 512, SERIAL)["fc"]
        assert rec["kernel"].startswith("gemm_w4g32") == on_kernel, rec
        assert on_kernel or "M = 5 > 4 for a 1024x512 weight" in rec["reason"]


def test_the_int4_kernel_holds_no_f32_copy_of_the_weight() -> None:
    q = run_pipeline(_model(1, 256, 64, "relu"), "quantize{precision=int4,group_size=32}")
    exe = runtime.compile(q, backend="numba")
    consts = {s.name: s for s in exe.plan.slots if s.kind == "const"}
    assert not any(s.dtype == np.float32 and s.shape == (64, 256) for s in consts.values()), sorted(consts)
    assert any(s.dtype == np.uint8 and s.shape == (64, 128) for s in consts.values())


def test_groups_of_whole_vectors_run_on_the_vector_kernel() -> None:
    from tensorsmith.backends.numba.int4_gemm import KERNELS, VECTOR_KERNELS, kernel_for
    from tensorsmith.backends.numba.k_int4_vec import AVAILABLE

    _, q, s, _ = _problem(1, 128, 4, 32, 4)
    assert kernel_for(pack_int4_weights(q, s, 32)) is (VECTOR_KERNELS[4] if AVAILABLE else KERNELS[4])
    _, q, s, _ = _problem(1, 128, 4, 0, 8)
    assert kernel_for(pack_int8_rows(q, s)) is (VECTOR_KERNELS[8] if AVAILABLE else KERNELS[8])
    assert kernel_for(pack_int4_weights(q[:, :9] % 8, s, 0)) is KERNELS[4]  # K = 9: one short group


def test_plans_of_one_graph_share_the_packed_weight() -> None:
    q = run_pipeline(_model(2, 128, 32, "relu"), "quantize{precision=int4,group_size=32}")
    packed = []
    for _ in range(2):
        exe = runtime.compile(q, backend="numba")
        packed.append(next(s.array for s in exe.plan.slots if s.kind == "const" and "packed" in s.name))
    assert packed[0] is packed[1]


def test_odd_int4_groups_run_as_f32_and_say_why() -> None:
    q = run_pipeline(_model(2, 50, 7, "relu"), "quantize{precision=int4,group_size=5}")
    rec = _check(q, 2, 50, SERIAL)["fc"]
    assert "groups of odd length" in rec["reason"] and not rec["kernel"].startswith("gemm_w4")


def test_a_convolution_with_a_weight_dequantized_at_compile_time_runs_the_packed_kernel() -> None:
    from tensorsmith.bench.models import load_model

    m = load_model("cnn")
    q = run_pipeline(m.graph, "quantize{precision=int4}")
    exe = runtime.compile(q, backend="numba", fuse=False)
    conv_kernels = {s.name: s.kernel for s in exe.plan.steps if s.op == "conv2d" and not s.is_view}
    assert conv_kernels and all(k.startswith("conv_uk") for k in conv_kernels.values()), conv_kernels
    got, want = exe.run(m.inputs), reference.run(q, dict(m.inputs))
    for name in want:
        assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4 * float(np.abs(want[name]).max() + 1))
