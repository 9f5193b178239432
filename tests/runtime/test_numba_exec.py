"""The Numba Executable: compile/run/profile API, fresh outputs, input checks, arena, threads, on-disk cache."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import tracemalloc

import numba
import numpy as np
import pytest
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.backends.numba import blas
from tensorsmith.ir import Graph, GraphBuilder, InputError, f32
from tensorsmith.ir.regions import make_region
from tensorsmith.runtime.numba_exec import CALL, NumbaExecutable, compiled_entry

RNG = np.random.default_rng(17)


def _chain(n: int = 8, width: int = 256) -> Graph:
    b = GraphBuilder("chain")
    x = b.input("x", f32[64, width])
    h = x
    for i in range(n):
        h = b.relu(b.linear(h, RNG.uniform(-0.1, 0.1, (width, width)).astype(np.float32), name=f"fc{i}"))
        h = b.mul(h, np.float32(1.5), name=f"scale{i}") if i % 2 else b.tanh(h, name=f"t{i}")
    b.output(h)
    return b.build()


def test_compile_returns_a_numba_executable_with_stats() -> None:
    g = _chain()
    exe = runtime.compile(g, backend="numba")
    assert isinstance(exe, NumbaExecutable) and exe.backend == "numba" and exe.compile_seconds > 0
    for key in ("arena_bytes", "naive_bytes", "kernels", "fused", "jit_seconds", "cache_hits", "cache_misses",
                "threads"):
        assert key in exe.stats
    assert 0 < exe.stats["arena_bytes"] < exe.stats["naive_bytes"]
    x = RNG.uniform(-1, 1, (64, 256)).astype(np.float32)
    np.testing.assert_allclose(exe.run({"x": x})[g.outputs[0].name],
                               reference.run(g, {"x": x})[g.outputs[0].name], rtol=1e-4, atol=1e-5)


def test_outputs_are_fresh_arrays_never_views_of_the_arena() -> None:
    b = GraphBuilder("outs")
    x = b.input("x", f32[4, 6])
    h = b.relu(x, name="h")
    t = b.transpose(h, (1, 0), name="t")
    c = b.const(np.arange(3, dtype=np.float32), "c")
    b.output(h, t, x, c, h, b.reshape(b.neg(h), (24,), name="flat"))
    g = b.build()
    exe = NumbaExecutable(g)
    xv = RNG.uniform(-1, 1, (4, 6)).astype(np.float32)
    first = exe.run({"x": xv})
    second = exe.run({"x": xv})
    ref = reference.run(g, {"x": xv})
    for name, arr in first.items():
        np.testing.assert_array_equal(arr, ref[name])
        assert not np.shares_memory(arr, exe._memory) and not np.shares_memory(arr, second[name])
        assert not np.shares_memory(arr, xv)
    first["h"][:] = 7.0
    np.testing.assert_array_equal(second["h"], ref["h"])


def test_bad_inputs_are_reported_and_other_dtypes_or_layouts_are_accepted() -> None:
    g = _chain(2, 32)
    exe = NumbaExecutable(g)
    with pytest.raises(InputError, match="missing input 'x'"):
        exe.run({})
    with pytest.raises(InputError, match=r"shape \[64, 31\]"):
        exe.run({"x": np.zeros((64, 31), np.float32)})
    x64 = RNG.uniform(-1, 1, (32, 64)).T  # float64 and not contiguous
    with pytest.raises(InputError, match=r"input 'x' has dtype float64, expected f32"):
        exe.run({"x": x64})
    np.testing.assert_allclose(exe.run({"x": x64}, cast=True)[g.outputs[0].name],
                               reference.run(g, {"x": x64}, cast=True)[g.outputs[0].name], rtol=1e-4, atol=1e-5)


def test_bound_kernel_calls_skip_type_dispatch_and_stay_exact() -> None:
    """Static steps call the kernel's compiled entry point for their argument types, not the dispatcher."""
    g = _chain(4, 128)
    exe = NumbaExecutable(g)
    calls = [entry[1].func for entry in exe._main.program if entry[0] == CALL]
    assert calls and not any(isinstance(f, numba.core.dispatcher.Dispatcher) for f in calls)
    x = RNG.uniform(-1, 1, (64, 128)).astype(np.float32)
    y = g.outputs[0].name
    np.testing.assert_allclose(exe.run({"x": x})[y], reference.run(g, {"x": x})[y], rtol=1e-5, atol=1e-6)

    add_one = numba.njit(lambda a, out: np.add(a, 1.0, out))
    a, out = np.arange(4.0), np.empty(4)
    compiled_entry(add_one, (a, out))(a, out)
    np.testing.assert_array_equal(out, [1.0, 2.0, 3.0, 4.0])
    assert compiled_entry(print, (a,)) is print  # not a dispatcher: unchanged


