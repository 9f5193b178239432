"""Sparsity analysis: patterns found from the zeros alone, densities per weight / layer / total, compressed bytes."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.ir import Graph, GraphBuilder, f32
from tensorsmith.ir.graph import Value
from tensorsmith.ir.sparsity import gemm_view
from tensorsmith.ir.sparsity_detect import compressed_bytes, detect_sparsity
from tensorsmith.passes import PassContext, run_pipeline
from tensorsmith.passes.sparsity_report import analyze_sparsity


def mlp(seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    b = GraphBuilder("mlp")
    x = b.input("x", f32[2, 64])
    h = b.relu(b.linear(x, rng.standard_normal((128, 64)).astype(np.float32), name="fc0"))
    b.output(b.linear(h, rng.standard_normal((32, 128)).astype(np.float32), np.zeros(32, np.float32), name="fc1"))
    return b.build()


def _strip_annotations(g: Graph) -> Graph:
    """The same arrays with no SparsityInfo: detection must find the pattern from the zeros alone."""
    for n in g.nodes_of("linear"):
        w = n.inputs[1]
        n.inputs[1] = Value(w.name, w.type.replace(sparsity=None), w.data)
    return g


@pytest.mark.parametrize("pipeline,found", [
    ("prune{pattern=block,block=8x8,sparsity=0.75}", "block 8x8"),
    ("prune{pattern=block,block=4x16,sparsity=0.5}", "block 4x16"),
    ("prune{pattern=nm}", "2:4"),
    ("prune{pattern=nm,n=1,m=8}", "1:8"),
    ("prune{pattern=channel,sparsity=0.25}", "channel"),
    ("prune{sparsity=0.5}", "unstructured"),
])
def test_patterns_are_found_without_annotations(pipeline: str, found: str) -> None:
    g = _strip_annotations(run_pipeline(mlp(), pipeline.replace("}", ",min_params=0}")))
    rep = analyze_sparsity(g)
    assert [t.found for t in rep.tensors] == [found, found]
    assert all(t.annotated == "-" for t in rep.tensors)


def test_dense_weights_and_densities_per_layer_and_total() -> None:
    g = run_pipeline(mlp(), "prune{sparsity=0.75,skip=fc1}")
    rep = analyze_sparsity(g)
    fc0, fc1 = rep.tensors
    assert (fc0.found, fc0.annotated, fc1.found, fc1.annotated) == ("unstructured", "unstructured", "dense", "-")
    assert fc0.density == pytest.approx(0.25) and fc1.density == 1.0
    assert rep.layers() == {"fc0": pytest.approx(0.25), "fc1": 1.0}
    assert rep.total_density == pytest.approx((0.25 * 8192 + 4096) / (8192 + 4096))
    assert fc0.format == "csr" and fc1.format == "dense" and fc1.compressed_bytes == fc1.dense_bytes


def test_compressed_sizes_by_format() -> None:
    w = np.zeros((1, 8, 16), np.float32)
    w[0, :4, :8] = 1.0  # one of four 4x8 blocks alive
    info = detect_sparsity(w)
    assert info.pattern == "block" and info.block == (4, 8) and info.density == 0.25
    c = compressed_bytes(w, info, 32)
    assert (c.format, c.dense_bytes, c.bytes) == ("bsr", 512, 32 * 4 + 4 + 3 * 4)
    rows = np.zeros((1, 8, 16), np.float32)
    rows[0, ::2] = 2.0
    r = detect_sparsity(rows)
    assert r.pattern == "channel" and compressed_bytes(rows, r, 32).bytes == 4 * 16 * 4 + 4 * 4
    groups = np.zeros((16, 4), np.float32)
    groups[np.arange(16), np.random.default_rng(0).integers(0, 4, 16)] = 1.0  # one nonzero per group of 4
    nm = groups.reshape(1, 4, 16)
    n = detect_sparsity(nm)
    assert (n.n, n.m) == (1, 4)
    assert compressed_bytes(nm, n, 32).bytes == (16 * (32 + 2) + 7) // 8  # 16 kept values, 2 bits of position each
    assert detect_sparsity(np.ones((1, 4, 4))).pattern == "dense"


def test_a_few_stray_zeros_do_not_hide_blocks() -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((1, 64, 64)).astype(np.float32)
    w[0, :32, :] = 0  # half the 32x32 blocks
    w[0, 40, 7] = 0  # one natural zero outside them
    info = detect_sparsity(w)
    assert info.pattern == "channel"  # whole rows zero: rows explain >= 99% of the zeros
    w2 = rng.standard_normal((1, 64, 64)).astype(np.float32)
    w2[0, :32, :32] = 0
    w2[0, 40, 7] = 0
    assert describe_found(w2) == "block 32x32"


def describe_found(view: np.ndarray) -> str:
    from tensorsmith.ir.sparsity import describe

    return describe(detect_sparsity(view))


def test_the_pass_reports_and_changes_nothing() -> None:
    g = run_pipeline(mlp(), "prune{pattern=nm,min_params=0}")
    ctx = PassContext()
    out = run_pipeline(g, "sparsity-report", ctx=ctx)
    assert not ctx.records[-1].changed
    report = ctx.records[-1].report
    assert "density 0.500 over 2 weight(s)" in report and "fc0.weight 0.500 2:4 (nm)" in report
    assert [n.inputs[1].data.tobytes() for n in out.nodes if n.op == "linear"] == \
           [gemm_view(n.inputs[1].data).tobytes() for n in g.nodes if n.op == "linear"]
    assert "total: density 0.500" in analyze_sparsity(g).table()
