"""Numba's thread pool as tensorsmith starts it: OpenMP waits that stop spinning soon after a run.

With the OpenMP threading layer (GNU libgomp), idle workers spin for GOMP_SPINCOUNT iterations before
they sleep: 300,000 by default, about 4-8 ms of a core burnt after every parallel region (measured on
this project's 2-core machine), which is a core taken from the rest of the process (numpy's BLAS
threads) and from other processes. `start_pool()` starts Numba's threads with GOMP_SPINCOUNT=30,000
(libgomp's own value for an oversubscribed machine: still spinning across the gap between two
kernels of one run, asleep within about half a millisecond after it), unless the user set
OMP_WAIT_POLICY or GOMP_SPINCOUNT. libgomp reads them once, when it is loaded, so the environment is
set only around that load and restored right after: processes started later inherit nothing.
"""

from __future__ import annotations

import os

import numba

OPENMP_SPIN = {"GOMP_SPINCOUNT": "30000"}
"""The OpenMP wait set while Numba's pool starts (unless one of USER_OPENMP_SETTINGS is set)."""

USER_OPENMP_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def start_pool() -> str:
    """Start Numba's threads (once per process; later calls only read) and return the threading layer."""
    keep = any(k in os.environ for k in USER_OPENMP_SETTINGS)
    added = {} if keep else {k: v for k, v in OPENMP_SPIN.items() if k not in os.environ}
    os.environ.update(added)
    try:
        numba.get_num_threads()  # launches the threading layer: libgomp reads its environment now
    finally:
        for k in added:
            os.environ.pop(k, None)
    return str(numba.threading_layer())

