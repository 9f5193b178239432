"""The validation tools: SCALE-Sim agreement on a small layer, the calibration writing a loadable
override, the CPU comparison running end to end, and every target pricing random graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from tensorsmith.backends.cost import estimate, list_targets, load_target
from tensorsmith.bench.validate_cost import Layer, cpu_kernels, model_cycles, run_cpu

from ..strategies import random_graphs


@pytest.fixture(autouse=True)
def _no_user_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENSORSMITH_CONFIG_DIR", str(tmp_path / "config"))


@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_model_cycles_match_scalesim_on_small_layers(dataflow: str) -> None:
    pytest.importorskip("scalesim", reason="SCALE-Sim is optional: pip install 'tensorsmith[validate]'")
    from tensorsmith.bench.validate_cost import scalesim_cycles

    for layer in (Layer("g", gemm=(128, 128, 128)), Layer("g2", gemm=(200, 96, 300)),
                  Layer("c", conv=(12, 12, 16, 24, 3, 3, 1, 1))):
        sim = scalesim_cycles(layer, dataflow)["compute_cycles"]
        assert abs(model_cycles(layer, dataflow) - sim) <= 0.05 * sim, (layer, dataflow)


def test_model_cycles_go_through_the_ir_and_rules() -> None:
    assert model_cycles(Layer("g", gemm=(1024, 1024, 1024)), "ws") == 89983
    assert model_cycles(Layer("g", gemm=(128, 3072, 768)), "ws") == 73439


def test_calibration_writes_an_override_that_load_target_merges(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from tensorsmith.bench.calibrate import MAX_SPREAD, calibrate, summary_text

    cfg = tmp_path / "cfg"
    monkeypatch.setenv("TENSORSMITH_CONFIG_DIR", str(cfg))
    # the numpy backend: no JIT of another backend's kernels; forced, since the test machine may be busy
    m = calibrate(quick=True, backend="reference", force=True)
    assert set(m["spread"]) == {"gemm 256^3", "copy 16 MB"} and m["max_spread"] == MAX_SPREAD
    text = summary_text(m)
    assert f"wrote {m['path']}" in text and f"To undo: rm {m['path']}" in text and "fp32 GEMM" in text
    assert Path(m["path"]) == cfg / "cpu-host.toml"
    assert m["fp32_gflops"] > 0 and m["dram_gbs"] > 0 and m["dispatch_us"] > 0
    t = load_target("cpu-host")
    assert t.peak["fp32"] == pytest.approx(m["fp32_gflops"] * 1e9, rel=1e-3)
    assert t.dram.bandwidth == pytest.approx(m["dram_gbs"] * 1e9, rel=1e-3)
    assert t.launch_overhead_s == pytest.approx(m["dispatch_us"] * 1e-6, rel=1e-3)
    assert t.op_weights["exp"] == pytest.approx(m["op_weights"]["exp"]) and m["dispatch_backend"] == "reference"
    assert not m["int8_measured"] and t.peak["int8"] / t.peak["fp32"] == pytest.approx(0.416 / 0.22, rel=1e-3)
    assert [lv.name for lv in t.memory] == [lv.name for lv in load_target("cpu-host", overrides=False).memory]


def test_cpu_comparison_runs_and_reports_its_backend() -> None:
    ks = [k for k in cpu_kernels() if k.name in ("gemm fp32 256^3", "add 128x3072", "layernorm 128x768")]
    rows, summary = run_cpu(ks, backend="reference", repeats=2)
    assert [r["kernel"] for r in rows] == [k.name for k in ks]
    assert all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 for r in rows)
    assert "NOT the Numba kernels" in summary["backend_label"] and summary["kernels_compared"] == 3


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs(max_nodes=8))
def test_every_target_prices_random_graphs(case) -> None:  # type: ignore[no-untyped-def]
    graph, _ = case
    for name in list_targets():
        t = estimate(graph, name)
        assert len(t) == len(graph.nodes)
        for r in t:
            assert r.latency_s >= max(r.compute_s, r.memory_s) >= 0 and r.energy_j >= 0
            assert all(b >= 0 for b in r.bytes.values()) and np.isfinite(r.latency_s)
        assert t.total.latency_s == pytest.approx(sum(r.latency_s for r in t))


def test_calibration_refuses_when_timings_disagree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tensorsmith.bench.calibrate import CalibrationUnstableError, calibrate

    monkeypatch.setenv("TENSORSMITH_CONFIG_DIR", str(tmp_path))
    with pytest.raises(CalibrationUnstableError, match=r"disagree by more than 0% \(gemm 256\^3 .*Nothing was written"):
        calibrate(quick=True, backend="reference", max_spread=0.0)  # any two timings differ a little
    assert not (tmp_path / "cpu-host.toml").exists()
