"""Early exit in both runtimes: rows really stop, results equal the graph's semantics and a loop over single inputs."""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.ir import Graph, GraphBuilder, f32
from tensorsmith.ir.exit_plan import plan_exits, plan_segments
from tensorsmith.ir.exit_rows import RowError
from tensorsmith.ir.exit_sink import sink_post
from tensorsmith.runtime.numba_exec import NumbaExecutable
from tensorsmith.runtime.numba_exits import NumbaExitExecutable, bucket_rows
from tensorsmith.runtime.reference_exec import ReferenceExecutable

from tests.ir.sample_exits import encoder_exits, exit_mlp

BACKENDS = ["reference", "numba"]
NEVER = ("entropy", 0.0, 1)  # entropy 0 needs a softmax exactly one-hot in f32: never with these heads
ALWAYS = ("max-prob", 0.0, 1)
TOL = 1e-5
"""Products on fewer rows may sum in another order (BLAS and the Numba kernels block by the row count; the Numba
kernels also differ from numpy): results then agree within this, relative and absolute. Fire decisions, hence
`taken`, are compared exactly."""
SEGMENT_NODES = (4, 4, 3)  # exit-mlp: fc1 act1 head0 fire0 | fc2 act2 head1 fire1 | fc3 act3 final


def _x(batch: int, seed: int = 0, scale: float = 1.0) -> dict[str, np.ndarray]:
    return {"x": (np.random.default_rng(seed).standard_normal((batch, 8)) * scale).astype(np.float32)}


def _close(got: np.ndarray, want: np.ndarray, exact: bool) -> None:
    """Equal bit for bit when `exact` (the same arithmetic on the same rows), else within TOL."""
    if exact:
        assert_array_equal(got, want)
    else:
        assert_allclose(got, want, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exits_that_never_fire_give_the_model_without_exits(backend: str) -> None:
    x = _x(16)
    exe = runtime.compile(exit_mlp(16, (NEVER, NEVER)), backend=backend)
    plain = runtime.compile(exit_mlp(16, exits=False), backend=backend).run(x)["final"]
    out = exe.run(x)
    assert_array_equal(out["y"], plain)  # the same kernels on the same rows: bit for bit
    assert_array_equal(out["y.1"], np.full(16, 2))
    assert exe.stats["exits"]["last"] == [0, 0, 16]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [0, 1])
def test_exits_that_always_fire_at_k_give_head_k_and_run_nothing_after(backend: str, k: int) -> None:
    x = _x(16, seed=k)
    g = exit_mlp(16, (ALWAYS, ALWAYS) if k == 0 else (NEVER, ALWAYS))
    head = reference.run(g, x, keep=True)[f"head{k}"]
    exe = runtime.compile(g, backend=backend)
    out = exe.run(x)
    _close(out["y"], head, exact=backend == "reference")  # head k on the whole batch, as reference.run has it
    assert_array_equal(out["y.1"], np.full(16, k))
    assert exe.stats["exits"]["last"] == [16 if j == k else 0 for j in range(3)]
    if backend == "reference":
        assert exe.stats["nodes_run"]["last"] == sum(SEGMENT_NODES[: k + 1])
    else:
        assert isinstance(exe, NumbaExitExecutable)
        kernels = [p.get(16).stats["kernels"] for p in exe.segments]
        assert exe.stats["nodes_run"]["last"] == sum(kernels[: k + 1]) < sum(kernels)


def test_reference_runs_only_the_nodes_of_the_rows_left() -> None:
    g = exit_mlp(8, (ALWAYS, NEVER))
    exe = ReferenceExecutable(g)
    assert exe.exits is not None
    _, done = exe.exits.run(_x(8), trace=True)
    assert done.ran == ["fc1", "act1", "head0", "fire0"] and done.left == [8, 0, 0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_random_mix_equals_a_loop_over_single_inputs(backend: str) -> None:
    crit = (("max-prob", 0.8, 1), ("patience", 0.0, 2))
    x = _x(24, seed=3, scale=1.5)
    exe = runtime.compile(exit_mlp(24, crit), backend=backend)
    out = exe.run(x)
    single = runtime.compile(exit_mlp(1, crit), backend=backend)
    for r in range(24):
        one = single.run({"x": x["x"][r : r + 1]})
        assert out["y.1"][r] == one["y.1"][0]
        _close(out["y"][r], one["y"][0], exact=False)
    left = exe.stats["exits"]["last"]
    assert sum(left) == 24 and min(left) > 0  # every path taken by some row
    assert left == np.bincount(out["y.1"], minlength=3).tolist()


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["max-prob", "margin", "entropy"]), st.floats(0.0, 1.0),
       st.sampled_from([("patience", 0.0, 2), ("cosine", 0.5, 1), ("max-prob", 0.7, 1)]), st.integers(1, 12))
