"""The early-exit counters an Executable keeps in `stats` (the same keys on every backend)."""

from __future__ import annotations

import threading
from typing import Any

EXITS_KEY = "exits"
"""stats[EXITS_KEY] = {"last": [rows that left at exit 0, ..., exit n-1, rows that ran to the end], "total": same,
summed over every run}."""
NODES_RUN_KEY = "nodes_run"
"""stats[NODES_RUN_KEY] = {"last": nodes (Numba: kernel steps) that ran in the last run, "total": summed}."""


class ExitCounters:
    """Updates the early-exit counters of a stats dict; safe when runs finish on several threads at once."""

    def __init__(self, stats: dict[str, Any], exits: int) -> None:
        self.stats = stats
        self._lock = threading.Lock()
        self._exits = stats[EXITS_KEY] = {"last": [0] * (exits + 1), "total": [0] * (exits + 1)}
        self._nodes = stats[NODES_RUN_KEY] = {"last": 0, "total": 0}

    def record(self, left: list[int], nodes_run: int) -> None:
        """Add one run: rows that left at each exit (and ran to the end), and nodes that ran. `left` is kept as
        stats' "last" list, not copied: the caller hands over a list of its own."""
        with self._lock:
            ex, nr = self._exits, self._nodes
            ex["last"] = left
            total = ex["total"]
            for i, count in enumerate(left):
                total[i] += count
            nr["last"] = nodes_run
            nr["total"] += nodes_run
