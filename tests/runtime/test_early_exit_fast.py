"""The fast paths of early exit on Numba: compiled criteria, and runs where no row or every row fires (batch 1).

Compared with the reference backend: `taken` exactly, outputs within TOL (the kernels sum in another order).
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.backends.numba.k_exits import FIRE_KERNELS
from tensorsmith.backends.reference.exits import CRITERION_RULES, row_softmax
from tensorsmith.ir import Graph, GraphBuilder, f32
from tensorsmith.runtime import numba_exits
from tensorsmith.runtime.numba_exec import NumbaExecutable

from tests.ir.sample_exits import exit_mlp

NEVER = ("entropy", 0.0, 1)
ALWAYS = ("max-prob", 0.0, 1)
TOL = 1e-5
BOUNDARY_ULPS = 8
"""A score within this many units in the last place of a threshold may fire on one backend only: numpy and LLVM
take exp and log from different math libraries (docs/early-exit.md)."""
SCORE_TYPES = {"max-prob": np.float32, "entropy": np.float64, "margin": np.float64}
"""The type each criterion compares its score with its threshold in."""


def scores(criterion: str, head: np.ndarray) -> np.ndarray:
    """The reference's per-row score that the criterion compares with its threshold."""
    p = row_softmax(head)
    if criterion == "max-prob":
        return p.max(axis=1).astype(np.float64)
    if criterion == "margin":
        q = np.sort(p, axis=1)
        return q[:, -1].astype(np.float64) - q[:, -2]
    p64 = p.astype(np.float64)
    return -(p64 * np.log(np.where(p64 > 0, p64, 1.0))).sum(axis=1)


