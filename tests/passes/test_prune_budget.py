"""prune: one global threshold across layers (budget=global), and ragged dimensions padded to the block (pad=true)."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.ir import Graph, GraphBuilder, f32, graphs_equal, parse, verify
from tensorsmith.ir.sparsity import block_norms, gemm_view, pad_view
from tensorsmith.passes import PassContext, PipelineError, make_pass, run_pipeline


def two_layers(scale: float = 10.0, n: int = 32, k: int = 32, seed: int = 0) -> Graph:
    """fc0 with small weights, fc1 with weights `scale` times larger."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("two")
    x = b.input("x", f32[2, k])
    h = b.relu(b.linear(x, rng.standard_normal((n, k)).astype(np.float32), name="fc0"))
    b.output(b.linear(h, (scale * rng.standard_normal((16, n))).astype(np.float32), name="fc1"))
    return b.build()


def _weights(g: Graph) -> list[np.ndarray]:
    return [n.inputs[1].data for n in g.nodes if n.op == "linear"]


def _run(g: Graph, opts: str) -> tuple[Graph, str]:
    ctx = PassContext()
    out = run_pipeline(g, f"prune{{{opts}}}", ctx=ctx)
    return out, ctx.records[-1].report


def test_global_unstructured_uses_one_threshold_across_layers() -> None:
    g = two_layers()
    out, report = _run(g, "sparsity=0.5,budget=global,min_params=0")
    before, after = np.concatenate([w.ravel() for w in _weights(g)]), np.concatenate([w.ravel() for w in _weights(out)])
    assert np.count_nonzero(after == 0) == round(0.5 * before.size)
    assert np.abs(before[after != 0]).min() >= np.abs(before[after == 0]).max()
    d0, d1 = (n.inputs[1].type.sparsity.density for n in out.nodes if n.op == "linear")
    assert d0 < 0.5 < d1, report  # the small-weight layer loses more than half, the large one less
    per_layer, _ = _run(g, "sparsity=0.5,min_params=0")
    assert all(n.inputs[1].type.sparsity.density == 0.5 for n in per_layer.nodes if n.op == "linear")


@pytest.mark.parametrize("pattern,unit", [("block", 16), ("channel", 32)])
def test_global_block_and_channel_rank_units_together(pattern: str, unit: int) -> None:
    g = two_layers(scale=3.0)
    out, _ = _run(g, f"sparsity=0.6,budget=global,pattern={pattern},block=4x4,min_params=0")
    total = sum(w.size for w in _weights(g))
    zeros = sum(int(np.count_nonzero(w == 0)) for w in _weights(out))
    assert abs(zeros - 0.6 * total) <= unit
    scores_kept, scores_gone = [], []
    for w0, w1 in zip(_weights(g), _weights(out)):
        v0, v1 = gemm_view(w0), gemm_view(w1)
        if pattern == "block":
            s, alive = block_norms(v0, 4, 4), block_norms(v1, 4, 4) > 0
        else:
            s, alive = np.sqrt((v0.astype(np.float64) ** 2).sum(-1)), np.any(v1 != 0, axis=-1)
        scores_kept.append(s[alive])
        scores_gone.append(s[~alive])
    assert np.concatenate(scores_kept).min() >= np.concatenate(scores_gone).max()


def test_global_refuses_nm_and_auto() -> None:
    for pattern in ("nm", "auto"):
        with pytest.raises(PipelineError, match="budget=global"):
            make_pass("prune", {"budget": "global", "pattern": pattern})
    with pytest.raises(PipelineError, match="budget"):
        make_pass("prune", {"budget": "network"})


def ragged(n: int = 10, k: int = 30) -> Graph:
    rng = np.random.default_rng(1)
    b = GraphBuilder("ragged")
    x = b.input("x", f32[3, k])
    b.output(b.linear(x, rng.standard_normal((n, k)).astype(np.float32), name="fc"))
    return b.build()


def test_ragged_layers_are_skipped_without_pad_and_padded_with_it() -> None:
    _, report = _run(ragged(), "pattern=block,block=4x8,min_params=0")
    assert "N=10 is not a multiple of 4 (pad=true pads it)" in report
    out, report = _run(ragged(), "pattern=block,block=4x8,min_params=0,pad=true,sparsity=0.5")
    w = out.nodes[0].inputs[1]
    info = w.type.sparsity
    assert w.type.shape == (10, 30) and info.padded and info.block == (4, 8)
    padded = pad_view(gemm_view(w.data), 4, 8)  # 12 x 32: 3 x 4 blocks, the edge ones partial
    alive = block_norms(padded, 4, 8) > 0
    assert alive.size == 12 and info.density == pytest.approx(alive.mean()) and alive.sum() == 6
    nonzeros_per_block = np.rint(block_norms((padded != 0).astype(float), 4, 8) ** 2)
    real = block_norms(pad_view(np.ones((1, 10, 30)), 4, 8), 4, 8) ** 2  # real cells per block
    assert np.all((nonzeros_per_block == 0) | (np.abs(nonzeros_per_block - np.rint(real)) < 0.5))
    assert "padded=true" in out.to_text() and graphs_equal(parse(out.to_text()), out)
    verify(out)


def test_nm_pads_k_to_a_multiple_of_m() -> None:
    out, report = _run(ragged(), "pattern=nm,min_params=0,pad=true")
    w = out.nodes[0].inputs[1]
    assert w.type.sparsity.padded and w.type.sparsity.check(w.data) is None, report
    groups = pad_view(gemm_view(w.data), 1, 4).reshape(-1, 4)
    assert np.all(np.count_nonzero(groups, axis=1) <= 2)
    assert np.count_nonzero(w.data[:, 28:], axis=1).max() <= 2  # the partial last group of 2 real elements


def test_padded_annotation_is_checked_by_verify() -> None:
    out, _ = _run(ragged(), "pattern=block,block=4x8,min_params=0,pad=true")
    info = out.nodes[0].inputs[1].type.sparsity
    dense = np.ones((10, 30), np.float32)
    assert info.check(dense) is not None and info.check(out.nodes[0].inputs[1].data) is None


@pytest.mark.parametrize("opts", ["pattern=block,block=4x8,sparsity=0.75", "pattern=nm"])
def test_padded_weights_run_on_the_numba_backend_like_the_reference(opts: str) -> None:
    from tensorsmith import runtime
    from tensorsmith.backends import reference

    out, _ = _run(ragged(), f"{opts},min_params=0,pad=true")
    x = {"x": np.random.default_rng(2).standard_normal((3, 30)).astype(np.float32)}
    got = runtime.compile(out, backend="numba").run(x)["fc"]
    np.testing.assert_allclose(got, reference.run(out, x)["fc"], rtol=1e-5, atol=1e-5)
