"""Pruned and then integer-quantized layers on the Numba backend: the block-sparse int8 kernel, chosen and priced.

The int8 break-even is set per test through a cpu-host override, so that each test knows which kernel the
lowering must pick. The block-sparse int8 kernel and the dense int8 GEMM compute the same exact i32 sums and
share their dequantization, so a graph compiled both ways gives bit-identical outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.backends.cost import estimate
from tensorsmith.backends.numba.cpu_features import best_int8_path
from tensorsmith.ir import Graph, GraphBuilder, f32
from tensorsmith.passes import PassContext
from tensorsmith.passes.pipeline import run_pipeline

pytestmark = pytest.mark.skipif(best_int8_path() is None, reason="this host executes no int8 path")
SPARSE = "[bsr_int8_breakeven]\n" + "\n".join(f"{b}x{b} = 1.01" for b in (4, 8, 16, 32, 64)) + \
    "\n\n[sparse_copies]\nint8_patch_value = 0\n"
"""Every block-sparse int8 choice wins: break-even above any density, a convolution's patches free."""
DENSE = "[bsr_int8_breakeven]\n" + "\n".join(f"{b}x{b} = 0.0" for b in (4, 8, 16, 32, 64)) + "\n"
QUANTIZE = "quantize{scheme=dynamic,min_kn=0,weight_bits=7}"
"""Seven-bit weights: exact on every int8 path, avx2 and avx512bw included."""


def _compile(graph: Graph, folder: Path, table: str, monkeypatch: pytest.MonkeyPatch) -> runtime.Executable:
    folder.mkdir(exist_ok=True)
    (folder / "cpu-host.toml").write_text(table)
    monkeypatch.setenv("TENSORSMITH_CONFIG_DIR", str(folder))
    return runtime.compile(graph, backend="numba")


def _mlp(m: int, k: int, h: int, n: int, seed: int) -> tuple[Graph, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    b = GraphBuilder("sparse_int8_mlp")
    x = b.input("x", f32[m, k])
    y = b.gelu(b.linear(x, rng.standard_normal((h, k)).astype(np.float32), rng.standard_normal(h).astype(np.float32),
                        name="fc1"))
    y = b.add(b.linear(y, rng.standard_normal((n, h)).astype(np.float32), name="fc2"), b.input("r", f32[m, n]))
    b.output(y)
    return b.build(), {"x": rng.standard_normal((m, k)).astype(np.float32),
                       "r": rng.standard_normal((m, n)).astype(np.float32)}


@pytest.mark.parametrize(("m", "block", "sparsity"), [(1, (16, 16), 0.8), (37, (32, 32), 0.9), (130, (8, 8), 0.5),
                                                      (20, (64, 64), 0.75)])
def test_pruned_quantized_linears_run_block_sparse_int8(m: int, block: tuple[int, int], sparsity: float,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graph, feeds = _mlp(m, 192, 256, 128, m)
    bh, bw = block
    q = run_pipeline(graph, f"prune{{pattern=block,block={bh}x{bw},sparsity={sparsity},min_params=0}},{QUANTIZE}")
    sparse = _compile(q, tmp_path / "sparse", SPARSE, monkeypatch)
    layers = sparse.stats["kernels_by_layer"]
    assert layers["fc1"]["kernel"] == layers["fc2"]["kernel"] == f"bsr {bh}x{bw} int8", layers
    kernels = [p.kernel for p in sparse.profile(feeds, repeats=1).nodes if p.note]
    assert len(kernels) == 2 and all(f"_bsr{bh}x{bw}_" in k for k in kernels), kernels
    assert any("+gelu" in k for k in kernels) and any("+residual" in k for k in kernels), kernels
    dense = _compile(q, tmp_path / "dense", DENSE, monkeypatch)
    assert dense.stats["kernels_by_layer"]["fc1"]["kernel"] == "dense"
    got, want = sparse.run(feeds), dense.run(feeds)
    ref = reference.run(q, feeds)
    for name in want:
        assert_array_equal(got[name], want[name], err_msg=name)
        assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-4, err_msg=name)


def test_static_requantized_chain_on_the_sparse_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graph, feeds = _mlp(24, 128, 192, 64, 3)
    cal = [{"x": f["x"], "r": f["r"]} for f in (_mlp(24, 128, 192, 64, s)[1] for s in range(4))]
    q = run_pipeline(graph, "prune{pattern=block,block=32x32,sparsity=0.8,min_params=0},"
                            "quantize{scheme=static,min_kn=0,weight_bits=7}", ctx=PassContext(calibration=cal))
    assert {n.op for n in q.nodes} >= {"qlinear"}
    sparse = _compile(q, tmp_path / "sparse", SPARSE, monkeypatch)
    assert sparse.stats["kernels_by_layer"]["fc1"]["kernel"] == "bsr 32x32 int8"
    dense = _compile(q, tmp_path / "dense", DENSE, monkeypatch)
    for name, want in dense.run(feeds).items():
        assert_array_equal(sparse.run(feeds)[name], want, err_msg=name)


@pytest.mark.parametrize(("pads", "strides", "dilations"), [((1, 1, 1, 1), (1, 1), (1, 1)),
                                                            ((0, 2, 1, 0), (2, 1), (1, 2)),
                                                            ((2, 0, 0, 1), (1, 2), (2, 1))])
def test_pruned_quantized_conv_runs_block_sparse_int8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      pads: tuple[int, ...], strides: tuple[int, int],
                                                      dilations: tuple[int, int]) -> None:
    """The block-sparse conv's im2col (channel-major K over the NHWC copy) under padding, strides and dilation."""
    rng = np.random.default_rng(4)
    b = GraphBuilder("sparse_int8_conv")
    x = b.input("x", f32[2, 16, 9, 10])
    y = b.conv2d(x, rng.standard_normal((32, 16, 3, 3)).astype(np.float32), rng.standard_normal(32).astype(np.float32),
                 pads=pads, strides=strides, dilations=dilations, name="conv")
    b.output(b.relu(y))
    q = run_pipeline(b.build(), f"prune{{pattern=block,block=16x16,sparsity=0.75,min_params=0}},{QUANTIZE}")
    feeds = {"x": rng.standard_normal((2, 16, 9, 10)).astype(np.float32)}
    sparse = _compile(q, tmp_path / "sparse", SPARSE, monkeypatch)
    assert sparse.stats["kernels_by_layer"]["conv"]["kernel"] == "bsr 16x16 int8"
    dense = _compile(q, tmp_path / "dense", DENSE, monkeypatch)
    got, want = sparse.run(feeds), dense.run(feeds)
    assert got.keys() == want.keys()
    for name in want:
        assert_array_equal(got[name], want[name], err_msg=name)


