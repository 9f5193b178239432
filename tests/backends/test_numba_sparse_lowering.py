"""Pruned weights through the whole pipeline (prune, then runtime.compile on Numba) against the reference backend.

The break-even table is set per test through a cpu-host override in a temporary config folder, so that
each test knows which kernel the lowering must pick: `ALWAYS` makes every sparse kernel win, then the
kernel label in the profile proves the sparse path really ran. Tolerances: float reassociation over
K <= 576 (the sparse kernels sum in another order than numpy).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.backends.cost import estimate
from tensorsmith.backends.numba.sparse_ukernels import HOST_ISAS
from tensorsmith.ir import Graph, GraphBuilder, Value, f32
from tensorsmith.ir.types import SparsityInfo
from tensorsmith.passes.pipeline import run_pipeline

pytestmark = pytest.mark.skipif(not HOST_ISAS, reason="sparse kernels need AVX2 + FMA")

RTOL, ATOL = 2e-4, 2e-4
BLOCKS = ((4, 4), (8, 8), (16, 16), (32, 32), (8, 16))
ALWAYS = "[bsr_breakeven]\n" + "\n".join(f"{b}x{b} = 1.01" for b in (4, 8, 16, 32, 64)) + \
    "\n8x16 = 1.01\n\n[nm_speedup]\n2x4 = 2.0\n1x4 = 2.0\n" \
    "\n[sparse_copies]\npack_value = 0\npatch_value = 0\noutput_value = 0\n"
EPILOGUES = ("none", "bias+relu", "gelu", "residual")
SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _override(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cpu-host.toml").write_text(text)


@pytest.fixture(scope="module")
def always_sparse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every sparse kernel wins (break-even 1.01, N:M speed-up 2, the sparse kernels' copies free) for the tests of this
    module that ask."""
    folder = tmp_path_factory.mktemp("cfg")
    _override(folder, ALWAYS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TENSORSMITH_CONFIG_DIR", str(folder))
        yield


def _mlp(m: int, k: int, n: int, epilogue: str, seed: int) -> tuple[Graph, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    b = GraphBuilder("sparse_mlp")
    x = b.input("x", f32[m, k])
    bias = rng.standard_normal(n).astype(np.float32) if epilogue == "bias+relu" else None
    y = b.linear(x, rng.standard_normal((n, k)).astype(np.float32), bias, name="fc")
    feeds = {"x": rng.standard_normal((m, k)).astype(np.float32)}
    if epilogue == "bias+relu":
        y = b.relu(y)
    elif epilogue == "gelu":
        y = b.gelu(y)
    elif epilogue == "residual":
        y = b.add(y, b.input("r", f32[m, n]))
        feeds["r"] = rng.standard_normal((m, n)).astype(np.float32)
    b.output(y)
    return b.build(), feeds


def _compare(graph: Graph, feeds: dict[str, np.ndarray]) -> runtime.Executable:
    exe = runtime.compile(graph, backend="numba")
    want = reference.run(graph, feeds)
    got = exe.run(feeds)
    for name, w in want.items():
        assert_allclose(got[name], w, rtol=RTOL, atol=ATOL, err_msg=name)
    return exe


def _product_kernels(exe: runtime.Executable, feeds: dict[str, np.ndarray]) -> list[str]:
    return [p.kernel for p in exe.profile(feeds, repeats=1).nodes if p.note]


@pytest.mark.usefixtures("always_sparse")
@SETTINGS
@given(m=st.integers(1, 40), nbr=st.integers(1, 4), nbc=st.integers(1, 4), block=st.sampled_from(BLOCKS),
       sparsity=st.sampled_from((0.3, 0.6, 0.9, 0.99)), epilogue=st.sampled_from(EPILOGUES),
       seed=st.integers(0, 2**16))
def test_block_pruned_linear_runs_bsr(m: int, nbr: int, nbc: int, block: tuple[int, int], sparsity: float,
                                      epilogue: str, seed: int) -> None:
    bh, bw = block
    graph, feeds = _mlp(m, nbc * bw * 2, nbr * bh * 2, epilogue, seed)
    pruned = run_pipeline(graph, f"prune{{pattern=block,block={bh}x{bw},sparsity={sparsity},min_params=0}}")
    exe = _compare(pruned, feeds)
    choice = exe.stats["kernels_by_layer"]["fc"]
    assert choice["kernel"] == f"bsr {bh}x{bw}", choice
    kernels = _product_kernels(exe, feeds)
    assert kernels and all(k.startswith(f"bsr{bh}x{bw}") for k in kernels)
    if epilogue != "none":  # the epilogue ran inside the sparse kernel
        assert any("+" in k for k in kernels), kernels


def _annotated(graph: Graph, layer: str, info: SparsityInfo, data: np.ndarray | None = None) -> Graph:
    """`graph` with the weight of `layer` retyped to carry `info` (and replaced by `data` when given)."""
    node = next(n for n in graph.nodes if n.name == layer)
    w = node.inputs[1]
    node.inputs[1] = Value(w.name, w.type.replace(sparsity=info), w.data if data is None else data)
    return graph


@pytest.mark.usefixtures("always_sparse")
@pytest.mark.parametrize("epilogue", EPILOGUES)
def test_all_zero_and_empty_block_rows(epilogue: str) -> None:
    graph, feeds = _mlp(13, 64, 96, epilogue, 3)
    zero = np.zeros((96, 64), np.float32)
    exe = _compare(_annotated(graph, "fc", SparsityInfo("block", 0.0, block=(16, 16)), zero), feeds)
    assert exe.stats["kernels_by_layer"]["fc"]["kernel"] == "bsr 16x16"
    graph, feeds = _mlp(13, 64, 96, epilogue, 4)
    w = next(n for n in graph.nodes if n.name == "fc").inputs[1].data.copy()
    w[16:80] = 0  # four empty block rows
    w[:, :16] = 0  # an empty block column
    exe = _compare(_annotated(graph, "fc", SparsityInfo("block", 2 * 3 / 24, block=(16, 16)), w), feeds)
    assert exe.stats["kernels_by_layer"]["fc"]["kernel"] == "bsr 16x16"


@pytest.mark.usefixtures("always_sparse")
@SETTINGS
@given(batch=st.integers(1, 2), cin=st.sampled_from((4, 8, 16)), cout=st.sampled_from((16, 32)),
       kernel=st.sampled_from((1, 3)), stride=st.integers(1, 2), pad=st.integers(0, 1), hw=st.integers(3, 9),
       sparsity=st.sampled_from((0.5, 0.9)), residual=st.booleans(), seed=st.integers(0, 2**16))
def test_block_pruned_conv_runs_im2col_bsr(batch: int, cin: int, cout: int, kernel: int, stride: int, pad: int,
                                           hw: int, sparsity: float, residual: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    b = GraphBuilder("sparse_conv")
    x = b.input("x", f32[batch, cin, hw, hw + 1])
    w = rng.standard_normal((cout, cin, kernel, kernel)).astype(np.float32)
    y = b.conv2d(x, w, rng.standard_normal(cout).astype(np.float32), strides=(stride, stride),
                 pads=(pad, pad, pad, pad), name="conv")
    feeds = {"x": rng.standard_normal((batch, cin, hw, hw + 1)).astype(np.float32)}
    if residual:
        oshape = y.type.shape
        y = b.add(y, b.input("r", f32[oshape]))
        feeds["r"] = rng.standard_normal(oshape).astype(np.float32)
    b.output(b.relu(y))
    pruned = run_pipeline(b.build(), f"prune{{pattern=block,block=4x4,sparsity={sparsity},min_params=0}}")
    exe = _compare(pruned, feeds)
    assert exe.stats["kernels_by_layer"]["conv"]["kernel"] == "bsr 4x4"
    assert any(k.startswith("bsr4x4") for k in _product_kernels(exe, feeds))


@pytest.mark.usefixtures("always_sparse")
@pytest.mark.parametrize("m", [1, 7, 40])
def test_nm_pruned_linear_runs_nm(m: int) -> None:
    graph, feeds = _mlp(m, 64, 48, "bias+relu", m)
    pruned = run_pipeline(graph, "prune{pattern=nm,n=1,m=4,min_params=0}")
    exe = _compare(pruned, feeds)
    assert exe.stats["kernels_by_layer"]["fc"] == {"kernel": "nm 1:4", "reason": "nm 1:4: measured 2.00x over dense"}


@pytest.mark.usefixtures("always_sparse")
def test_unstructured_picks_a_small_block_only_when_it_wins() -> None:
    graph, feeds = _mlp(9, 128, 64, "gelu", 5)
    very = _compare(run_pipeline(graph, "prune{pattern=unstructured,sparsity=0.995,min_params=0}"), feeds)
    assert re.fullmatch(r"bsr (8x8|16x16)", very.stats["kernels_by_layer"]["fc"]["kernel"])
    assert "unstructured, block density" in very.stats["kernels_by_layer"]["fc"]["reason"]


def test_decision_and_reason_in_stats_and_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _override(tmp_path, "[bsr_breakeven]\n32x32 = 0.45\n\n[sparse_copies]\npack_value = 0\n")
    monkeypatch.setenv("TENSORSMITH_CONFIG_DIR", str(tmp_path))
    rng = np.random.default_rng(0)
    b = GraphBuilder("two_layers")
    x = b.input("x", f32[8, 128])
    h = b.relu(b.linear(x, rng.standard_normal((128, 128)).astype(np.float32), name="sparse_fc"))
    b.output(b.linear(h, rng.standard_normal((64, 128)).astype(np.float32), name="dense_fc"))
    graph = run_pipeline(b.build(), "prune{pattern=block,block=32x32,sparsity=0.9,ops=linear,skip=dense_fc}")
    feeds = {"x": rng.standard_normal((8, 128)).astype(np.float32)}
    exe = _compare(graph, feeds)
    layers = exe.stats["kernels_by_layer"]
    assert layers["sparse_fc"]["kernel"] == "bsr 32x32"
    assert re.fullmatch(r"bsr 32x32: density 0\.\d\d below break-even 0\.45", layers["sparse_fc"]["reason"])
    assert layers["dense_fc"] == {"kernel": "dense", "reason": "dense: no sparsity annotation"}
    prof = exe.profile(feeds, repeats=1)
    notes = {p.note for p in prof.nodes if p.note}
    assert layers["sparse_fc"]["reason"] in notes and "dense: no sparsity annotation" in notes
    assert layers["sparse_fc"]["reason"] in prof.table()


def test_a_layer_whose_packing_costs_more_than_its_sparsity_saves_stays_dense(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """64 output channels: packing the activations (pack_value / 2N of the product) outweighs density 0.1's saving;
    the lowering and the cost model say so alike."""
    _override(tmp_path, "[bsr_breakeven]\n32x32 = 0.75\n\n[sparse_copies]\npack_value = 210\n")
    monkeypatch.setenv("TENSORSMITH_CONFIG_DIR", str(tmp_path))
    graph, feeds = _mlp(16, 128, 64, "bias+relu", 2)
    pruned = run_pipeline(graph, "prune{pattern=block,block=32x32,sparsity=0.9,min_params=0}")
    exe = _compare(pruned, feeds)
    reason = exe.stats["kernels_by_layer"]["fc"]["reason"]
    assert exe.stats["kernels_by_layer"]["fc"]["kernel"] == "dense"
    assert re.fullmatch(r"dense: bsr 32x32 with its packing of the activations \(1\.64 of the dense kernel's time\) "
                        r"predicted 0\.\d\dx of it", reason), reason
    assert reason in estimate(pruned, "cpu-host")["fc"].notes


def test_layer_above_breakeven_stays_dense(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _override(tmp_path, "[bsr_breakeven]\n32x32 = 0.3\n")
    monkeypatch.setenv("TENSORSMITH_CONFIG_DIR", str(tmp_path))
    graph, feeds = _mlp(16, 128, 128, "bias+relu", 1)
    pruned = run_pipeline(graph, "prune{pattern=block,block=32x32,sparsity=0.5,min_params=0}")
    exe = _compare(pruned, feeds)
    assert exe.stats["kernels_by_layer"]["fc"] == {
        "kernel": "dense", "reason": "dense: density 0.50 above break-even 0.30 (bsr 32x32)"}
    assert not any(k.startswith("bsr") for k in _product_kernels(exe, feeds))
    # the cost model prices the same choice: the dense time, with the same reason
    dense_cost = estimate(graph, "cpu-host")["fc"]
    pruned_cost = estimate(pruned, "cpu-host")["fc"]
    assert pruned_cost.latency_s == pytest.approx(dense_cost.latency_s)
    assert exe.stats["kernels_by_layer"]["fc"]["reason"] in pruned_cost.notes


def test_cost_model_prices_the_kernel_the_lowering_picks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _override(tmp_path, "[bsr_breakeven]\n32x32 = 0.5\n")
    monkeypatch.setenv("TENSORSMITH_CONFIG_DIR", str(tmp_path))
    graph, feeds = _mlp(128, 768, 768, "gelu", 2)
    pruned = run_pipeline(graph, "prune{pattern=block,block=32x32,sparsity=0.9}")
    exe = runtime.compile(pruned, backend="numba")
    reason = exe.stats["kernels_by_layer"]["fc"]["reason"]
    assert reason.startswith("bsr 32x32")
    fused = exe.graph
    region = next(n.name for n in fused.nodes if n.op == "fused")  # priced as the region the lowering ran
    row = estimate(fused, "cpu-host")[region]
    assert reason in row.notes
    dense = estimate(run_pipeline(graph, "fuse"), "cpu-host")[region]
    density = float(reason.split("density ")[1].split()[0])
    assert row.macs == pytest.approx(dense.macs * density, rel=0.01)
    assert row.compute_s < dense.compute_s / 2  # the GEMM part at density / 0.5 of its dense time, plus the GELU


def test_quantized_then_dequantized_weights_still_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENSORSMITH_CONFIG_DIR", str(tmp_path))
    graph, feeds = _mlp(16, 128, 64, "bias+relu", 6)
    qdq = run_pipeline(graph, "prune{pattern=block,block=32x32,sparsity=0.75,min_params=0},quantize{precision=int8}")
    exe = runtime.compile(qdq, backend="numba")
    want = reference.run(qdq, feeds)
    got = exe.run(feeds)
    for name, w in want.items():
        assert_allclose(got[name], w, rtol=1e-3, atol=1e-3)
    assert any(n.op == "dequantize" for n in qdq.nodes)
    assert not any(p.kernel.startswith(("bsr", "nm")) for p in exe.profile(feeds, repeats=1).nodes)
