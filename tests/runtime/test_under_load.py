"""Behaviour under load: importing tensorsmith changes nothing in the process; runs size their threads to the free
CPUs and hold BLAS libraries at one thread only around their own calls, restoring them after."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace

import numba
import numpy as np
import pytest
from tensorsmith import runtime
from tensorsmith.backends.blas_threads import NUMPY_BLAS
from tensorsmith.bench.models import load_model
from tensorsmith.runtime import cpu_load, numba_exec, reference_exec

IMPORT_PROBE = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    from threadpoolctl import threadpool_info

    def state():
        return {"blas": sorted((i["filepath"], i["num_threads"]) for i in threadpool_info()),
                "threads": len(os.listdir("/proc/self/task")), "env": dict(os.environ)}

    before = state()
    import tensorsmith, tensorsmith.runtime, tensorsmith.passes, tensorsmith.backends.reference
    import tensorsmith.runtime.numba_exec, tensorsmith.backends.numba, tensorsmith.backends.cost
    after = state()
    print(json.dumps({"before": before, "after": after}))
""")


def test_importing_tensorsmith_loads_no_blas_starts_no_thread_and_sets_nothing() -> None:
    """No second BLAS library (scipy's brings a thread pool), no thread count or environment variable changed."""
    proc = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["after"]["blas"] == seen["before"]["blas"]
    assert seen["after"]["threads"] == seen["before"]["threads"]
    assert seen["after"]["env"] == seen["before"]["env"]


def test_compiling_for_numba_leaves_the_environment_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    model = load_model("mlp")
    exe = runtime.compile(model.graph, backend="numba")
    assert "GOMP_SPINCOUNT" not in __import__("os").environ
    assert exe.stats["threading_layer"] == numba.threading_layer()


def _fake_tasks(folder: Path, states: dict[int, str]) -> None:
    """A /proc/self/task look-alike: one thread per id, in state R (running) or S (sleeping)."""
    for tid, state in states.items():
        (folder / str(tid)).mkdir(parents=True)
        (folder / str(tid) / "stat").write_text(f"{tid} (python3 (worker)) {state} 1 2 3 4\n")


def test_free_cpus_counts_the_other_runnable_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpus = cpu_load.allowed_cpus()
    fake = tmp_path / "loadavg"
    monkeypatch.setattr(cpu_load, "LOADAVG", str(fake))
    _fake_tasks(tmp_path / "tasks", {100: "R", 101: "S", 102: "S"})  # the caller runs, two pool workers sleep
    monkeypatch.setattr(cpu_load, "TASKS", str(tmp_path / "tasks"))
    monkeypatch.setattr(cpu_load, "POOL_THREADS", {101, 102})
    fake.write_text("0.50 0.40 0.30 1/120 4242\n")  # only the caller runs
    assert cpu_load.free_cpus(0) == cpus
    fake.write_text(f"3.00 2.00 1.00 {cpus + 5}/300 4242\n")  # more runnable tasks than CPUs
    assert cpu_load.free_cpus(0) == 1
    fake.write_text("1.00 1.00 1.00 2/300 4242\n")  # one other task
    assert cpu_load.free_cpus(0) == max(1, cpus - 1)
    assert cpu_load.free_cpus() == max(1, cpus - 1)  # a fresh reading is reused
    fake.unlink()
    assert cpu_load.free_cpus(0) == cpus  # no probe: the machine counts as free


def test_a_busy_reading_is_read_again_sooner_than_a_free_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another task runnable for a moment costs the runs of BUSY_PROBE_INTERVAL_S their threads, not of
    PROBE_INTERVAL_S; a free reading is kept for PROBE_INTERVAL_S."""
    cpus = cpu_load.allowed_cpus()
    fake = tmp_path / "loadavg"
    monkeypatch.setattr(cpu_load, "LOADAVG", str(fake))
    monkeypatch.setattr(cpu_load, "TASKS", str(tmp_path / "missing"))
    clock = [100.0]
    monkeypatch.setattr(cpu_load, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    busy, idle = f"3.00 2.00 1.00 {cpus + 5}/300 4242\n", "0.50 0.40 0.30 1/120 4242\n"
    fake.write_text(busy)
    assert cpu_load.free_cpus(0) == 1
    fake.write_text(idle)
    clock[0] += cpu_load.BUSY_PROBE_INTERVAL_S / 2
    assert cpu_load.free_cpus() == 1  # still fresh
    clock[0] += cpu_load.BUSY_PROBE_INTERVAL_S
    assert cpu_load.free_cpus() == cpus  # read again, long before PROBE_INTERVAL_S
    fake.write_text(busy)
    clock[0] += cpu_load.PROBE_INTERVAL_S / 2
    assert cpu_load.free_cpus() == cpus  # a free reading is kept
    clock[0] += cpu_load.PROBE_INTERVAL_S
    assert cpu_load.free_cpus() == 1


def test_free_cpus_leaves_the_pool_own_running_workers_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A parallel kernel's workers still spin a moment after it: runnable, but the pool's own, so not another
    task; any other running thread of the process (numpy's BLAS workers) still counts."""
    cpus = cpu_load.allowed_cpus()
    fake = tmp_path / "loadavg"
    fake.write_text("1.00 1.00 1.00 3/300 4242\n")
    monkeypatch.setattr(cpu_load, "LOADAVG", str(fake))
    _fake_tasks(tmp_path / "tasks", {100: "R", 101: "R", 102: "R", 103: "S"})
    monkeypatch.setattr(cpu_load, "TASKS", str(tmp_path / "tasks"))
    monkeypatch.setattr(cpu_load, "POOL_THREADS", {101, 102, 103})  # the caller and two spinning workers
    assert cpu_load.pool_threads_running() == 2
    assert cpu_load.free_cpus(0) == cpus
    monkeypatch.setattr(cpu_load, "POOL_THREADS", {101})  # 102 runs but is not the pool's: a BLAS worker
    assert cpu_load.free_cpus(0) == max(1, cpus - 1)
    monkeypatch.setattr(cpu_load, "TASKS", str(tmp_path / "missing"))
    assert cpu_load.pool_threads_running() == 0
    assert cpu_load.free_cpus(0) == max(1, cpus - 2)  # no task list: only the caller is taken away


