"""bench.qadd: the QDQ residual folds into one qadd, and the benchmark runs and prints its table."""

from __future__ import annotations

import pytest
from tensorsmith.bench import qadd
from tensorsmith.passes import run_pipeline


def test_the_residual_folds_into_one_qadd() -> None:
    ops = [n.op for n in run_pipeline(qadd.qdq_residual((4, 8)), "quantize-fold").nodes]
    assert ops == ["qadd"]


def test_the_benchmark_prints_every_shape(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qadd, "SHAPES", ((8, 64),))
    monkeypatch.setattr(qadd, "has", lambda module: False)  # no ONNX Runtime child: quicker, same table
    qadd.main(["--repeats", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert "qadd speed-up" in out and "8x64" in out
