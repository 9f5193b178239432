"""bench.conv_layout: `blocked_layout=False` keeps convolutions NCHW, and the benchmark compares both plans."""

from __future__ import annotations

import pytest
from tensorsmith import runtime
from tensorsmith.backends.numba import k_microkernel
from tensorsmith.bench import conv_layout
from tensorsmith.bench.models import load_model

pytestmark = pytest.mark.skipif(not k_microkernel.AVAILABLE, reason="no FMA: nothing runs blocked")


def test_blocked_layout_false_keeps_every_convolution_nchw() -> None:
    g = load_model("cnn").graph
    kernels = {layout: [s.kernel for s in runtime.compile(g, backend="numba", blocked_layout=layout).plan.kernels()]
               for layout in (True, False)}
    assert sum(k.startswith("conv_blocked") for k in kernels[True]) == 3
    assert not any("blocked" in k for k in kernels[False])


def test_the_benchmark_prints_both_times(capsys: pytest.CaptureFixture[str]) -> None:
    conv_layout.main(["--models", "cnn", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "cnn: 3 of 3 convolutions blocked" in out and "x)" in out
