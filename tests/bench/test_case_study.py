"""`bench case-study`: the steps as data and the verdicts against the size, speed, quality and peer targets."""

from __future__ import annotations

from tensorsmith.bench.case_study import CASE_STUDY_CONFIGS, STACKED, verdicts
from tensorsmith.bench.configs import BASELINE
from tensorsmith.bench.measure import Row


def _row(config: str, ms: float, mb: float, cos: float, backend: str = "numba") -> Row:
    return Row("m", config, backend, "", False, median_ms=ms, cosine=cos, model_bytes=int(mb * 1e6))


def test_steps_alone_then_stacked_then_peers() -> None:
    names = [c.name for c in CASE_STUDY_CONFIGS]
    assert names[0] == BASELINE and names.index("pruning alone") < names.index("pruning + int8") < names.index(STACKED)
    assert [c.backend for c in CASE_STUDY_CONFIGS][-2:] == ["onnxruntime", "onnxruntime"]
    assert all(c.min_cosine == 0.0 for c in CASE_STUDY_CONFIGS)  # every step is timed; the verdict judges quality


def test_verdicts_judge_the_stacked_row_and_the_fastest_that_keeps_quality() -> None:
    rows = [_row(BASELINE, 100.0, 80.0, 1.0), _row(STACKED, 20.0, 8.0, 0.5), _row("int8 alone", 40.0, 20.0, 0.99),
            _row("ORT int8 dynamic", 30.0, 20.0, 0.9, "onnxruntime")]
    stacked, best = verdicts(rows)
    assert "10.0x smaller (target 8x: met)" in stacked and "5.00x faster (target 4x: met)" in stacked
    assert "cosine 0.5000 (target 0.98: missed)" in stacked and "vs 20 ms: faster" in stacked
    assert "(int8 alone)" in best and "4.0x smaller (target 8x: missed)" in best and "vs 40 ms: slower" in best
    assert verdicts([_row(BASELINE, 0.0, 1.0, 1.0)]) == ["m: the baseline failed; no verdict"]