def test_above_the_int8_break_even_stays_dense_and_nm_has_no_int8_kernel(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    graph, feeds = _mlp(16, 128, 128, 64, 5)
    q = run_pipeline(graph, f"prune{{pattern=block,block=32x32,sparsity=0.5,min_params=0}},{QUANTIZE}")
    exe = _compile(q, tmp_path / "cfg", "[bsr_int8_breakeven]\n32x32 = 0.3\n", monkeypatch)
    assert exe.stats["kernels_by_layer"]["fc1"] == {
        "kernel": "dense", "reason": "dense: density 0.50 above break-even 0.30 (bsr 32x32 int8)"}
    nm = run_pipeline(graph, f"prune{{pattern=nm,n=2,m=4,min_params=0}},{QUANTIZE}")
    exe = _compile(nm, tmp_path / "cfg", SPARSE, monkeypatch)
    assert exe.stats["kernels_by_layer"]["fc1"] == {
        "kernel": "dense", "reason": "dense: the N:M kernel is fp32; int8 weights have the block-sparse kernel only"}


def test_cost_model_prices_the_int8_kernel_the_lowering_picks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graph, _ = _mlp(128, 768, 768, 768, 2)
    quantized = run_pipeline(graph, QUANTIZE)
    pruned = run_pipeline(graph, f"prune{{pattern=block,block=32x32,sparsity=0.9}},{QUANTIZE}")
    exe = _compile(pruned, tmp_path / "cfg", "[bsr_int8_breakeven]\n32x32 = 0.3\n", monkeypatch)
    reason = exe.stats["kernels_by_layer"]["fc1"]["reason"]
    assert reason.startswith("bsr 32x32 int8: density 0.")
    row, dense = estimate(pruned, "cpu-host")["fc1"], estimate(quantized, "cpu-host")["fc1"]
    assert reason in row.notes
    density = float(reason.split("density ")[1].split()[0])
    assert row.macs == pytest.approx(dense.macs * density, rel=0.01)
    assert row.compute_s < dense.compute_s / 2
