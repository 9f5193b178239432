"""Property: every built-in pass, alone and in the default pipeline, preserves meaning."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from tensorsmith.backends import reference
from tensorsmith.ir import parse, verify
from tensorsmith.passes import DEFAULT_CLEANUP, NumericCheck, PassContext, run_pipeline
from tensorsmith.passes.builtin import BUILTIN_PASSES

from ..strategies import random_graphs

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _outputs(g, inputs):  # type: ignore[no-untyped-def]
    out = reference.run(g, inputs)
    return [out[v.name] for v in g.outputs]


@pytest.mark.parametrize("pipeline", [*BUILTIN_PASSES, DEFAULT_CLEANUP])
@SETTINGS
@given(case=random_graphs(dead_branches=True))
def test_pass_preserves_reference_outputs(pipeline: str, case) -> None:  # type: ignore[no-untyped-def]
    g, inputs = case
    before = _outputs(g, inputs)
    check = NumericCheck(inputs)
    out = run_pipeline(g, pipeline, ctx=PassContext(instruments=[check]))
    verify(out, allow_dead="dce" not in pipeline)
    after = _outputs(out, inputs)
    exact = all(p not in pipeline for p in ("fold-batchnorm",))
    for a, b in zip(before, after):
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


@SETTINGS
@given(case=random_graphs())
def test_cleanup_result_round_trips_through_text(case) -> None:  # type: ignore[no-untyped-def]
    g, inputs = case
    out = run_pipeline(g, DEFAULT_CLEANUP)
    again = parse(out.to_text())
    assert again.to_text() == out.to_text()
    for a, b in zip(_outputs(out, inputs), _outputs(again, inputs)):
        np.testing.assert_array_equal(a, b)
