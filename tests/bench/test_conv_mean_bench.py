"""bench.conv_mean: `fuse{mean=false}` keeps global average pools apart, and the benchmark compares both forms."""

from __future__ import annotations

import pytest
from tensorsmith.bench import conv_mean
from tensorsmith.bench.models import load_model
from tensorsmith.passes import run_pipeline


def test_fuse_mean_false_keeps_the_global_pool_out_of_the_regions() -> None:
    g = load_model("cnn").graph
    with_mean, without = run_pipeline(g, "fuse"), run_pipeline(g, "fuse{mean=false}")
    assert sum(n.op == "global-avgpool" for n in with_mean.nodes) == 0
    assert sum(n.op == "global-avgpool" for n in without.nodes) == 1
    bodies = [n.attrs["body"] for n in with_mean.nodes if n.op == "fused"]
    assert [eq.op for eq in bodies[-1].nodes][-1] == "global-avgpool"


def test_the_benchmark_prints_both_times(capsys: pytest.CaptureFixture[str]) -> None:
    conv_mean.main(["--models", "cnn", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "cnn: 1 means in the convolution" in out and "x)" in out