def test_binding_compiles_count_as_jit_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entry points resolved while binding (kernel compiles or cache loads) are in jit_seconds, not plan_seconds."""
    from tensorsmith.runtime import numba_exec

    calls = []

    def slow_entry(fn, args):  # type: ignore[no-untyped-def]
        calls.append(fn)
        time.sleep(0.25)
        return numba_exec.compiled_entry.__wrapped__(fn, args)  # type: ignore[attr-defined]

    slow_entry.__wrapped__ = numba_exec.compiled_entry  # type: ignore[attr-defined]
    monkeypatch.setattr(numba_exec, "compiled_entry", slow_entry)
    exe = NumbaExecutable(_chain(4, 64))
    bound = sum(1 for entry in exe._main.program if entry[0] == CALL)  # resolved while binding, the rest on use
    assert bound >= 4 and len(calls) > bound
    assert exe.stats["jit_seconds"] >= 0.25 * len(calls)
    assert exe.stats["plan_seconds"] < 0.25 * bound


def test_run_allocates_only_the_outputs() -> None:
    g = _chain(8, 512)
    exe = NumbaExecutable(g)
    x = RNG.uniform(-1, 1, (64, 512)).astype(np.float32)
    exe.run({"x": x})
    tracemalloc.start()
    exe.run({"x": x})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out_bytes = 64 * 512 * 4
    assert exe.stats["naive_bytes"] > 8 * out_bytes
    assert peak < out_bytes + 64 * 1024, peak


def test_profile_reports_each_kernel_with_fused_node_names() -> None:
    g = _chain(2, 64)
    by_name = {n.name: n for n in g.nodes}
    make_region(g, [by_name["fc0"], g.nodes[g.nodes.index(by_name["fc0"]) + 1]])
    make_region(g, [by_name["fc1"]] + g.nodes[g.nodes.index(by_name["fc1"]) + 1:])
    exe = NumbaExecutable(g)
    prof = exe.profile({"x": np.ones((64, 64), np.float32)}, repeats=3)
    names = [p.name.split("+") for p in prof.nodes]
    assert [len(n) for n in names] == [2, 1, 3]
    assert names[0][0] == "fc0" and names[1] == ["t0"] and names[2][0] == "fc1" and names[2][2] == "scale1"
    assert all(p.kernel and p.bytes > 0 and p.seconds >= 0 for p in prof.nodes)
    assert prof.total_seconds > 0 and "+".join(names[0]) in prof.table()


def test_thread_count_follows_numba_and_blas_threads_are_restored() -> None:
    g = _chain(2, 256)
    x = RNG.uniform(-1, 1, (64, 256)).astype(np.float32)
    want = reference.run(g, {"x": x})[g.outputs[0].name]
    before = [lib.num_threads for lib in blas.SCIPY_BLAS.controllers()]
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        exe = NumbaExecutable(g, parallel_threshold=0)
        assert exe.stats["threads"] == 1
        np.testing.assert_allclose(exe.run({"x": x})[g.outputs[0].name], want, rtol=1e-4, atol=1e-5)
    finally:
        numba.set_num_threads(saved)
    exe = NumbaExecutable(g, parallel_threshold=0)
    np.testing.assert_allclose(exe.run({"x": x})[g.outputs[0].name], want, rtol=1e-4, atol=1e-5)
    assert [lib.num_threads for lib in blas.SCIPY_BLAS.controllers()] == before


SCRIPT = textwrap.dedent("""
    import json, numpy as np
    from tensorsmith.ir import GraphBuilder, f32
    from tensorsmith.runtime.numba_exec import NumbaExecutable
    rng = np.random.default_rng(0)
    b = GraphBuilder("cached")
    x = b.input("x", f32[8, 16])
    h = b.gelu(b.linear(x, rng.standard_normal((32, 16)).astype(np.float32), np.zeros(32, np.float32)))
    h = b.softmax(b.add(b.linear(h, rng.standard_normal((16, 32)).astype(np.float32)), x))
    b.output(b.layernorm(h, np.ones(16, np.float32), np.zeros(16, np.float32)))
    exe = NumbaExecutable(b.build())
    print(json.dumps({"hits": exe.stats["cache_hits"], "misses": exe.stats["cache_misses"]}))
""")


def test_a_second_process_loads_every_kernel_from_the_disk_cache() -> None:
    first = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    stats = json.loads(second.stdout.strip().splitlines()[-1])
    assert stats["misses"] == 0 and stats["hits"] > 0, stats


def test_runs_from_several_threads_at_once_give_each_its_own_result() -> None:
    """Each thread runs in an arena of its own: concurrent runs never overwrite each other's buffers."""
    from concurrent.futures import ThreadPoolExecutor

    from tensorsmith import runtime
    from tensorsmith.bench.models import load_model

    model = load_model("transformer-block")
    exe = runtime.compile(model.graph, backend="numba")
    rng = np.random.default_rng(5)
    feeds = [{k: (rng.standard_normal(v.shape) * (i + 1)).astype(v.dtype) for k, v in model.inputs.items()}
             for i in range(4)]
    want = [exe.run(f) for f in feeds]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            got = list(pool.map(lambda f: exe.run(f), feeds * 3))
            for i, g in enumerate(got):
                for k in g:
                    np.testing.assert_array_equal(g[k], want[i % 4][k])
