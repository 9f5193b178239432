"""How many CPUs a run could use right now: a cheap probe of the machine's runnable tasks.

Parallel work pays only when every thread of the pool gets a core at once: a worker that waits behind
another process's time slice stalls the whole kernel for a scheduler tick (4-8 ms, against kernels
of microseconds). The probe reads the kernel's count of runnable tasks (the 4th field of
/proc/loadavg, which counts the probing thread itself) at most once per PROBE_INTERVAL_S, takes away
the running workers of the kernels' own thread pool (registered by the runtime: they still spin for a
moment after a parallel kernel, and counted as other tasks they made the next run halve its threads,
in about half the runs of a model on 2 cores), and says how many of this process's CPUs no other task
wants. Other threads of the process, numpy's BLAS workers spinning after a product among them, do
count: they compete for the cores. Where the files are missing (not Linux) every allowed CPU counts as
free.
"""

from __future__ import annotations

import os
import time

LOADAVG = "/proc/loadavg"
PROBE_INTERVAL_S = 0.02
"""A reading is reused for this long: a probe costs a few microseconds, a run of a small model tens."""
BUSY_PROBE_INTERVAL_S = 0.002
"""A reading that found a CPU taken is reused for at most this long: on an idle 2-core machine about 0.7% of
readings (1 ms apart over 5 s) catch some other task runnable for 1-5 ms, and each such reading, reused for
PROBE_INTERVAL_S, put the runs of the next 20 ms on one thread (about 8% of a benchmark's runs)."""

_LAST: dict[str, float] = {"at": -1.0, "free": 0.0, "cpus": 0.0}
"""The last reading: when, the free CPUs it found, and the CPUs allowed then."""


def allowed_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def runnable_tasks() -> int | None:
    """Tasks runnable on the machine now, the caller included (None where the OS does not say)."""
    try:
        with open(LOADAVG, "rb") as f:
            return int(f.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return None


TASKS = "/proc/self/task"
POOL_THREADS: set[int] = set()
"""OS thread ids of the kernels' own thread pool (not the calling thread), as `register_pool_threads` got them."""


def register_pool_threads(tids: frozenset[int] | set[int]) -> None:
    """Tell the probe which threads of this process are the kernels' pool workers."""
    POOL_THREADS.update(tids)


def pool_threads_running() -> int:
    """Registered pool workers in the running state now (0 where the OS does not say)."""
    count = 0
    for tid in POOL_THREADS:
        try:
            with open(f"{TASKS}/{tid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        count += state == b"R"
    return count


def free_cpus(max_age_s: float = PROBE_INTERVAL_S) -> int:
    """CPUs not taken by other runnable tasks (the calling thread's own CPU counts as free); at least 1.

    A reading younger than `max_age_s` is reused (0 reads the machine now), one that found a CPU taken for at
    most BUSY_PROBE_INTERVAL_S: a moment's other task then costs a few runs their threads, not 20 ms of them.
    """
    now = time.monotonic()
    age = max_age_s if _LAST["free"] >= _LAST["cpus"] else min(max_age_s, BUSY_PROBE_INTERVAL_S)
    if age > 0 and now - _LAST["at"] < age:
        return int(_LAST["free"])
    cpus = allowed_cpus()
    running = runnable_tasks()
    others = None if running is None else running - 1 - pool_threads_running()
    free = cpus if others is None else max(1, min(cpus, cpus - others))
    _LAST["at"], _LAST["free"], _LAST["cpus"] = now, free, cpus
    return free