def test_reference_stopping_equals_running_every_node(seed: int, c0: str, t0: float, c1: tuple, batch: int) -> None:
    g = exit_mlp(batch, ((c0, t0, 1), c1))
    x = _x(batch, seed=seed, scale=2.0)
    exe = runtime.compile(g, backend="reference")
    got, want = exe.run(x), reference.run(g, x)  # reference.run: every node on every row, exit_select's rule
    assert_array_equal(got["y.1"], want["y.1"])
    _close(got["y"], want["y"], exact=False)
    per_exit = np.bincount(want["y.1"], minlength=3)
    assert exe.stats["exits"]["last"] == per_exit.tolist()
    ran = exe.stats["nodes_run"]["last"]
    reached = [batch, batch - per_exit[0], batch - per_exit[0] - per_exit[1]]
    assert ran == sum(n for n, r in zip(SEGMENT_NODES, reached) if r > 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_64_where_most_rows_exit_early(backend: str) -> None:
    g = exit_mlp(64, (("max-prob", 0.5, 1), ("max-prob", 0.5, 1)))
    x = _x(64, seed=5, scale=3.0)
    exe = runtime.compile(g, backend=backend)
    out = exe.run(x)
    want = reference.run(g, x)
    assert_array_equal(out["y.1"], want["y.1"])
    _close(out["y"], want["y"], exact=False)
    left = exe.stats["exits"]["last"]
    assert left[0] > 32 and sum(left) == 64
    exe.run(x)
    assert exe.stats["exits"]["total"] == [2 * n for n in left]
    assert exe.stats["nodes_run"]["total"] == 2 * exe.stats["nodes_run"]["last"]
    if backend == "numba":
        assert isinstance(exe, NumbaExitExecutable)
        buckets = exe.buckets()
        assert bucket_rows(64 - left[0], 64) in buckets[1] and buckets[0] == [64]


def blocked(batch: int, seed: int = 0) -> Graph:
    """Reshapes that name the batch ([B*4, 4] blocks, live across exit 0) and a layernorm, softmax between."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("blocked")
    x = b.input("x", f32[batch, 8])
    h = b.relu(b.linear(x, rng.standard_normal((16, 8)).astype(np.float32), name="fc1"))
    blocks = b.reshape(h, [batch * 4, 4], name="blocks")  # m = 4 entries per batch row
    t = b.reshape(b.linear(blocks, rng.standard_normal((4, 4)).astype(np.float32)), [batch, 16], name="t")
    head0 = b.linear(b.layernorm(t), rng.standard_normal((3, 16)).astype(np.float32), name="head0")
    f0 = b.exit(head0, threshold=0.8, name="fire0")
    u = b.reshape(b.tanh(b.linear(blocks, rng.standard_normal((4, 4)).astype(np.float32))), [batch, 2, 8])
    v = b.reshape(b.softmax(u, axis=-1), [batch, 16], name="v")
    final = b.linear(b.add(v, t), rng.standard_normal((3, 16)).astype(np.float32), name="final")
    out, taken = b.exit_select(final, [(head0, f0)], name="y")
    b.output(b.softmax(out, axis=-1, name="probs"), taken)  # after exit_select: the whole batch again
    return b.build()


@pytest.mark.parametrize("backend", BACKENDS)
def test_reshapes_naming_the_batch_are_resized_for_the_rows_left(backend: str) -> None:
    g = blocked(32)
    x = _x(32, seed=2, scale=2.0)
    exe = runtime.compile(g, backend=backend)
    out = exe.run(x)
    want = reference.run(g, x)
    assert 0 < exe.stats["exits"]["last"][0] < 32
    assert_array_equal(out["y.1"], want["y.1"])
    _close(out["probs"], want["probs"], exact=False)


def test_regions_run_on_the_rows_left() -> None:
    from tensorsmith.passes import run_pipeline

    g = run_pipeline(exit_mlp(16, (("max-prob", 0.7, 1), ("patience", 0.0, 2))), "fuse")
    assert g.nodes_of("fused")
    x = _x(16, seed=4, scale=2.0)
    exe = runtime.compile(g, backend="reference")
    got, want = exe.run(x), reference.run(g, x)
    assert 0 < exe.stats["exits"]["last"][0] < 16
    assert_array_equal(got["y.1"], want["y.1"])
    _close(got["y"], want["y"], exact=False)


def _mixing(batch: int) -> Graph:
    b = GraphBuilder("mixing")
    x = b.input("x", f32[batch, 4])
    h = b.relu(x, name="h")
    f = b.exit(h, threshold=0.5, name="f")
    centered = b.sub(h, b.reduce_mean(h, axes=[0], name="batch_mean"), name="centered")
    out, taken = b.exit_select(centered, [(h, f)], name="y")
    b.output(out, taken)
    return b.build()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_node_mixing_rows_after_an_exit_is_refused_at_compile_time(backend: str) -> None:
    with pytest.raises(RowError, match=r"node %batch_mean \(reduce-mean\) runs after exit 0 .* reduces over the "
                                       r"batch axis"):
        runtime.compile(_mixing(4), backend=backend)


def test_a_batch_output_not_through_exit_select_is_refused() -> None:
    g = exit_mlp(4)
    g.outputs.append(g.value("act2"))
    with pytest.raises(RowError, match=r"output %act2 carries the batch but holds only the rows that did not leave"):
        runtime.compile(g, backend="reference")


@pytest.mark.parametrize("backend", BACKENDS)
def test_exits_placed_last_in_graph_order_still_stop_rows(backend: str) -> None:
    g = exit_mlp(8, (ALWAYS, NEVER))
    g.nodes.sort(key=lambda n: n.op in ("exit", "exit_select"))
    exe = runtime.compile(g, backend=backend)
    out = exe.run(_x(8))
    assert exe.stats["exits"]["last"] == [8, 0, 0]
    _close(out["y"], reference.run(g, _x(8), keep=True)["head0"], exact=backend == "reference")


def test_concurrent_numba_runs_stay_correct() -> None:
    g = exit_mlp(32, (("max-prob", 0.7, 1), ("max-prob", 0.6, 1)))
    exe = runtime.compile(g, backend="numba")
    inputs = [_x(32, seed=s, scale=2.0) for s in range(6)]
    want = [reference.run(g, x) for x in inputs]
    errors: list[str] = []

    def work(i: int) -> None:
        for _ in range(5):
            out = exe.run(inputs[i])
            if not np.array_equal(out["y.1"], want[i]["y.1"]) or not np.allclose(out["y"], want[i]["y"], atol=1e-5):
                errors.append(f"input {i}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(exe.stats["exits"]["total"]) == 6 * 5 * 32


def test_bucket_rows_are_powers_of_two_capped_at_the_batch() -> None:
    assert [bucket_rows(r, 48) for r in (1, 2, 3, 5, 16, 17, 33, 48)] == [1, 2, 4, 8, 16, 32, 48, 48]
    exe = runtime.compile(exit_mlp(6), backend="numba")
    assert isinstance(exe, NumbaExitExecutable)
    assert exe.buckets() == {0: [6], 1: [6], 2: [6]}  # the path where no row leaves, compiled up front
    first = exe.stats["arena_bytes"]
    assert first == sum(p.get(6).arena.size for p in exe.segments) > 0
    exe.compile_buckets()
    assert exe.buckets() == {0: [6], 1: [1, 2, 4, 6], 2: [1, 2, 4, 6]}
    assert exe.stats["arena_bytes"] == sum(x.arena.size for p in exe.segments for x in p.by_rows.values()) > first


def test_numba_runs_allocate_no_activation_sized_array_once_buckets_are_compiled() -> None:
    g = exit_mlp(64, (("max-prob", 0.9, 1), ("max-prob", 0.9, 1)), hidden=512)
    exe = runtime.compile(g, backend="numba")
    x = _x(64, seed=5)
    exe.run(x)  # compiles the buckets of this input's paths; stages the compacted values
    exe.run(x)
    tracemalloc.start()
    exe.run(x)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    activation = 64 * 512 * 4  # one hidden activation of the whole batch
    assert min(exe.stats["exits"]["last"]) > 0  # rows left at both exits and ran to the end
    assert peak < activation // 8, peak  # outputs, fire masks and row indices: a few hundred bytes each


def test_numba_runs_each_segment_it_reaches_once(monkeypatch: pytest.MonkeyPatch) -> None:
    g = exit_mlp(16, (("max-prob", 0.7, 1), ("max-prob", 0.7, 1)))
    exe = runtime.compile(g, backend="numba")
    x = _x(16, seed=4, scale=2.0)
    exe.run(x)
    calls: list[str] = []
    real = NumbaExecutable.run_checked

    def counted(self: NumbaExecutable, arrays: list) -> list:
        calls.append(self.graph.name)
        return real(self, arrays)

    monkeypatch.setattr(NumbaExecutable, "run_checked", counted)
    exe.run(x)
    left = exe.stats["exits"]["last"]
    reached = [16, 16 - left[0], left[2]]
    assert len(calls) == sum(1 for r in reached if r) and len(set(calls)) == len(calls)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_encoder_with_a_key_mask_stops_rows_between_blocks(backend: str) -> None:
    g = encoder_exits(12, threshold0=0.65, threshold1=0.0)
    rng = np.random.default_rng(0)
    x = {"x": rng.standard_normal((12, 5, 8)).astype(np.float32),
         "mask": np.where(rng.random((12, 1, 1, 5)) < 0.2, -1e4, 0).astype(np.float32)}
    exe = runtime.compile(g, backend=backend)
    out, want = exe.run(x), reference.run(g, x)
    assert min(exe.stats["exits"]["last"]) > 0  # rows leave at both exits and run to the end
    assert_array_equal(out["y.1"], want["y.1"])
    _close(out["y"], want["y"], exact=False)


def test_the_buckets_of_a_segment_share_its_packed_weights() -> None:
    exe = runtime.compile(exit_mlp(16, hidden=64), backend="numba")
    assert isinstance(exe, NumbaExitExecutable)
    exe.compile_buckets()
    plans = [e.plan for rows, e in exe.segments[1].by_rows.items() if rows >= 4]  # packed GEMMs take >= 4 rows
    packed = [{s.name: s.array for s in p.slots if s.name.endswith(".packed")} for p in plans]
    assert len(plans) >= 2 and packed[0]
    for other in packed[1:]:
        assert other.keys() == packed[0].keys() and all(other[k] is packed[0][k] for k in other)


@pytest.mark.parametrize(("tail", "sunk"), [("softmax", True), ("batch-sum", False), ("by-exit", False)])
def test_nodes_after_exit_select_run_in_the_segments_where_that_is_exact(tail: str, sunk: bool) -> None:
    crit = (("max-prob", 0.8, 1), ("patience", 0.0, 2))
    x = _x(24, seed=3, scale=1.5)
    g = exit_mlp(24, crit, tail=tail)
    plan = plan_exits(g)
    moved = sink_post(plan, plan_segments(plan))
    assert (moved is not None) == sunk
    if moved is not None:  # segments 0, 1 and 2 end with their own copy of the tail, on their own head
        assert [s.outputs[-1].name for s in moved.segments] == ["probs.exit0", "probs.exit1", "probs.exit2"]
        assert moved.output is g.outputs[0]
    exe = runtime.compile(g, backend="numba")
    assert len(exe.stats["segments"]) == (3 if sunk else 4)  # no segment after exit_select once sunk
    out, want = exe.run(x), reference.run(g, x)
    assert_array_equal(out["y.1"], want["y.1"])
    _close(out["probs"], want["probs"], exact=False)
    left = exe.stats["exits"]["last"]
    assert min(left) > 0  # every path taken by some row
    for rows in (1, 3):  # every row leaving at one exit, and one row
        one = {"x": x["x"][:rows]}
        small = exit_mlp(rows, crit, tail=tail)
        _close(runtime.compile(small, backend="numba").run(one)["probs"], reference.run(small, one)["probs"], False)
