"""Runs of per-image kernels as one parallel region (image_chains.py): each thread's images through every kernel."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from numpy.testing import assert_array_equal
from tensorsmith.backends import reference
from tensorsmith.backends.numba import image_split as cut
from tensorsmith.backends.numba import k_microkernel
from tensorsmith.backends.numba.image_chains import chain_images, chain_source
from tensorsmith.backends.numba.jit import num_threads, twin
from tensorsmith.backends.numba.plan import Lit, Slot, Step
from tensorsmith.bench.models.builtin import cnn
from tensorsmith.ir import GraphBuilder, f32
from tensorsmith.passes import run_pipeline
from tensorsmith.runtime.numba_exec import NumbaExecutable

from .numba_check import PARALLEL

THREADS = num_threads()
needs_threads = pytest.mark.skipif(THREADS < 2, reason="one thread: no chain forms")
needs_fma = pytest.mark.skipif(not k_microkernel.AVAILABLE, reason="no FMA: convolutions go through BLAS")
RNG = np.random.default_rng(5)


def _u(*shape: int) -> np.ndarray:
    return RNG.uniform(-1, 1, shape).astype(np.float32)


def _both(g, feeds, **options):  # type: ignore[no-untyped-def]
    """(chained executable, its outputs, the outputs of the plan without chains)."""
    chained = NumbaExecutable(g, **options)
    apart = NumbaExecutable(g, image_chains=False, **options)
    return chained, chained.run(feeds), apart.run(feeds)


def _trunk(batch: int, head: str) -> tuple:  # type: ignore[type-arg]
    """conv-bn-relu-pool, conv-relu, then a global average pool (`gap`) or a flatten (`flat`: a copy back to NCHW)."""
    b = GraphBuilder("trunk")
    x = b.input("x", f32[batch, 3, 16, 16])
    h = b.conv2d(x, _u(32, 3, 3, 3) / 3, _u(32), pads=1, name="c0")
    h = b.batchnorm(h, _u(32) + 2, _u(32), _u(32), np.abs(_u(32)) + 0.5, name="bn0")
    h = b.maxpool2d(b.relu(h, name="r0"), kernel=(2, 2), name="p0")
    h = b.relu(b.conv2d(h, _u(32, 32, 3, 3) / 10, _u(32), pads=1, name="c1"), name="r1")
    h = b.op("global-avgpool", h, name="gap") if head == "gap" else h
    b.output(b.flatten(h, axis=1, name="flat"))
    return run_pipeline(b.build(), "fuse{mean=false}"), {"x": _u(batch, 3, 16, 16)}


@needs_threads
@needs_fma
def test_the_zoo_cnn_runs_its_three_convolutions_as_one_chain_equal_bit_for_bit() -> None:
    m = cnn(batch=2 * THREADS)
    g = run_pipeline(m.graph, "fuse")
    exe, got, apart = _both(g, m.inputs)
    assert exe.stats["image_chains"] == [["conv0+bn0+relu0+pool0", "conv1+bn1+relu1+pool1", "conv2+bn2+relu2+gap"]]
    chain = next(s for s in exe.plan.steps if s.parts)
    assert chain.kernel.startswith("image-chain(conv_blocked") and chain.kernel.endswith("[par]")
    assert [p.name for p in exe.plan.kernels()][:3] == exe.stats["image_chains"][0]
    for k in apart:
        assert_array_equal(got[k], apart[k])
        np.testing.assert_allclose(got[k], reference.run(g, m.inputs)[k], rtol=1e-4, atol=1e-5)


@needs_threads
@needs_fma
@pytest.mark.parametrize("head", ["gap", "flat"])
@pytest.mark.parametrize("per_thread", [1, 3])
def test_a_blocked_trunk_chains_to_its_end(head: str, per_thread: int) -> None:
    """Ending in a global average pool (a kernel of its own: `fuse{mean=false}`) or copied back to NCHW for a
    flatten (`blocked_to_nchw` joins the chain); one and three images per thread."""
    g, feeds = _trunk(per_thread * THREADS, head)
    exe, got, apart = _both(g, feeds, parallel_threshold=PARALLEL)
    (members,) = exe.stats["image_chains"]
    assert len(members) == 3
    last = [p.kernel for p in exe.plan.kernels()][2]
    assert last.startswith("blocked_to_nchw" if head == "flat" else "global_avgpool_blocked"), last
    for k in apart:
        assert_array_equal(got[k], apart[k])
        np.testing.assert_allclose(got[k], reference.run(g, feeds)[k], rtol=1e-4, atol=1e-5)


@needs_threads
@needs_fma
def test_no_chain_when_the_batch_does_not_split_evenly() -> None:
    g, feeds = _trunk(THREADS + 1, "gap")
    exe, got, apart = _both(g, feeds, parallel_threshold=PARALLEL)
    assert exe.stats["image_chains"] == []
    assert all(not s.parts for s in exe.plan.steps)
    for k in apart:
        assert_array_equal(got[k], apart[k])


@needs_threads
@needs_fma
def test_a_chain_run_on_fewer_threads_gives_each_thread_several_shares() -> None:
    """When other tasks hold the CPUs a run gets fewer threads than the plan was made for: same results."""
    g, feeds = _trunk(2 * THREADS, "flat")
    exe, _, apart = _both(g, feeds, parallel_threshold=PARALLEL)
    assert exe.stats["image_chains"]
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        got = exe._run_env(feeds)  # noqa: SLF001 - below the free-CPU probe, which would set the count again
        out = {name: got[slot] for name, slot in exe.plan.outputs}
    finally:
        numba.set_num_threads(before)
    for k in apart:
        assert_array_equal(out[k], apart[k])


@twin
def _scale_images(x, out):  # type: ignore[no-untyped-def]
    """out = 2 x (a test kernel of the chain tests)."""
    for i in range(x.shape[0]):
        out[i] = 2 * x[i]


def _slots(n: int) -> list[Slot]:
    return [Slot(i, "buffer", (4, 8), np.dtype(np.float32), f"s{i}") for i in range(n)]


def _step(name: str, args: tuple, writes: tuple, cuts: tuple) -> Step:  # type: ignore[type-arg]
    from tensorsmith.backends.numba.image_split import ImageSplit

    return Step(name, "test", "scale[par]", _scale_images.parallel, args, writes,
                images=ImageSplit(4, _scale_images, cuts))


def test_a_run_breaks_where_one_kernel_reads_whole_what_another_writes() -> None:
    """b reads slot 1 SHARED (all images) while a writes it: a thread would read images another is writing."""
    a = _step("a", (0, 1), (1,), (cut.LEADING, cut.LEADING))
    b = _step("b", (1, 2), (2,), (cut.SHARED, cut.LEADING))
    steps, kernels = chain_images([a, b], _slots(3), threads=2)
    assert steps == [a, b] and kernels == []


def test_a_kernel_that_writes_a_shared_argument_never_chains() -> None:
    a = _step("a", (0, 1), (1,), (cut.LEADING, cut.SHARED))
    b = _step("b", (1, 2), (2,), (cut.LEADING, cut.LEADING))
    steps, _ = chain_images([a, b], _slots(3), threads=2)
    assert steps == [a, b]


def test_one_thread_chains_nothing() -> None:
    a = _step("a", (0, 1), (1,), (cut.LEADING, cut.LEADING))
    b = _step("b", (1, 2), (2,), (cut.LEADING, cut.LEADING))
    assert chain_images([a, b], _slots(3), threads=1) == ([a, b], [])


def test_a_chain_of_test_kernels_runs_each_share_and_passes_each_slot_as_its_kernel_does() -> None:
    """Two kernels chained over 4 images in 2 shares: x -> 2x -> 4x; slot 1 is written by a, read by b."""
    a = _step("a", (0, 1), (1,), (cut.LEADING, cut.LEADING))
    b = _step("b", (1, 2), (2,), (cut.LEADING, cut.LEADING))
    steps, kernels = chain_images([a, b], _slots(3), threads=2)
    (chain,) = steps
    assert chain.parts == (a, b) and len(kernels) == 1
    assert chain.arg_written == (False, True, False, True, False, False, False)  # then sizes, images, parts
    assert [x.value for x in chain.args[-2:] if isinstance(x, Lit)] == [4, 2]  # images, shares
    x = np.arange(32, dtype=np.float32).reshape(4, 8)
    mid, out = np.zeros_like(x), np.zeros_like(x)
    x.flags.writeable = False
    ro_mid = mid.view()
    ro_mid.flags.writeable = False
    chain.fn(x, mid, ro_mid, out, np.zeros(1, np.int64), 4, 2)
    assert_array_equal(out, 4 * x)


def test_flat_cuts_slice_per_image_with_room_past_the_end() -> None:
    source = chain_source([_step("a", (0, 1), (1,), (cut.flat(8, 3), cut.LEADING))])
    assert "a0[lo * sizes[0]:min(hi * sizes[0] + sizes[1], a0.shape[0])]" in source
    assert "a1[lo:hi]" in source