def test_the_pool_workers_are_found_and_registered_by_a_parallel_plan() -> None:
    from tensorsmith.backends.numba.threads import pool_thread_ids

    model = load_model("cnn")
    runtime.compile(model.graph, backend="numba")
    tids = pool_thread_ids()
    assert threading.get_native_id() not in tids
    assert len(tids) <= numba.config.NUMBA_NUM_THREADS - 1
    if numba.config.NUMBA_NUM_THREADS > 1 and any(s.kernel.endswith("[par]") for s in
                                                   runtime.compile(model.graph, backend="numba").plan.steps):
        assert tids and tids <= cpu_load.POOL_THREADS
        assert all(str(t) in __import__("os").listdir("/proc/self/task") for t in tids)


def test_numpy_blas_hold_sets_one_thread_and_gives_back_the_count_with_holds_from_several_threads() -> None:
    """The main thread's hold runs at one thread while 4 other threads hold and release around it; when all
    holds end every thread sees the count the process had (OpenBLAS 0.3.30/0.3.31 ignore a count set from
    another thread once the main thread set one, so those threads' own view is not asserted)."""
    libs = NUMPY_BLAS.controllers()
    if not libs:
        pytest.skip("threadpoolctl cannot control numpy's BLAS here")
    before = [lib.num_threads for lib in libs]
    if max(before) == 1:
        pytest.skip("numpy's BLAS runs one thread already")
    inside, leave = threading.Barrier(5), threading.Barrier(5)
    after: list[list[int]] = []

    def hold() -> None:
        with NUMPY_BLAS.single_threaded():
            with NUMPY_BLAS.single_threaded():
                inside.wait(timeout=30)
            leave.wait(timeout=30)

    threads = [threading.Thread(target=hold) for _ in range(4)]
    with NUMPY_BLAS.single_threaded():
        for t in threads:
            t.start()
        inside.wait(timeout=30)
        with NUMPY_BLAS.single_threaded():
            assert [lib.num_threads for lib in libs] == [1] * len(libs)
        leave.wait(timeout=30)
        for t in threads:
            t.join(timeout=60)
        assert [lib.num_threads for lib in libs] == [1] * len(libs)  # the others ended; this hold still runs at one
    probe = threading.Thread(target=lambda: after.append([lib.num_threads for lib in libs]))
    probe.start()
    probe.join(timeout=30)
    assert after == [before]
    assert [lib.num_threads for lib in libs] == before


@pytest.mark.parametrize("free", [1, 64])
def test_a_numba_run_uses_no_more_threads_than_free_cpus_and_restores_the_count(
        free: int, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_model("cnn")
    exe = runtime.compile(model.graph, backend="numba")
    assert exe.stats["parallel_kernels"] > 0
    want = exe.run(model.inputs)
    limit = numba.get_num_threads()
    calls: list[int] = []
    real = numba.set_num_threads

    def record(n: int) -> None:
        calls.append(n)
        real(n)

    monkeypatch.setattr(numba_exec, "free_cpus", lambda: free)
    monkeypatch.setattr(numba, "set_num_threads", record)
    got = exe.run(model.inputs)
    assert numba.get_num_threads() == limit
    if free < limit:
        assert calls == [free, limit]
    else:
        assert calls == []
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.parametrize("name, small", [("mlp", True), ("bert-base-layer", False)])
def test_the_reference_backend_holds_numpy_blas_at_one_thread_for_small_graphs_or_busy_cpus(
        name: str, small: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not NUMPY_BLAS.controlled():
        pytest.skip("threadpoolctl cannot control numpy's BLAS here")
    exe = runtime.compile(load_model(name).graph, backend="reference")
    libs = NUMPY_BLAS.controllers()
    before = [lib.num_threads for lib in libs]
    if max(before) == 1:
        pytest.skip("numpy's BLAS runs one thread already")
    for free, held in ((64, small), (1, True)):
        monkeypatch.setattr(reference_exec, "free_cpus", lambda free=free: free)
        with exe.blas_hold():
            inside = [lib.num_threads for lib in libs]
        assert (inside == [1] * len(libs)) == held, (free, inside)
        assert [lib.num_threads for lib in libs] == before