@pytest.mark.parametrize("criterion", sorted(FIRE_KERNELS))
@pytest.mark.parametrize("width", [2, 3, 7, 8, 10, 17, 128, 129, 300, 1000])
@pytest.mark.parametrize("scale", [0.1, 3.0, 30.0])
def test_compiled_criteria_fire_on_the_reference_rows(criterion: str, width: int, scale: float) -> None:
    rng = np.random.default_rng(width)
    head = (rng.standard_normal((257, width)) * scale).astype(np.float32)
    s = scores(criterion, head)
    distinct = np.unique(s)  # thresholds among the scores, not at a value many saturated rows share
    for threshold in (float(distinct[len(distinct) // 2]), float(distinct[len(distinct) // 5])):
        got = np.empty(len(head), np.bool_)
        FIRE_KERNELS[criterion](head, threshold, got)
        want = CRITERION_RULES[criterion](head, [], threshold, 1)
        boundary = np.abs(s - threshold) <= BOUNDARY_ULPS * np.spacing(SCORE_TYPES[criterion](abs(threshold)))
        assert_array_equal(got[~boundary], want[~boundary])
        assert boundary.sum() <= len(s) // 10, boundary.sum()  # left out: the rows at the threshold, few


@pytest.mark.parametrize("criterion", sorted(FIRE_KERNELS))
def test_compiled_criteria_read_heads_of_any_rank(criterion: str) -> None:
    head = np.random.default_rng(1).standard_normal((5, 2, 3)).astype(np.float32)
    got = np.empty(5, np.bool_)
    FIRE_KERNELS[criterion](head, 0.3, got)
    assert_array_equal(got, CRITERION_RULES[criterion](head, [], 0.3, 1))


def _x(batch: int, seed: int = 0, scale: float = 1.0) -> dict[str, np.ndarray]:
    return {"x": (np.random.default_rng(seed).standard_normal((batch, 8)) * scale).astype(np.float32)}


def _check(g: Graph, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run on Numba, compare with the reference, return the Numba outputs."""
    out, want = runtime.compile(g, backend="numba").run(x), reference.run(g, x)
    assert out.keys() == want.keys()
    for k in out:
        if out[k].dtype.kind in "iub":
            assert_array_equal(out[k], want[k])
        else:
            assert_allclose(out[k], want[k], rtol=TOL, atol=TOL)
    return out


def _count(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[int]]:
    """Segment runs (graph names) and compactions made by the Numba early-exit runtime from now on."""
    runs: list[str] = []
    compactions: list[int] = []
    run, compact = NumbaExecutable.run_checked, numba_exits.compact

    def counted_run(self: NumbaExecutable, arrays: list) -> list:
        runs.append(self.graph.name)
        return run(self, arrays)

    def counted_compact(a: np.ndarray, kept: np.ndarray, rows: int, m: int, out: np.ndarray) -> np.ndarray:
        compactions.append(len(kept))
        return compact(a, kept, rows, m, out)

    monkeypatch.setattr(NumbaExecutable, "run_checked", counted_run)
    monkeypatch.setattr(numba_exits, "compact", counted_compact)
    return runs, compactions


@pytest.mark.parametrize("batch", [1, 16])
def test_every_row_firing_at_exit_0_runs_segment_0_only(batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    g, x = exit_mlp(batch, (ALWAYS, ALWAYS)), _x(batch, seed=3)
    exe = runtime.compile(g, backend="numba")
    runs, compactions = _count(monkeypatch)
    out = exe.run(x)
    assert_array_equal(out["y.1"], np.zeros(batch, np.int32))
    assert_allclose(out["y"], reference.run(g, x)["y"], rtol=TOL, atol=TOL)
    assert len(runs) == 1 and not compactions
    assert exe.stats["exits"]["last"] == [batch, 0, 0]


@pytest.mark.parametrize("batch", [1, 16])
def test_no_row_firing_runs_every_segment_on_the_whole_batch(batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    g, x = exit_mlp(batch, (NEVER, NEVER)), _x(batch, seed=4)
    exe = runtime.compile(g, backend="numba")
    runs, compactions = _count(monkeypatch)
    out = exe.run(x)
    plain = runtime.compile(exit_mlp(batch, exits=False), backend="numba").run(x)["final"]
    assert_array_equal(out["y"], plain)  # the same kernels on the same rows
    assert_array_equal(out["y.1"], np.full(batch, 2))
    assert len(runs) == 3 and not runs[1].endswith(".rows1") and not compactions
    _check(g, x)


def test_batch_1_leaving_at_exit_1() -> None:
    out = _check(exit_mlp(1, (NEVER, ALWAYS)), _x(1, seed=5))
    assert out["y.1"].tolist() == [1]


@pytest.mark.parametrize("seed", range(12))
def test_batch_1_with_mixed_criteria_equals_the_reference(seed: int) -> None:
    crit = [("max-prob", 0.8, 1), ("margin", 0.5, 1), ("entropy", 0.6, 1)][seed % 3]
    _check(exit_mlp(1, (crit, ("patience", 0.0, 2))), _x(1, seed=seed, scale=2.0))


def test_every_row_left_firing_after_a_compaction(monkeypatch: pytest.MonkeyPatch) -> None:
    g, x = exit_mlp(16, (("max-prob", 0.7, 1), ALWAYS)), _x(16, seed=4, scale=2.0)
    exe = runtime.compile(g, backend="numba")
    runs, compactions = _count(monkeypatch)
    out = exe.run(x)
    left = exe.stats["exits"]["last"]
    assert 0 < left[0] < 16 and left[1] == 16 - left[0] and left[2] == 0
    assert len(runs) == 2 and len(compactions) >= 1
    assert_array_equal(out["y.1"], reference.run(g, x)["y.1"])
    _check(g, x)


def softmax_after_select(batch: int, threshold: float) -> Graph:
    """exit-mlp's first exit, then exit_select and a softmax: a segment after exit_select on the whole batch."""
    rng = np.random.default_rng(0)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 2 / np.sqrt(shape[-1])).astype(np.float32)

    b = GraphBuilder("exit-softmax")
    x = b.input("x", f32[batch, 8])
    h1 = b.relu(b.linear(x, w(16, 8), w(16), name="fc1"), name="act1")
    head0 = b.linear(h1, w(3, 16), w(3), name="head0")
    fire0 = b.exit(head0, criterion="max-prob", threshold=threshold, name="fire0")
    h2 = b.relu(b.linear(h1, w(16, 16), w(16), name="fc2"), name="act2")
    final = b.linear(h2, w(3, 16), w(3), name="final")
    out, taken = b.exit_select(final, [(head0, fire0)], name="y")
    b.output(b.softmax(out, axis=-1, name="probs"), taken)
    return b.build()


@pytest.mark.parametrize("batch,threshold", [(1, 0.0), (1, 1.0), (8, 0.0), (8, 1.0), (8, 0.6)])
def test_the_segment_after_exit_select_sees_every_row(batch: int, threshold: float) -> None:
    out = _check(softmax_after_select(batch, threshold), _x(batch, seed=6, scale=2.0))
    assert_allclose(out["probs"].sum(axis=1), 1.0, rtol=1e-6)
