"""Golden IR-before/IR-after tests for every built-in pass, with a numeric check of each."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorsmith.ir import graphs_equal, parse
from tensorsmith.passes import NumericCheck, PassContext, parse_pipeline, run_pipeline

from .golden_cases import after_path, calibration_feeds, cases, load_before, random_inputs

CASES = cases()


@pytest.mark.parametrize("pipeline,before", CASES, ids=[f"{p}/{b.name.split('.')[0]}" for p, b in CASES])
def test_golden(pipeline: str, before: Path) -> None:
    g = load_before(before)
    check = NumericCheck(random_inputs(g))
    ctx = PassContext(instruments=[check], calibration=calibration_feeds(g))
    out = run_pipeline(g, pipeline, ctx=ctx)
    expected = after_path(before).read_text()
    assert out.to_text() == expected
    assert graphs_equal(out, parse(expected))
    assert len(check.max_errors) == len(parse_pipeline(pipeline))


def test_every_builtin_pass_has_golden_cases() -> None:
    from tensorsmith.passes import PASSES
    from tensorsmith.passes.builtin import BUILTIN_PASSES

    covered = {p for p, _ in CASES}
    assert set(BUILTIN_PASSES) <= set(PASSES)
    assert set(BUILTIN_PASSES) <= covered, set(BUILTIN_PASSES) - covered
