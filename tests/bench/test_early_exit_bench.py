"""The early-exit benchmark's timing: every executable timed in turn on each batch, medians summed per input."""

from __future__ import annotations

import numpy as np
from tensorsmith.bench.early_exit import Compiled, batches_of, time_interleaved


class Recorder:
    """An executable stand-in that records the order of its runs in a shared log."""

    def __init__(self, name: str, log: list[tuple[str, int]]) -> None:
        self.name, self.log = name, log

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Record (name, first input value) and return nothing of interest."""
        self.log.append((self.name, int(feed["x"][0, 0])))
        return {}


def test_batches_wrap_around_to_fill_the_last_batch() -> None:
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    parts = batches_of(x, 2)
    assert [p.shape for p in parts] == [(2, 2)] * 3
    assert parts[2][1].tolist() == x[0].tolist()


def test_runs_interleave_per_batch_and_every_run_gets_a_time() -> None:
    log: list[tuple[str, int]] = []
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    runs = [Compiled(None, Recorder(name, log), batches_of(x, 2), np.zeros(0), [], 0.0)  # type: ignore[arg-type]
            for name in ("plain", "exits")]
    time_interleaved(runs, repeats=3)
    # per batch: a warm-up round and three timed rounds, each running plain then exits
    assert log == [(name, first) for first in (0, 4) for _ in range(4) for name in ("plain", "exits")]
    assert all(r.per_input_s > 0 for r in runs)
