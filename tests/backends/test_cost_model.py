"""The cost model: COST_RULES, systolic timing, precisions, sparsity, memory, totals, tables and roofline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from tensorsmith.backends.cost import (
    CostError,
    estimate,
    load_target,
    node_cost,
    node_work,
    plot_roofline,
    roofline,
    systolic_cycles,
)
from tensorsmith.backends.cost.precision import block_density
from tensorsmith.ir import GraphBuilder, QuantInfo, SparsityInfo, TensorType, Value, f16, f32, i4, i8

from tests.ir.sample_attention import attention_graph, decomposed_attention_graph


@pytest.fixture(autouse=True)
def _no_user_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENSORSMITH_CONFIG_DIR", str(tmp_path / "config"))


def _linear_graph(m: int, n: int, k: int, dtype=f32, sparsity: SparsityInfo | None = None, bias: bool = False):  # type: ignore[no-untyped-def]
    b = GraphBuilder("lin")
    quant = QuantInfo((0.1,), (0,), dtype.bits) if not dtype.is_float else None
    x = b.input("x", TensorType((m, k), dtype, quant=quant))
    w = Value("w", TensorType((n, k), dtype, quant=quant, sparsity=sparsity), np.zeros((n, k), dtype.np_dtype))
    args = (x, w, np.zeros(n, dtype.np_dtype)) if bias else (x, w)
    b.output(b.linear(*args, name="fc"))
    return b.build()


# ---- rules ---------------------------------------------------------------------------------------------
def test_rules_count_work_from_types_and_attrs() -> None:
    g = _linear_graph(8, 16, 32, bias=True)
    w = node_work(g.nodes[0])
    assert (w.kind, w.macs, w.gemm, w.ops) == ("matrix", 8 * 16 * 32, (1, 8, 16, 32), 8 * 16)
    b = GraphBuilder("conv")
    x = b.input("x", f32[2, 8, 10, 10])
    y = b.conv2d(x, np.zeros((16, 4, 3, 3), np.float32), pads=1, groups=2, name="c")
    d = b.conv2d(y, np.zeros((16, 1, 3, 3), np.float32), pads=1, groups=16, name="dw")
    b.output(b.reshape(d, (2, -1)))
    g = b.build()
    c, dw, rs = (node_work(n) for n in g.nodes)
    assert c.gemm == (2, 2 * 10 * 10, 8, 4 * 9) and c.macs == 2 * 16 * 100 * 4 * 9
    assert dw.kind == "vector" and dw.ops == 2 * 2 * 16 * 100 * 9  # depthwise runs on vector units
    assert rs.kind == "view" and not rs.operands


def test_an_op_without_a_rule_is_a_clear_error() -> None:
    g = _linear_graph(2, 2, 2)
    with pytest.raises(CostError, match=r"no cost rule for op 'linear' \(node %fc\)"):
        node_work(g.nodes[0], rules={})


# ---- systolic arrays -----------------------------------------------------------------------------------
def test_systolic_closed_forms_match_the_scalesim_figures() -> None:
    assert systolic_cycles(1024, 1024, 1024, 128, 128, "ws").cycles == 89983
    r = systolic_cycles(128, 3072, 768, 128, 128, "ws")
    assert r.cycles == 73439 and r.utilization == pytest.approx(0.25, abs=0.01)  # M=128 fills poorly
    assert systolic_cycles(128, 128, 128, 128, 128, "os").cycles == 381
    assert systolic_cycles(128, 128, 128, 128, 128, "ws").cycles == 509
    assert systolic_cycles(1024, 1024, 1024, 128, 128, "ws").utilization > 0.7
    # folds are shared between arrays; batches add folds
    one, four = systolic_cycles(512, 512, 512, 128, 128, "ws", 1), systolic_cycles(512, 512, 512, 128, 128, "ws", 4)
    assert four.cycles == pytest.approx(one.cycles / 4, rel=0.01)
    assert systolic_cycles(64, 64, 64, 128, 128, "is", batch=3).folds == 3
    with pytest.raises(ValueError, match="dataflow"):
        systolic_cycles(1, 1, 1, 4, 4, "xs")


def test_tpu_shape_effect_small_m_uses_the_array_poorly() -> None:
    small = estimate(_linear_graph(128, 3072, 768), "tpu-v4")["fc"]
    big = estimate(_linear_graph(2048, 3072, 768), "tpu-v4")["fc"]
    assert small.cycles > 0 and small.utilization < 0.3 < big.utilization


# ---- precisions ----------------------------------------------------------------------------------------
def test_lower_precision_is_faster_where_the_target_has_it() -> None:
    times = {dt.name: estimate(_linear_graph(2048, 2048, 2048, dt), "gpu-a100")["fc"].latency_s
             for dt in (f32, f16, i8, i4)}
    assert times["f32"] > times["f16"] > times["i8"] > times["i4"]
    c = estimate(_linear_graph(2048, 2048, 2048, f32), "gpu-a100")["fc"]
    assert c.bound == "compute" and 0.5 < c.utilization <= 0.8  # fp32 on CUDA cores at the file's efficiency


def test_missing_precisions_are_converted_and_the_conversion_is_priced() -> None:
    c = estimate(_linear_graph(256, 256, 256, i4), "gpu-h100")["fc"]  # Hopper has no int4 tensor path
    assert c.precision == "int8" and any("int4 -> int8" in n for n in c.notes)
    assert c.ops >= 2 * (256 * 256 * 2)  # unpacking both operands
    h = estimate(_linear_graph(256, 256, 256, f16), "cpu-host")["fc"]
    assert h.precision == "fp32" and any("fp16 -> fp32" in n for n in h.notes)


def test_unsupported_precision_goes_to_the_fallback_or_is_an_error() -> None:
    c = estimate(_linear_graph(64, 64, 64, f32), "npu-edge")["fc"]
    assert c.where.startswith("host CPU") and "fp32 is not supported by npu-edge" in c.notes[0]
    assert estimate(_linear_graph(64, 64, 64, i8), "npu-edge")["fc"].where == "accelerator"
    t = load_target("npu-edge").replace(fallback=None)
    with pytest.raises(CostError, match=r"%fc \(linear\): npu-edge cannot compute fp32"):
        estimate(_linear_graph(4, 4, 4, f32), t)


def test_op_weights_price_expensive_functions_per_target() -> None:
    b = GraphBuilder("e")
    x = b.input("x", f32[64, 1024])
    b.output(b.exp(x, name="e"))
    g = b.build()
    t = load_target("cpu-host").replace(op_weights={})
    base = estimate(g, t)["e"]
    dear = estimate(g, t.replace(op_weights={"exp": 3.0}))["e"]
    assert base.ops == 8 * 64 * 1024 and dear.ops == 3 * base.ops
    assert dear.compute_s == pytest.approx(3 * base.compute_s)


def test_quantize_and_dequantize_are_not_free() -> None:
    b = GraphBuilder("q")
    x = b.input("x", f32[256, 1024])
    q = b.quantize(x, 0.1, name="q")
    b.output(b.dequantize(q, name="dq"))
    t = estimate(b.build(), "gpu-a100")
    for name, ops in (("q", 4), ("dq", 2)):
        r = t[name]
        assert r.kind == "convert" and r.ops == ops * 256 * 1024 and r.latency_s > 0 and r.energy_j > 0


# ---- sparsity ------------------------------------------------------------------------------------------
def test_2to4_counts_half_only_on_hardware_that_accelerates_it() -> None:
    nm = SparsityInfo("nm", 0.5, n=2, m=4)
    dense = estimate(_linear_graph(4096, 4096, 4096, f16), "gpu-a100")["fc"]
    sparse = estimate(_linear_graph(4096, 4096, 4096, f16, nm), "gpu-a100")["fc"]
    assert sparse.macs == dense.macs // 2 and sparse.compute_s == pytest.approx(dense.compute_s / 2, rel=0.1)
    tpu_d = estimate(_linear_graph(4096, 4096, 4096, f32), "tpu-v4")["fc"]
    tpu_s = estimate(_linear_graph(4096, 4096, 4096, f32, nm), "tpu-v4")["fc"]
    assert tpu_s.macs == tpu_d.macs and tpu_s.latency_s == tpu_d.latency_s
    assert any("not accelerated by tpu-v4" in n for n in tpu_s.notes)
    # fp32 is not a sparse tensor core format: no gain at fp32 on the A100
    f32_s = estimate(_linear_graph(1024, 1024, 1024, f32, nm), "gpu-a100")["fc"]
    assert f32_s.macs == 1024**3


def test_block_sparsity_only_where_supported_and_aligned() -> None:
    blk = SparsityInfo("block", 0.25, block=(128, 128))
    d = estimate(_linear_graph(1024, 1024, 1024, f32), "tpu-v4")["fc"]
    s = estimate(_linear_graph(1024, 1024, 1024, f32, blk), "tpu-v4")["fc"]
    assert s.macs == d.macs // 4 and s.latency_s < d.latency_s / 2.5
    w = TensorType((1024, 1024), f32, sparsity=SparsityInfo("block", 0.1, block=(32, 32)))
    assert block_density(w, (128, 128)) == pytest.approx(1 - 0.9**16)  # 16 small blocks per MXU tile
    assert block_density(w, (16, 16)) == pytest.approx(0.1)
    unst = TensorType((64, 64), f32, sparsity=SparsityInfo("unstructured", 0.5))
    assert block_density(unst, (8, 8)) > 0.999
    a100 = estimate(_linear_graph(1024, 1024, 1024, f16, blk), "gpu-a100")["fc"]
    assert a100.macs == 1024**3  # GPUs here accelerate 2:4 only


def test_unstructured_zeros_only_where_the_target_skips_zeros() -> None:
    un = SparsityInfo("unstructured", 0.2)
    fpga_d = estimate(_linear_graph(1024, 1024, 1024, i8), "fpga-u250")["fc"]
    fpga_s = estimate(_linear_graph(1024, 1024, 1024, i8, un), "fpga-u250")["fc"]
    assert fpga_s.macs == pytest.approx(0.2 * fpga_d.macs, rel=1e-6) and fpga_s.latency_s < fpga_d.latency_s / 2
    gpu = estimate(_linear_graph(1024, 1024, 1024, i8, un), "gpu-a100")["fc"]
    assert gpu.macs == 1024**3


# ---- memory --------------------------------------------------------------------------------------------
def test_elementwise_is_memory_bound_and_tiny_ops_are_overhead_bound() -> None:
    b = GraphBuilder("ew")
    x = b.input("x", f32[64, 1024, 1024])
    b.output(b.add(x, x, name="big"))
    big = estimate(b.build(), "gpu-a100")["big"]
    assert big.bound == "memory" and big.dram_bytes == 3 * 64 * 2**20 * 4
    b = GraphBuilder("tiny")
    x = b.input("x", f32[1, 8])
    b.output(b.relu(x, name="r"))
    assert estimate(b.build(), "gpu-a100")["r"].bound == "overhead"


def test_weights_that_do_not_fit_on_chip_stream_and_spill() -> None:
    fits = estimate(_linear_graph(64, 1024, 1024, i8), "npu-edge")  # 1 MB of weights: cached on chip
    assert fits["fc"].dram_bytes < 1024 * 1024
    big = estimate(_linear_graph(4096, 4096, 4096, i8), "npu-edge")  # 16 MB: over the 8 MB SRAM
    r = big["fc"]
    assert r.dram_bytes > 16 * 2**20 and r.spilled and r.bound == "memory"
    assert any("working set exceeds sram" in n for n in r.notes)


def test_tile_padding_waste_is_reported() -> None:
    r = estimate(_linear_graph(1024, 130, 1024, f32), "tpu-v4")["fc"]  # N=130 needs two 128-wide folds
    assert r.padding_waste == pytest.approx(1 - 130 / 256)
    assert estimate(_linear_graph(1024, 1024, 1024, f32), "tpu-v4")["fc"].padding_waste == 0


# ---- graph totals, schedule, early exit -----------------------------------------------------------------
def _two_branch_graph():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    b = GraphBuilder("branches")
    x = b.input("x", f32[32, 256])
    a = b.relu(b.linear(x, rng.standard_normal((256, 256)).astype(np.float32), name="a1"), name="a2")
    c = b.relu(b.linear(x, rng.standard_normal((256, 256)).astype(np.float32), name="c1"), name="c2")
    b.output(b.add(a, c, name="sum"))
    return b.build()


def test_totals_are_sums_and_tables_convert() -> None:
    g = _two_branch_graph()
    t = estimate(g, "gpu-a100")
    assert t.total.serial_latency_s == pytest.approx(sum(r.latency_s for r in t))
    assert t.total.latency_s == t.total.serial_latency_s and t.total.schedule == "serial"
    assert t.total.energy_j == pytest.approx(sum(r.energy_j for r in t)) and t.total.flops > 0
    rows = t.to_dicts()
    assert len(rows) == len(g.nodes) + 1 and rows[-1]["name"] == "<total>" and rows[0]["name"] == "a1"
    j = json.loads(t.to_json())
    assert j["target"] == "gpu-a100" and "emulated" in j["label"] and len(j["nodes"]) == len(g.nodes)
    text = str(t)
    assert "a1" in text and "emulated" in text and "total" in text
    assert t.to_rich().row_count == len(g.nodes) + 1


def test_parallel_streams_shorten_the_schedule_but_not_below_full_utilization() -> None:
    g = _two_branch_graph()
    serial = estimate(g, "gpu-a100").total
    for n in g.nodes:
        n.meta["stream"] = 1 if n.name.startswith("c") else 0
    par = estimate(g, "gpu-a100").total
    assert par.schedule == "parallel (2 streams)" and par.latency_s < serial.latency_s
    assert par.latency_s >= max(estimate(g, "gpu-a100")[n].latency_s for n in ("a1", "c1"))


def test_expected_latency_of_early_exit_graphs() -> None:
    g = _two_branch_graph()
    seg = {"a1": 0, "a2": 0, "c1": 1, "c2": 1, "sum": 2}
    for n in g.nodes:
        n.meta["exit_segment"] = seg[n.name]
    t = estimate(g, "gpu-a100", exit_probabilities=[0.5, 0.2])
    lat = {k: sum(t[n].latency_s for n, s in seg.items() if s == k) for k in range(3)}
    want = lat[0] + 0.5 * lat[1] + 0.5 * 0.8 * lat[2]
    assert t.total.expected_latency_s == pytest.approx(want) and t.total.expected_latency_s < t.total.latency_s
    g.nodes[0].meta["exit_probability"] = 0.5  # the same, read from the graph
    g.nodes[2].meta["exit_probability"] = 0.2
    assert estimate(g, "gpu-a100").total.expected_latency_s == pytest.approx(want)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        estimate(g, "gpu-a100", exit_probabilities=[1.5])


# ---- roofline ------------------------------------------------------------------------------------------
def test_roofline_data_and_plot(tmp_path: Path) -> None:
    g = _two_branch_graph()
    r = roofline(g, "gpu-a100")
    assert len(r.points) == len(g.nodes) and r.ridge("fp16") == pytest.approx(312e12 / 2039e9)
    assert r.attainable(1.0, "fp16") == pytest.approx(2039e9)
    for p in r.points:
        assert p.achieved <= r.peaks[p.precision] * 1.0001 or p.precision not in r.peaks
        assert math.isinf(p.intensity) or p.intensity > 0
    pytest.importorskip("matplotlib")
    out = tmp_path / "roof.png"
    plot_roofline(r, out)
    assert out.stat().st_size > 1000


def test_node_cost_can_be_asked_for_a_single_node() -> None:
    g = _linear_graph(64, 64, 64)
    c = node_cost(g.nodes[0], load_target("cpu-host"))
    assert c.latency_s >= max(c.compute_s, c.memory_s) and c.energy_j > 0 and c.flops == 2 * 64**3


@pytest.mark.parametrize("target", ["cpu-host", "gpu-a100"])
def test_a_fused_region_is_priced_as_one_kernel(target: str) -> None:
    """After `fuse`, intermediates stay on chip: same work, fewer bytes through the cache levels, less time."""
    from tensorsmith.bench.models import load_model
    from tensorsmith.passes import run_pipeline

    g = load_model("transformer-block").graph
    fused = run_pipeline(g, "fuse")
    before, after = estimate(g, target).total, estimate(fused, target).total
    assert after.macs == before.macs
    assert sum(after.bytes.values()) < sum(before.bytes.values())
    assert after.latency_s < before.latency_s and after.energy_j < before.energy_j


def test_attention_keeps_scores_on_chip_with_the_decomposed_graphs_macs() -> None:
    shape = (4, 2048, 2048, 12, 64, (4, 1, 1, 2048))
    fused, plain = attention_graph(*shape), decomposed_attention_graph(*shape)
    w = node_work(fused.nodes[0])
    assert (w.kind, w.gemm, w.macs) == ("matrix", (2 * 4 * 12, 2048, 2048, 64), 2 * 4 * 12 * 2048 * 2048 * 64)
    assert [o.value.name for o in w.operands] == ["q", "k", "v", "mask"] and w.out_elements == 4 * 2048 * 768
    moved = (4 * 4 * 2048 * 768 + 4 * 2048) * 4  # q, k, v, output and mask, once each
    for target in ("gpu-a100", "tpu-v4", "cpu-host"):
        a, d = estimate(fused, target), estimate(plain, target)
        assert a.total.macs == d.total.macs
        dram = list(a.total.bytes)[-1]
        assert a.total.bytes[dram] <= moved < d.total.bytes[dram]  # the decomposed graph moves the scores
        assert a.total.latency_s < d.total.latency_s


def test_causal_attention_is_priced_for_the_scores_it_computes() -> None:
    """Keys up to each query only: sq(sq+1)/2 of the sq^2 scores at Sq = Skv, and Skv per query past Skv."""
    for sq, skv in ((2048, 2048), (300, 100)):
        shape = (2, sq, skv, 12, 64, None)
        causal = node_work(attention_graph(*shape, causal=True).nodes[0])
        full = node_work(attention_graph(*shape).nodes[0])
        seen = min(sq, skv) * (min(sq, skv) + 1) // 2 + max(0, sq - skv) * skv
        assert causal.macs == 2 * 2 * 12 * seen * 64 and full.macs == 2 * 2 * 12 * sq * skv * 64
        for target in ("gpu-a100", "cpu-host"):
            assert estimate(attention_graph(*shape, causal=True), target).total.latency_s < \
                estimate(attention_graph(*shape), target).total.latency_s
