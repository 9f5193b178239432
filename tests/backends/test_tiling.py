"""Whether the parallel products split rows or panels between the threads (backends/numba/tiling.py)."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith import runtime
from tensorsmith.backends.numba import k_microkernel, tiling
from tensorsmith.backends.numba.jit import num_threads
from tensorsmith.backends.numba.plan import Lit
from tensorsmith.ir import GraphBuilder, f32

MIB = 1 << 20


@pytest.fixture
def two_mib_l2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiling, "l2_bytes", lambda: 2 * MIB)


@pytest.mark.usefixtures("two_mib_l2")
def test_split_rows_decisions() -> None:
    rows = 2 * tiling.ROW_SPLIT_MIN_ROWS
    assert tiling.split_rows(rows, MIB, MIB, 2)  # weights fit half an L2: each core keeps them whole
    assert not tiling.split_rows(rows, 2 * MIB, 2 * MIB, 2)  # half the weights per core stay in its L2
    assert tiling.split_rows(rows, 2 * MIB, 5 * MIB, 2)  # the graph's weights overflow both L2s anyway
    assert not tiling.split_rows(rows - 1, MIB, MIB, 2)  # too few rows a thread
    assert not tiling.split_rows(rows, MIB, MIB, 1)


def test_l2_size_is_read_or_defaulted() -> None:
    assert tiling.cache_size_bytes("2048K") == 2 * MIB and tiling.cache_size_bytes("1M") == MIB
    assert tiling.cache_size_bytes("512") == 512
    assert tiling.l2_bytes() >= 64 * 1024


def _linear_chain(n_layers: int, width: int, rows: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    b = GraphBuilder("chain")
    y = b.input("x", f32[rows, width])
    for i in range(n_layers):
        y = b.linear(y, b.const(rng.standard_normal((width, width), dtype=np.float32) * 0.05, f"w{i}"), name=f"fc{i}")
    b.output(y)
    return b.build()


@pytest.mark.skipif(not k_microkernel.AVAILABLE, reason="no FMA: GEMMs go through BLAS")
@pytest.mark.usefixtures("two_mib_l2")
@pytest.mark.parametrize(("n_layers", "width", "split"), [(2, 256, True), (1, 768, False), (3, 768, True)])
def test_lowering_splits_by_rows_where_the_weights_allow(n_layers: int, width: int, split: bool) -> None:
    """128 rows on 2 threads: rows for small weights (256 KiB), panels for one 2.25 MiB weight reused hot, rows
    again when three of them (6.75 MiB) overflow both L2s; the result is the same either way."""
    g = _linear_chain(n_layers, width, 128)
    exe = runtime.compile(g, backend="numba", fuse=False)
    x = np.random.default_rng(1).standard_normal((128, width), dtype=np.float32)
    ref = runtime.compile(g, backend="reference").run({"x": x})
    got = exe.run({"x": x})
    np.testing.assert_allclose(got[g.outputs[0].name], ref[g.outputs[0].name], rtol=1e-4, atol=1e-4)
    if num_threads() != 2:
        pytest.skip(f"the split is checked on 2 threads; this runtime has {num_threads()}")
    assert exe.plan.steps[0].kernel.startswith("gemm_uk")
    tm = [a.value for a in exe.plan.steps[0].args if isinstance(a, Lit)][0]
    assert tm == (64 if split else 128)


@pytest.mark.skipif(not k_microkernel.AVAILABLE, reason="no FMA: GEMMs go through BLAS")
@pytest.mark.usefixtures("two_mib_l2")
def test_products_read_by_attention_split_their_panels_as_attention_splits_heads() -> None:
    """q, k and v (read only by attention, q through a reshape) split by panels; the output projection by rows."""
    rng = np.random.default_rng(2)
    b = GraphBuilder("attn")
    x = b.input("x", f32[1, 128, 256])

    def w(name: str):  # type: ignore[no-untyped-def]
        return b.const(rng.standard_normal((256, 256), dtype=np.float32) * 0.05, name)

    q = b.reshape(b.reshape(b.linear(x, w("wq"), name="q"), [128, 256]), [1, 128, 256])
    ctx = b.op("attention", q, b.linear(x, w("wk"), name="k"), b.linear(x, w("wv"), name="v"), heads=4)
    b.output(b.linear(ctx, w("wo"), name="o"))
    g = b.build()
    exe = runtime.compile(g, backend="numba", fuse=False)
    feeds = {"x": rng.standard_normal((1, 128, 256), dtype=np.float32)}
    np.testing.assert_allclose(exe.run(feeds)[g.outputs[0].name],
                               runtime.compile(g, backend="reference").run(feeds)[g.outputs[0].name],
                               rtol=1e-4, atol=1e-4)
    if num_threads() != 2:
        pytest.skip(f"the split is checked on 2 threads; this runtime has {num_threads()}")
    tiles = {s.name: [a.value for a in s.args if isinstance(a, Lit)][0] for s in exe.plan.steps
             if s.kernel.startswith("gemm_uk")}
    assert tiles == {"q": 128, "k": 128, "v": 128, "o": 64}
