"""`bench sweep`: the grid, and a small sweep on a local Dask cluster of two workers with one failing trial."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from tensorsmith.bench.cli import main
from tensorsmith.bench.sweep import SPARSITY_PLACEHOLDER, Trial, grid, relate, run_trial


def test_grid_expands_sparsities_and_adds_one_baseline_per_model() -> None:
    trials = grid(["mlp", "cnn"], ["fuse", f"prune{{sparsity={SPARSITY_PLACEHOLDER}}}"], ["cpu-host", "tpu-v4"],
                  ["0.3", "0.6"], 1, 0, 1)
    assert [t.pipeline for t in trials[:2]] == ["", ""] and {t.model for t in trials[:2]} == {"mlp", "cnn"}
    rest = {(t.model, t.pipeline, t.target) for t in trials[2:]}
    assert len(trials) == 2 + 2 * 3 * 2 and ("cnn", "prune{sparsity=0.6}", "tpu-v4") in rest
    with pytest.raises(ValueError, match="--sparsities is empty"):
        grid(["mlp"], [f"prune{{sparsity={SPARSITY_PLACEHOLDER}}}"], ["cpu-host"], [], 1, 0, 1)


def test_a_failing_trial_is_recorded_not_raised() -> None:
    res = run_trial(Trial("no-such-model", "fuse", "cpu-host", 1, 0, 1))
    assert res["row"] is None and "unknown model 'no-such-model'" in res["error"]
    (row,) = relate([res])
    assert row.error == res["error"] and row.median_ms is None


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None, reason="dask[distributed] is not installed")
def test_sweep_on_a_local_cluster_of_two_workers(tmp_path: Path) -> None:
    out, page = tmp_path / "sweep.json", tmp_path / "sweep.html"
    assert main(["sweep", "--models", "mlp", "--pipelines", "fuse", "no-such-pass", "--targets", "cpu-host",
                 "--repeats", "1", "--warmup", "0", "--workers", "2", "--json", str(out), "--html", str(page)]) == 0
    data = json.loads(out.read_text())
    assert len(data["trials"]) == 3 and data["settings"]["workers"] == 2
    rows = {r["config"]: r for r in data["rows"]}
    assert set(rows) == {"numba fp32", "fuse @ cpu-host", "no-such-pass @ cpu-host"}
    assert rows["fuse @ cpu-host"]["median_ms"] > 0 and rows["fuse @ cpu-host"]["speedup"] > 0
    assert rows["fuse @ cpu-host"]["predicted_speedup"] > 1.0  # fusion removes kernels on cpu-host
    assert "unknown pass 'no-such-pass'" in rows["no-such-pass @ cpu-host"]["error"]
    text = page.read_text()
    assert "fuse @ cpu-host" in text and "failed: mlp / no-such-pass @ cpu-host" in text
