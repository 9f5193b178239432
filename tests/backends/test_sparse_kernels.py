"""The sparse-kernel choice: break-even interpolation, storage in the cpu-host override, prediction, decisions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tensorsmith.backends.cost import load_target
from tensorsmith.backends.cost.sparse_kernels import (
    SHIPPED_BREAKEVEN,
    SHIPPED_INT8_BREAKEVEN,
    SHIPPED_NM_SPEEDUP,
    breakeven_density,
    breakeven_for,
    bsr_beats_dense,
    choose_sparse_kernel,
    load_breakeven,
    load_nm_speedups,
    predict_bsr_speedup,
)
from tensorsmith.backends.numba.cpu_features import best_int8_path
from tensorsmith.backends.numba.sparse_ukernels import HOST_ISAS
from tensorsmith.ir.types import SparsityInfo


def test_breakeven_interpolates_the_crossing() -> None:
    assert breakeven_density((0.1, 0.3, 0.5), (4.0, 2.0, 0.5)) == pytest.approx(0.3 + 0.2 * 1.0 / 1.5)
    assert breakeven_density((0.1, 0.5), (0.8, 0.5)) == 0.0
    assert breakeven_density((0.5, 0.1), (1.5, 3.0)) == 0.5  # never loses: the densest measured


def test_prediction_from_a_table() -> None:
    table = {(32, 32): 0.4, (8, 8): 0.1}
    assert bsr_beats_dense((32, 32), 0.3, table) and not bsr_beats_dense((32, 32), 0.5, table)
    assert breakeven_for((16, 16), table) == 0.1  # nearest stored block by area (256 vs 64 and 1024)
    assert predict_bsr_speedup((32, 32), 0.1, table) == pytest.approx(4.0)


def test_load_breakeven_reads_the_override(tmp_path: Path) -> None:
    p = tmp_path / "cpu-host.toml"
    p.write_text("[bsr_breakeven]\n32x32 = 0.42\n8x32 = 0.2\n")
    table = load_breakeven(p)
    assert table[(32, 32)] == 0.42 and table[(8, 32)] == 0.2
    assert table[(16, 16)] == SHIPPED_BREAKEVEN[(16, 16)]
    assert load_breakeven(tmp_path / "missing.toml") == SHIPPED_BREAKEVEN


def _written_override(folder: Path, table: str, be: dict | None) -> Path:
    """A cpu-host override written by calibrate's writer around one measured break-even table `be`."""
    from tensorsmith.bench.calibrate import toml_override

    assert be is not None and set(be["density"]) == {"32x32", "16x16"}
    assert all(0.0 <= d <= 1.0 for d in be["density"].values())
    m = {"date": "d", "machine": "m", "dispatch_us": 3.0, "dispatch_backend": "numba", "threads": None,
         "fp32_gflops": 100.0, "int8_gops": 200.0, "int8_measured": True, "gemm_sizes": [256], "vector_gops": 10.0,
         "op_weights": {}, "dram_gbs": 30.0, "cache_gbs": {}, table: be}
    p = folder / "cpu-host.toml"
    p.write_text(toml_override(m))
    return p


@pytest.mark.skipif(not HOST_ISAS, reason="sparse kernels need AVX2 + FMA")
def test_calibrate_stores_breakeven_and_the_target_still_loads(tmp_path: Path) -> None:
    from tensorsmith.bench.calibrate import measure_bsr_breakevens

    be = measure_bsr_breakevens(quick=True)
    p = _written_override(tmp_path, "bsr_breakeven", be)
    assert load_breakeven(p)[(32, 32)] == be["density"]["32x32"]
    assert load_target("cpu-host", overrides=p).peak["fp32"] == pytest.approx(100e9)


@pytest.mark.skipif(not HOST_ISAS, reason="sparse kernels need AVX2 + FMA")
def test_calibrate_measures_the_nm_speedups_that_choose_the_kernel(tmp_path: Path) -> None:
    from tensorsmith.bench.calibrate import NM_PATTERNS, measure_nm_speedups, summary_rows, toml_override

    nm = measure_nm_speedups(quick=True)
    assert nm is not None and set(nm["speedup"]) == {f"{n}x{m}" for n, m in NM_PATTERNS}
    assert all(0.0 < v < 100.0 for v in nm["speedup"].values())
    m = {"date": "d", "machine": "m", "dispatch_us": 3.0, "dispatch_backend": "numba", "threads": None,
         "fp32_gflops": 100.0, "int8_gops": 200.0, "int8_measured": True, "gemm_sizes": [256], "vector_gops": 10.0,
         "op_weights": {}, "dram_gbs": 30.0, "cache_gbs": {}, "nm_speedup": {**nm, "speedup": {"2x4": 1.25}}}
    p = tmp_path / "cpu-host.toml"
    p.write_text(toml_override(m))
    table = load_nm_speedups(p)
    assert table[(2, 4)] == 1.25 and table[(1, 4)] == SHIPPED_NM_SPEEDUP[(1, 4)]
    picked = choose_sparse_kernel(SparsityInfo("nm", 0.5, n=2, m=4), nm_table=table)
    assert picked.kernel == "nm" and picked.speedup == pytest.approx(1.25)
    assert load_target("cpu-host", overrides=p).peak["fp32"] == pytest.approx(100e9)
    assert dict(summary_rows({**m, "spread": {}, "max_spread": 0.25}))["N:M speed-up"] == "2:4 1.25x"


