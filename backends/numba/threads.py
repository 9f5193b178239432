"""Numba's thread pool as tensorsmith starts it: OpenMP waits that stop spinning soon after a run.

With the OpenMP threading layer (GNU libgomp), idle workers spin for GOMP_SPINCOUNT iterations before
they sleep: 300,000 by default, about 4-8 ms of a core burnt after every parallel region (measured on
this project's 2-core machine), which is a core taken from the rest of the process (numpy's BLAS
threads) and from other processes. `start_pool()` starts Numba's threads with GOMP_SPINCOUNT=30,000
(libgomp's own value for an oversubscribed machine: still spinning across the gap between two
kernels of one run, asleep within about half a millisecond after it), unless the user set
OMP_WAIT_POLICY or GOMP_SPINCOUNT. libgomp reads them once, when it is loaded, so the environment is
set only around that load and restored right after: processes started later inherit nothing.

`pool_thread_ids()` asks each worker of the pool for its operating-system thread id once (a parallel
kernel calling libc's gettid): the run-time probe of free CPUs (runtime/cpu_load.py) must not count this
pool's workers, still spinning a moment after a kernel, as other tasks, while numpy's BLAS workers in the
same process do compete for the cores.
"""

from __future__ import annotations

import ctypes
import os
import threading

import numba
import numpy as np
from numba.core import types

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



def _has_gettid() -> bool:
    """Whether libc exports gettid (glibc 2.30 and later), which the worker query calls by name."""
    try:
        ctypes.CDLL(None).gettid  # noqa: B018 - the lookup is the test
    except (AttributeError, OSError):
        return False
    return True


_GETTID = types.ExternalFunction("gettid", types.int32())
"""libc's gettid as a function Numba links by name (so the kernel that calls it can be cached)."""
_POOL_TIDS: list[frozenset[int]] = []


def _ask_workers(out: np.ndarray) -> None:  # pragma: no cover - compiled below when libc has gettid
    for _ in numba.prange(out.shape[0] * 64):
        out[numba.get_thread_id()] = _GETTID()


def pool_thread_ids() -> frozenset[int]:
    """OS thread ids of Numba's pool workers other than the calling thread (asked once per process; empty
    where libc has no gettid)."""
    if _POOL_TIDS:
        return _POOL_TIDS[0]
    if not _has_gettid():
        _POOL_TIDS.append(frozenset())
        return _POOL_TIDS[0]
    start_pool()
    kernel = numba.njit(parallel=True, cache=True)(_ask_workers)
    before = numba.get_num_threads()
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    try:
        out = np.zeros(numba.config.NUMBA_NUM_THREADS, np.int64)
        kernel(out)
    finally:
        numba.set_num_threads(before)
    _POOL_TIDS.append(frozenset(int(t) for t in out if t > 0) - {threading.get_native_id()})
    return _POOL_TIDS[0]
