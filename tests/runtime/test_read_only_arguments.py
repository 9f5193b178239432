"""Kernels receive every array they only read as read-only, in a compiled graph and in direct calls alike, so that
one compiled signature serves constants and activations (Numba types read-only arrays apart)."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.backends.numba import int8_gemm as ig
from tensorsmith.backends.numba.cpu_features import best_int8_path
from tensorsmith.backends.numba.jit import kernel_args, read_only
from tensorsmith.ir import GraphBuilder, f32
from tensorsmith.runtime.numba_exec import CALL, CALL_DYN, NumbaExecutable

RNG = np.random.default_rng(5)


def test_read_only_views_leave_the_array_and_written_arrays_alone() -> None:
    a, out = np.ones(3, np.float32), np.zeros(3, np.float32)
    ro = read_only(a)
    assert not ro.flags.writeable and a.flags.writeable and np.shares_memory(ro, a)
    assert read_only(ro) is ro
    args = kernel_args((a, out, 7, out), writes=(out,))
    assert not args[0].flags.writeable and args[1] is out and args[2] == 7 and args[3] is out


def test_every_array_a_step_does_not_write_is_bound_read_only() -> None:
    b = GraphBuilder("mlp")
    x = b.input("x", f32[4, 16])
    h = b.relu(b.linear(x, RNG.standard_normal((32, 16)).astype(np.float32), np.zeros(32, np.float32)))
    b.output(b.add(b.linear(h, RNG.standard_normal((8, 32)).astype(np.float32), None), np.ones(8, np.float32),
                   name="y"))
    exe = NumbaExecutable(b.build(), parallel_threshold=1 << 30)
    feed = RNG.standard_normal((4, 16)).astype(np.float32)
    exe.run(feed)
    plan = exe.plan
    bound = exe._binding()
    checked = 0
    for entry, step in zip(bound.program, bound.steps):
        written = {plan.root(w) for w in step.writes}
        if entry[0] == CALL:
            for a, value in zip(step.args, entry[1].args):
                if isinstance(a, int) and isinstance(value, np.ndarray):
                    assert value.flags.writeable == (plan.root(a) in written), (step.name, step.kernel, a)
                    checked += 1
        elif entry[0] == CALL_DYN:
            for _, slot, only_read in entry[3]:
                assert only_read == (plan.root(slot) not in written), (step.name, step.kernel, slot)
                checked += 1
    assert checked >= 6


@pytest.mark.skipif(best_int8_path() is None, reason="this host executes no int8 path")
def test_a_writable_and_a_read_only_operand_share_one_compiled_kernel() -> None:
    path = best_int8_path()
    assert path is not None
    xq, sx, zp = ig.quantize_dynamic(RNG.standard_normal((5, 40)).astype(np.float32))
    packed = ig.pack_int8_weights(RNG.integers(-60, 60, (24, 40)).astype(np.int8), np.full(24, 0.01, np.float32),
                                  path)
    kernel = ig.int8_kernels(path).gemm_dequant.serial
    bias = RNG.standard_normal(24).astype(np.float32)
    frozen = bias.copy()
    frozen.flags.writeable = False
    y1 = ig.int8_gemm_dequant(xq, sx, zp, packed, path, bias=bias)
    count = len(kernel.signatures)
    y2 = ig.int8_gemm_dequant(xq, sx, zp, packed, path, bias=frozen)
    assert len(kernel.signatures) == count
    np.testing.assert_array_equal(y1, y2)
