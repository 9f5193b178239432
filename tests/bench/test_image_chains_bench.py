"""bench.image_chains: `image_chains=False` runs each kernel as its own region, and the benchmark compares both."""

from __future__ import annotations

import pytest
from tensorsmith import runtime
from tensorsmith.backends.numba import k_microkernel
from tensorsmith.backends.numba.jit import num_threads
from tensorsmith.bench import image_chains
from tensorsmith.bench.models import load_model


@pytest.mark.skipif(num_threads() < 2 or not k_microkernel.AVAILABLE, reason="one thread or no FMA: no chain")
def test_image_chains_false_leaves_every_kernel_apart() -> None:
    g = load_model("cnn").graph
    stats = {on: runtime.compile(g, backend="numba", image_chains=on).stats["image_chains"] for on in (True, False)}
    assert len(stats[True]) == 1 and len(stats[True][0]) == 3 and stats[False] == []


def test_the_benchmark_prints_both_times(capsys: pytest.CaptureFixture[str]) -> None:
    image_chains.main(["--models", "cnn", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "cnn: " in out and "image chains" in out and "x)" in out
