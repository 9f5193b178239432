"""Concurrency: runs from 8 threads agree with serial runs on both backends; spawned processes share nothing
by accident (each compiles and runs on its own, the region kernel cache stays whole when written at once)."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import numpy as np
import pytest
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.bench.models import load_model

from .concurrency_worker import compile_and_run, region_graph

THREADS = 8
ITERATIONS = 6
MODELS = ("mlp", "cnn", "transformer-block")
TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}
"""Numba against the reference backend: float sums reassociated by tiling and vector lanes."""


def _feeds(model_inputs: dict[str, np.ndarray], count: int) -> list[dict[str, np.ndarray]]:
    """`count` distinct input sets shaped like the model's sample batch."""
    rng = np.random.default_rng(11)
    return [{k: (rng.standard_normal(v.shape) * (1 + i % 3)).astype(v.dtype) for k, v in model_inputs.items()}
            for i in range(count)]


BLAS_ROUNDING = 1e-5
"""The reference backend's products are numpy's (OpenBLAS), whose thread count is one process-wide setting: runs
from other threads may use another count than the serial runs, and OpenBLAS's kernels on AMD Zen round some
shapes differently with one and two threads (about 1e-7 relative). A shared buffer would give errors of the
outputs' own size."""


def _hammer(run, feeds: list[dict[str, np.ndarray]]) -> list[list[dict[str, np.ndarray]]]:  # type: ignore[no-untyped-def]
    """Run `run` from THREADS threads started together, ITERATIONS times each, thread t on feeds t, t+1, ..."""
    results: list[list[dict[str, np.ndarray]]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(t: int) -> None:
        try:
            start.wait(timeout=60)
            for i in range(ITERATIONS):
                results[t].append(run(feeds[(t + i) % len(feeds)]))
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=600)
    assert not any(th.is_alive() for th in threads), "a worker thread did not finish"
    assert not errors, f"{len(errors)} thread(s) failed, first: {errors[0]!r}"
    return results


@pytest.mark.parametrize("backend", ["numba", "reference"])
@pytest.mark.parametrize("name", MODELS)
def test_eight_threads_give_the_serial_result_of_every_run(name: str, backend: str) -> None:
    model = load_model(name)
    exe = runtime.compile(model.graph, backend=backend)
    feeds = _feeds(model.inputs, THREADS + 3)
    serial = [exe.run(f) for f in feeds]
    results = _hammer(exe.run, feeds)
    for t, runs in enumerate(results):
        assert len(runs) == ITERATIONS
        for i, got in enumerate(runs):
            want = serial[(t + i) % len(feeds)]
            assert got.keys() == want.keys()
            for k in want:
                msg = f"{name} on {backend}: thread {t}, run {i}"
                if backend == "numba":
                    np.testing.assert_array_equal(got[k], want[k], err_msg=msg)
                else:  # numpy's BLAS: see BLAS_ROUNDING
                    np.testing.assert_allclose(got[k], want[k], rtol=BLAS_ROUNDING, atol=BLAS_ROUNDING, err_msg=msg)
    if backend == "numba":  # and the serial runs themselves are the reference semantics
        for f, got in zip(feeds[:2], serial[:2]):
            want = reference.run(model.graph, f)
            for k in want:
                np.testing.assert_allclose(got[k], want[k], **TOLERANCE, err_msg=name)


def test_runs_from_threads_hold_no_output_of_another_thread() -> None:
    """Outputs handed to one thread are its own arrays: a later run in any thread never changes them."""
    model = load_model("mlp")
    exe = runtime.compile(model.graph, backend="numba")
    feeds = _feeds(model.inputs, THREADS)
    results = _hammer(exe.run, feeds)
    firsts = [runs[0] for runs in results]
    copies = [{k: v.copy() for k, v in r.items()} for r in firsts]
    _hammer(exe.run, feeds[::-1])
    for got, kept in zip(firsts, copies):
        for k in kept:
            np.testing.assert_array_equal(got[k], kept[k])
    bases = {id(v.base if v.base is not None else v) for r in firsts for v in r.values()}
    assert len(bases) == len(firsts) * len(firsts[0])


def test_spawned_processes_compile_and_run_apart_and_share_the_region_cache_safely(tmp_path: Path) -> None:
    """Three processes (spawn) write the same generated kernel to one cache folder at once and a fourth uses a
    folder of its own: every result equals the parent's, the shared folder holds one whole module per region."""
    shared, own = tmp_path / "shared", tmp_path / "own"
    ctx = multiprocessing.get_context("spawn")
    jobs = [(str(shared), seed, 3) for seed in (1, 2, 3)] + [(str(own), 4, 3)]
    with ctx.Pool(len(jobs)) as pool:
        results = pool.map(compile_and_run, jobs, chunksize=1)
    assert len({r["pid"] for r in results}) == len(jobs)
    g = region_graph()
    for (folder, seed, _), r in zip(jobs, results):
        assert r["cache"] == folder
        x = np.random.default_rng(seed).standard_normal((16, 64)).astype(np.float32)
        want = reference.run(g, {"x": x})["y"]
        for y in r["y"]:
            np.testing.assert_array_equal(y, r["y"][0])
            np.testing.assert_allclose(y, want, **TOLERANCE)
    shared_files = sorted(p.name for p in shared.iterdir() if p.is_file())
    own_files = sorted(p.name for p in own.iterdir() if p.is_file())
    assert shared_files and shared_files == own_files, (shared_files, own_files)
    assert all(name.endswith(".py") for name in shared_files), shared_files  # no temporary file left behind
    for name in shared_files:
        text = (shared / name).read_text()
        compile(text, name, "exec")  # each module whole: written once, atomically
        assert text == (own / name).read_text()
    numba_cache = sorted(p.suffix for p in (shared / "__pycache__").iterdir())
    assert numba_cache and set(numba_cache) <= {".nbi", ".nbc"}, numba_cache  # Numba's own index and kernels