def test_int8_table_is_apart_from_the_fp32_one(tmp_path: Path) -> None:
    p = tmp_path / "cpu-host.toml"
    p.write_text("[bsr_breakeven]\n32x32 = 0.42\n\n[bsr_int8_breakeven]\n32x32 = 0.25\n")
    assert load_breakeven(p)[(32, 32)] == 0.42 and load_breakeven(p, precision="int8")[(32, 32)] == 0.25
    assert load_breakeven(p, precision="int8")[(16, 16)] == SHIPPED_INT8_BREAKEVEN[(16, 16)]
    info = SparsityInfo("block", 0.3, block=(32, 32))
    table = {(32, 32): 0.25}
    assert choose_sparse_kernel(info, table=table, precision="int8").reason == \
        "dense: density 0.30 above break-even 0.25 (bsr 32x32 int8)"
    picked = choose_sparse_kernel(SparsityInfo("block", 0.1, block=(32, 32)), table=table, precision="int8")
    assert picked.label == "bsr 32x32 int8" and picked.speedup == pytest.approx(2.5)
    assert choose_sparse_kernel(SparsityInfo("nm", 0.5, n=2, m=4), precision="int8").kernel == "dense"


@pytest.mark.skipif(best_int8_path() is None, reason="this host executes no int8 path")
def test_calibrate_stores_the_int8_breakeven(tmp_path: Path) -> None:
    from tensorsmith.bench.calibrate import measure_bsr_int8_breakevens

    be = measure_bsr_int8_breakevens(quick=True)
    p = _written_override(tmp_path, "bsr_int8_breakeven", be)
    assert load_breakeven(p, precision="int8")[(16, 16)] == be["density"]["16x16"]
    assert load_breakeven(p)[(16, 16)] == SHIPPED_BREAKEVEN[(16, 16)]


def test_choose_sparse_kernel_per_pattern() -> None:
    table, nm = {(32, 32): 0.45, (8, 8): 0.2}, {(2, 4): 0.9, (1, 4): 1.8}
    block = SparsityInfo("block", 0.1, block=(32, 32))
    c = choose_sparse_kernel(block, table=table, nm_table=nm)
    assert (c.label, c.reason) == ("bsr 32x32", "bsr 32x32: density 0.10 below break-even 0.45")
    assert c.speedup == pytest.approx(4.5)
    dense = choose_sparse_kernel(SparsityInfo("block", 0.62, block=(32, 32)), table=table, nm_table=nm)
    assert (dense.label, dense.reason) == ("dense", "dense: density 0.62 above break-even 0.45 (bsr 32x32)")
    assert choose_sparse_kernel(None).reason == "dense: no sparsity annotation"
    assert choose_sparse_kernel(block, blocked="the weight is quantized", table=table).reason == \
        "dense: the weight is quantized"
    assert "above the BSR kernel's 64" in choose_sparse_kernel(SparsityInfo("block", 0.1, block=(128, 128))).reason
    assert choose_sparse_kernel(SparsityInfo("nm", 0.25, n=1, m=4), table=table, nm_table=nm).label == "nm 1:4"
    assert choose_sparse_kernel(SparsityInfo("nm", 0.5, n=2, m=4), table=table, nm_table=nm).reason == \
        "dense: the 2:4 kernel measured 0.90x of dense"
    assert choose_sparse_kernel(SparsityInfo("channel", 0.5)).label == "dense"
    unst = SparsityInfo("unstructured", 0.01)
    picked = choose_sparse_kernel(unst, lambda b: 0.05 if b == (8, 8) else 0.3, table=table, nm_table=nm)
    assert picked.label == "bsr 8x8" and "unstructured, block density 0.05" in picked.reason
    assert choose_sparse_kernel(unst, lambda b: 0.9, table=table, nm_table=nm).label == "dense"


