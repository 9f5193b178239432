"""The pieces `bench` measures with: output comparison, stored bytes, the Pareto front, quantization errors."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.bench.configs import DEFAULT_CONFIGS, Config, Runner
from tensorsmith.bench.measure import compare, stored_bytes
from tensorsmith.bench.models import load_model
from tensorsmith.bench.plots import pareto_front, quantization_errors
from tensorsmith.passes import run_pipeline


def test_compare_reports_cosine_and_errors_against_the_reference() -> None:
    want = {"y": np.array([[1.0, 0.0], [0.0, 2.0]])}
    q = compare({"y": np.array([[1.0, 0.0], [0.0, -2.0]])}, want)
    assert q.cosine == pytest.approx(-1.0) and q.max_abs_err == 4.0 and q.max_rel_err == 2.0
    assert compare(want, want).cosine == pytest.approx(1.0)
    assert np.isnan(compare({"y": np.full((2, 2), np.nan)}, want).cosine)
    cfg = Config("c", Runner.NUMBA, min_cosine=0.9)
    assert "below the bound 0.9" in q.violation(cfg) and compare(want, want).violation(cfg) is None
    with pytest.raises(KeyError, match="output 'y' is missing"):
        compare({"z": want["y"]}, want)


def test_stored_bytes_count_int8_and_block_compressed_weights() -> None:
    g = load_model("transformer-block").graph
    dense = stored_bytes(g)
    assert dense == g.parameter_bytes()
    pruned = stored_bytes(run_pipeline(g, "prune{pattern=block,sparsity=0.5}"))
    assert 0.45 * dense < pruned < 0.55 * dense  # half the blocks, plus indices and the dense biases and norms
    both = stored_bytes(run_pipeline(g, "prune{pattern=block,sparsity=0.5},quantize{scheme=dynamic},fuse"))
    assert both < stored_bytes(run_pipeline(g, "quantize{scheme=dynamic}")) * 0.7


def test_pareto_front_keeps_the_points_nothing_beats() -> None:
    pts = [(1.0, 1.0), (0.99, 2.0), (0.9, 1.5), (0.8, 3.0), (0.99, 1.9)]
    assert pareto_front(pts) == [3, 1, 0]


def test_quantization_errors_stay_within_half_a_step() -> None:
    g = load_model("mlp").graph
    layer, err = quantization_errors(g, run_pipeline(g, "quantize{precision=int4}"))
    w = next(n.inputs[1].data for n in g.nodes if n.name == layer)
    step = np.abs(w).max(axis=1, keepdims=True) / 7  # symmetric int4 per output channel
    assert err.shape == w.shape and np.all(np.abs(err) <= step / 2 + 1e-6) and np.abs(err).max() > 0


def test_default_configurations_are_distinct_and_bounded() -> None:
    names = [c.name for c in DEFAULT_CONFIGS]
    assert len(set(names)) == len(names)
    assert all(c.min_cosine > 0 or c.max_rel_err < 1 for c in DEFAULT_CONFIGS)  # every row has a stated bound
