"""`bench`'s early-exit rows: present for a model with exits (resmlp-digits), absent elsewhere, bounded by the
model's metric."""

from __future__ import annotations

import dataclasses

import pytest
from tensorsmith.bench.configs import BASELINE, DEFAULT_CONFIGS, EXIT_CONFIGS
from tensorsmith.bench.models import load_model
from tensorsmith.bench.suite import Settings, run_model
from tensorsmith.ir.exits import exit_nodes

pytest.importorskip("sklearn", reason="the digits models need scikit-learn: pip install 'tensorsmith[models]'")

FAST = Settings(repeats=1, warmup=0, threads=1, targets=("cpu-host",))
BASE = next(c for c in DEFAULT_CONFIGS if c.name == BASELINE)


def test_a_model_with_exits_gets_early_exit_rows_within_its_bound() -> None:
    m = load_model("resmlp-digits")
    assert m.exits is not None
    run = run_model(m.name, m.graph, m.inputs, [BASE, EXIT_CONFIGS[0]], FAST, m.quality, m.metric_name,
                    exits=m.exits)
    rows = {r.config: r for r in run.rows}
    assert set(rows) == {BASELINE, "early exit"}
    row = rows["early exit"]
    assert row.error is None and row.median_ms is not None and row.median_ms > 0
    assert run.reference_metric is not None and row.metric_value is not None
    assert run.reference_metric - row.metric_value <= m.exits.max_metric_drop
    assert len(exit_nodes(run.graphs["early exit"])) == 3  # block0, block1, block3
    # the cost model prices the expected latency over the exits' probabilities: below the baseline's
    assert row.predicted_speedup is not None and row.predicted_speedup > 1.0


def test_a_model_without_exits_has_no_early_exit_rows() -> None:
    m = load_model("mlp")
    run = run_model(m.name, m.graph, m.inputs, [BASE, *EXIT_CONFIGS], FAST, m.quality, m.metric_name, exits=m.exits)
    assert [r.config for r in run.rows] == [BASELINE]


def test_an_exit_row_below_the_metric_bound_is_a_failure_without_timing() -> None:
    m = load_model("resmlp-digits")
    strict = dataclasses.replace(m.exits, max_metric_drop=-1.0)  # the metric would have to rise by a whole point
    run = run_model(m.name, m.graph, m.inputs, [EXIT_CONFIGS[0]], FAST, m.quality, m.metric_name, exits=strict)
    (row,) = run.rows
    assert row.median_ms is None and "below reference fp32's" in (row.error or "")