def _conv_node(ci: int, co: int, k: int):  # type: ignore[no-untyped-def]
    from tensorsmith.ir import GraphBuilder, f32

    b = GraphBuilder("conv")
    x = b.input("x", f32[2, ci, 8, 8])
    b.output(b.conv2d(x, np.zeros((co, ci, k, k), np.float32), pads=k // 2, name="c"))
    return b.build().nodes[0]


def test_sparse_paths_count_their_copies_of_the_activations() -> None:
    """Packing costs pack_value / 2N of a product: at 64 output channels BSR at density 0.5 stays dense, at 3072 it
    keeps BSR with its speed-up cut. The zoo cnn's last layer (32 -> 64 channels, 3x3) adds its im2col and transpose
    copies: dense even at density 0.1; a 256 -> 1024 layer at 0.1 keeps BSR."""
    from tensorsmith.backends.cost.sparse_kernels import BSR, copy_overhead, with_copies

    flops = {"pack_value": 210.0, "patch_value": 225.0, "output_value": 124.0}
    half = choose_sparse_kernel(SparsityInfo("block", 0.5, block=(32, 32)), table={(32, 32): 0.75})
    tenth = choose_sparse_kernel(SparsityInfo("block", 0.1, block=(32, 32)), table={(32, 32): 0.75})
    assert half.kernel == tenth.kernel == BSR
    narrow, wide = _linear_node(64), _linear_node(3072)
    assert copy_overhead(narrow, flops) == pytest.approx(210 / 128)
    kept = with_copies(narrow, half, flops)
    assert kept.kernel == "dense" and "packing of the activations" in kept.reason
    chosen = with_copies(wide, half, flops)
    assert chosen.kernel == BSR and chosen.speedup == pytest.approx(1 / (0.5 / 0.75 + 210 / 6144))
    conv_narrow, conv_wide = _conv_node(32, 64, 3), _conv_node(256, 1024, 3)
    assert copy_overhead(conv_narrow, flops) == pytest.approx((210 + 225) / 128 + 124 / 576)
    assert with_copies(conv_narrow, tenth, flops).kernel == "dense"
    assert "im2col" in with_copies(conv_narrow, tenth, flops).reason
    wide_choice = with_copies(conv_wide, tenth, flops)
    assert wide_choice.kernel == BSR and 1.0 < wide_choice.speedup < tenth.speedup
    int8 = choose_sparse_kernel(SparsityInfo("block", 0.5, block=(32, 32)), table={(32, 32): 0.75}, precision="int8")
    flops["int8_patch_value"] = 240.0
    assert with_copies(_quantized("qlinear", (64, 128)), int8, flops) is int8  # activations read in place
    qconv = with_copies(_quantized("qconv2d", (64, 32, 3, 3)), int8, flops)  # channel-major patches: 240 / 128
    assert qconv.kernel == "dense" and "channel-major patches" in qconv.reason
    assert with_copies(_quantized("qconv2d", (1024, 32, 3, 3)), int8, flops).kernel == BSR


def _quantized(op: str, weight_shape: tuple[int, ...]):  # type: ignore[no-untyped-def]
    """A stand-in integer product: what the choice reads (its op and its weight's shape, input 3)."""
    from types import SimpleNamespace

    weight = SimpleNamespace(type=SimpleNamespace(shape=weight_shape))
    return SimpleNamespace(op=op, inputs=[None, None, None, weight])


def _linear_node(n: int):  # type: ignore[no-untyped-def]
    from tensorsmith.ir import GraphBuilder, f32

    b = GraphBuilder("lin")
    x = b.input("x", f32[8, 128])
    b.output(b.linear(x, np.zeros((n, 128), np.float32), name="fc"))
    return b.build().nodes[0]


def _conv_node(ci: int, co: int, k: int):  # type: ignore[no-untyped-def]
    from tensorsmith.ir import GraphBuilder, f32

    b = GraphBuilder("conv")
    x = b.input("x", f32[2, ci, 8, 8])
    b.output(b.conv2d(x, np.zeros((co, ci, k, k), np.float32), pads=k // 2, name="c"))
    return b.build().nodes[0]


def test_copy_costs_come_from_the_override(tmp_path: Path) -> None:
    from tensorsmith.backends.cost.sparse_kernels import SHIPPED_COPY_FLOPS, load_copy_flops

    p = tmp_path / "cpu-host.toml"
    assert load_copy_flops(p) == SHIPPED_COPY_FLOPS
    p.write_text("[sparse_copies]\npatch_value = 10\n")
    assert load_copy_flops(p) == {**SHIPPED_COPY_FLOPS, "patch_value": 10.0}
