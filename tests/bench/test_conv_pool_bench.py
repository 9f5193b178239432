"""bench.conv_pool: `fuse{pool=false}` keeps pools apart, and the benchmark compares both forms of a model."""

from __future__ import annotations

import pytest
from tensorsmith.bench import conv_pool
from tensorsmith.bench.models import load_model
from tensorsmith.passes import run_pipeline


def test_fuse_pool_false_keeps_the_pools_out_of_the_regions() -> None:
    g = load_model("cnn").graph
    with_pool, without = run_pipeline(g, "fuse"), run_pipeline(g, "fuse{pool=false}")
    assert sum(n.op == "maxpool2d" for n in with_pool.nodes) == 0
    assert sum(n.op == "maxpool2d" for n in without.nodes) == 2
    bodies = [n.attrs["body"] for n in without.nodes if n.op == "fused"]
    assert not any(eq.op == "maxpool2d" for body in bodies for eq in body.nodes)


def test_the_benchmark_prints_both_times(capsys: pytest.CaptureFixture[str]) -> None:
    conv_pool.main(["--models", "cnn", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "cnn: 2 pools in the convolution" in out and "x)" in out
