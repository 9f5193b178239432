"""prune: options, exact pattern constraints, the stated per-layer bound against the reference, skips, auto."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.backends import reference
from tensorsmith.backends.cost import choose_sparsity, load_target
from tensorsmith.ir import Graph, GraphBuilder, QuantInfo, f32, graphs_equal, i8, i32, parse, verify
from tensorsmith.ir.sparsity import block_norms, gemm_view
from tensorsmith.passes import PassContext, PipelineError, make_pass, parse_pipeline, run_pipeline
from tensorsmith.passes.builtin import BUILTIN_PASSES, LOSSY_PASSES


def _w(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def linear_graph(n: int = 48, k: int = 64, batch: int = 5, seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    b = GraphBuilder("lin")
    x = b.input("x", f32[batch, k])
    b.output(b.linear(x, _w(rng, n, k), _w(rng, n), name="fc"))
    return b.build()


def conv_graph(o: int = 16, i: int = 8, kh: int = 3, groups: int = 1, seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    b = GraphBuilder("conv")
    x = b.input("x", f32[2, i, 6, 6])
    b.output(b.conv2d(x, _w(rng, o, i // groups, kh, kh), _w(rng, o), pads=1, groups=groups, name="conv"))
    return b.build()


def matmul_graph(seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    b = GraphBuilder("mm")
    x = b.input("x", f32[3, 4, 32])
    b.output(b.matmul(x, b.const(_w(rng, 3, 32, 24), "B"), name="mm"))
    return b.build()


GRAPHS = {"linear": linear_graph, "conv2d": conv_graph, "matmul": matmul_graph}
PATTERNS = ["unstructured", "block", "nm", "channel"]


def _prune(g: Graph, pipeline: str, target: str | None = None) -> tuple[Graph, str]:
    ctx = PassContext(target=target)
    out = run_pipeline(g, pipeline, ctx=ctx)
    return out, ctx.records[-1].report


def _weight(g: Graph) -> tuple[str, np.ndarray, object]:
    node = next(n for n in g.nodes if n.op in ("linear", "conv2d", "matmul"))
    return node.op, node.inputs[1].data, node


# ---- options -----------------------------------------------------------------------------
def test_options_parse_and_print_back() -> None:
    (p,) = parse_pipeline("prune{sparsity=0.9,pattern=block,block=32,ops=linear+conv2d,skip=head*}")
    assert (p.sparsity, p.pattern, p.block, p.ops, p.skip) == (0.9, "block", (32,), "linear+conv2d", "head*")
    assert parse_pipeline(str(p))[0] == p
    assert make_pass("prune", {"block": "16x8"}).block == (16, 8)
    assert "prune" in LOSSY_PASSES and "prune" not in BUILTIN_PASSES


@pytest.mark.parametrize("opts,words", [
    ({"sparsity": "1.0"}, ["sparsity=1.0", "[0, 1)"]),
    ({"pattern": "diagonal"}, ["pattern", "unstructured", "auto"]),
    ({"ops": "linear+relu"}, ["relu", "linear+conv2d+matmul"]),
    ({"block": "0x4"}, ["block"]),
    ({"n": "5"}, ["n=5", "m=4"]),
    ({"min_params": "-1"}, ["min_params"]),
    ({"density": "0.5"}, ["density", "sparsity"]),
])
def test_bad_options_name_the_option(opts: dict[str, str], words: list[str]) -> None:
    with pytest.raises(PipelineError) as e:
        make_pass("prune", opts)
    for w in words:
        assert w in str(e.value)


def test_auto_without_a_target_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="pattern=auto.*needs a target"):
        _prune(linear_graph(), "prune{pattern=auto}")


# ---- pattern constraints, exactly ----------------------------------------------------------
@pytest.mark.parametrize("kind", list(GRAPHS))
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("sparsity", [0.3, 0.75])
def test_pattern_constraints_hold_in_the_arrays(kind: str, pattern: str, sparsity: float) -> None:
    g = GRAPHS[kind]()
    op, before, _ = _weight(g)
    out, report = _prune(g, f"prune{{pattern={pattern},sparsity={sparsity},block=4x8,min_params=0}}")
    _, after, node = _weight(out)
    info = node.inputs[1].type.sparsity
    assert info is not None and info.pattern == pattern and info.check(after, op) is None, report
    v0, v1 = gemm_view(before, op), gemm_view(after, op)
    assert np.all((v1 == v0) | (v1 == 0))  # pruning only zeroes
    kept, gone = np.abs(v0[v1 != 0]), np.abs(v0[v1 == 0])
    if pattern == "unstructured":
        assert np.count_nonzero(v1 == 0) == round(sparsity * v1.size)
        assert kept.min() >= gone.max()
    elif pattern == "nm":
        groups0, groups1 = np.abs(v0).reshape(-1, 4), v1.reshape(-1, 4)
        assert np.all(np.count_nonzero(groups1, axis=1) == 2)
        for g0, g1 in zip(groups0, groups1):
            assert g0[g1 != 0].min() >= g0[g1 == 0].max()
        assert info.density == 0.5
    elif pattern == "block":
        nz = block_norms(v1, 4, 8) > 0
        whole = np.rint(block_norms((v1 != 0).astype(float), 4, 8) ** 2)  # nonzeros per block
        assert np.all((whole == 0) | (whole == 32))  # each block all zero or all kept
        assert abs((1 - nz.mean()) - sparsity) <= 1 / nz.size
        norms = block_norms(v0, 4, 8)
        assert norms[nz].min() >= norms[~nz].max()
        assert info.block == (4, 8) and info.density == pytest.approx(nz.mean())
    else:
        rows = np.any(v1 != 0, axis=-1)
        assert np.all(np.all(v1 != 0, axis=-1) == rows)  # rows all kept or all zero
        assert abs((1 - rows.mean()) - sparsity) <= 1 / rows.size
        assert info.density == pytest.approx(rows.mean())
    meta = node.meta["prune"]
    r = np.linalg.norm(v0.astype(np.float64) - v1) / np.linalg.norm(v0.astype(np.float64))
    assert meta["pattern"] == pattern and meta["removed_norm"] == pytest.approx(r)
    assert meta["density"] == info.density and gone.size > 0
    again = parse(out.to_text())
    assert graphs_equal(again, out) and again.value(node.inputs[1].name).type == node.inputs[1].type
    verify(again)


# ---- the stated bound, against the reference backend ------------------------------------------
def _bound_inputs(g: Graph, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v.name: (rng.standard_normal(v.type.shape) * rng.uniform(0.1, 10)).astype(np.float32) for v in g.inputs}


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("seed", range(3))
def test_linear_error_is_within_the_removed_norm_bound(pattern: str, seed: int) -> None:
    g = linear_graph(seed=seed)
    out, _ = _prune(g, f"prune{{pattern={pattern},block=8x8,sparsity=0.6}}")
    w = g.nodes[0].inputs[1].data.astype(np.float64)
    node = out.nodes[0]
    r = node.meta["prune"]["removed_norm"]
    x = _bound_inputs(g, seed)
    y, y2 = reference.run(g, x)["fc"], reference.run(out, x)["fc"]
    err = np.linalg.norm(y.astype(np.float64) - y2, axis=1)
    xn = np.linalg.norm(x["x"].astype(np.float64), axis=1)
    spectral = np.linalg.norm(w - node.inputs[1].data, 2)
    assert np.all(err <= spectral * xn * (1 + 1e-4) + 1e-4)
    assert np.all(err <= r * np.linalg.norm(w) * xn * (1 + 1e-4) + 1e-4)
    assert err.max() > 0


@pytest.mark.parametrize("pattern", PATTERNS)
def test_conv_error_is_within_the_bound_on_unfolded_patches(pattern: str) -> None:
    g = conv_graph()
    out, _ = _prune(g, f"prune{{pattern={pattern},block=4x8,sparsity=0.5}}")
    w = g.nodes[0].inputs[1].data
    r = out.nodes[0].meta["prune"]["removed_norm"]
    x = _bound_inputs(g, 1)
    y, y2 = reference.run(g, x)["conv"], reference.run(out, x)["conv"]
    padded = np.pad(x["x"].astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    patches = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))  # [N, C, Ho, Wo, 3, 3]
    patch_norm = np.sqrt(np.square(patches).sum(axis=(1, 4, 5)))  # [N, Ho, Wo]
    err = np.linalg.norm(y.astype(np.float64) - y2, axis=1)  # over output channels: [N, Ho, Wo]
    assert err.shape == patch_norm.shape and err.max() > 0
    assert np.all(err <= r * np.linalg.norm(w.astype(np.float64)) * patch_norm * (1 + 1e-4) + 1e-4)


def test_matmul_error_is_within_the_bound_per_row() -> None:
    g = matmul_graph()
    out, _ = _prune(g, "prune{pattern=nm}")
    b = g.nodes[0].inputs[1].data.astype(np.float64)
    r = out.nodes[0].meta["prune"]["removed_norm"]
    x = _bound_inputs(g, 2)
    err = np.linalg.norm(reference.run(g, x)["mm"].astype(np.float64) - reference.run(out, x)["mm"], axis=-1)
    assert np.all(err <= r * np.linalg.norm(b) * np.linalg.norm(x["x"], axis=-1) * (1 + 1e-4) + 1e-4)


# ---- what is skipped, and why ----------------------------------------------------------------
def test_skips_and_their_reasons() -> None:
    rng = np.random.default_rng(3)
    b = GraphBuilder("skips")
    x = b.input("x", f32[2, 32])
    tied = b.const(_w(rng, 32, 32), "tied")
    h = b.linear(b.linear(x, tied, name="t1"), tied, name="t2")
    sparse = _w(rng, 32, 32)
    sparse[:, 1::2] = 0
    sparse[:, ::4] = 0  # 75% zeros, one nonzero in each group of 4
    h = b.linear(h, sparse, name="already")
    h = b.linear(h, _w(rng, 30, 32), name="head")
    h = b.linear(h, _w(rng, 16, 30), name="fc3")
    h = b.linear(h, _w(rng, 4, 16), name="tiny")
    b.output(b.matmul(b.transpose(h, [1, 0], name="ht"), h, name="gram"))
    g = b.build()
    out, report = _prune(g, "prune{pattern=nm,skip=he*,min_params=200}")
    assert "t1 (@tied is shared with other readers)" in report
    assert "already (@already.weight already fits 2:4" in report and "75% zeros" in report
    assert "head (named in skip)" in report
    assert "2:4 not applied to fc3: K=30 is not a multiple of 4" in report
    assert "tiny (64 weights < min_params=200)" in report
    assert "gram (matmul: B is not a constant)" in report and "nothing pruned" in report
    assert graphs_equal(out, g)
    only_conv, rep = _prune(linear_graph(), "prune{ops=conv2d}")
    assert graphs_equal(only_conv, linear_graph()) and rep == "nothing pruned"


def test_quantized_and_integer_weights_are_skipped() -> None:
    b = GraphBuilder("q")
    q = QuantInfo((0.1,), (0,), 8)
    x = b.input("x", i8[2, 32].replace(quant=q))
    w = b.const(np.arange(32 * 32).reshape(32, 32).astype(np.int8), "wq")
    w.type = w.type.replace(quant=q)
    h = b.linear(x, w, name="qfc")
    b.output(b.linear(h, np.ones((16, 32), np.int32), name="ifc"))
    b.output(b.matmul(b.input("z", i32[2, 32]), np.ones((32, 16), np.int32), name="imm"))
    _, report = _prune(b.build(), "prune")
    assert "qfc (@wq is quantized: prune before quantize)" in report
    assert "ifc (@ifc.weight is i32, not float)" in report


def test_grouped_and_depthwise_convolutions() -> None:
    out, report = _prune(conv_graph(o=8, i=8, groups=2), "prune{pattern=block,block=8x4,min_params=0}")
    assert "its groups have 4 output channels, not a multiple of 8" in report and "nothing pruned" in report
    out, report = _prune(conv_graph(o=8, i=8, groups=2), "prune{pattern=block,block=4x4,min_params=0}")
    assert out.nodes[0].inputs[1].type.sparsity.block == (4, 4)
    out, report = _prune(conv_graph(o=8, i=8, groups=8), "prune{pattern=nm,min_params=0}")
    assert "2:4 not applied to conv: K=9 is not a multiple of 4" in report
    out, report = _prune(conv_graph(o=8, i=8, groups=8), "prune{sparsity=0.5,min_params=0}")
    assert out.nodes[0].inputs[1].type.sparsity.density == 0.5


# ---- pattern=auto: the cost model's choice per target family ---------------------------------
def test_auto_leaves_a_layer_dense_when_the_target_gains_too_little() -> None:
    g = linear_graph(n=256, k=256, batch=2)  # launch-overhead bound on a GPU: 2:4 would gain ~1%
    out, report = _prune(g, "prune{pattern=auto}", target="gpu-a100")
    assert out.nodes[0].inputs[1].type.sparsity is None
    assert "fc left dense: nm is predicted 1.01x on gpu-a100, below min_gain=1.05" in report
    out, report = _prune(g, "prune{pattern=auto,min_gain=1.0}", target="gpu-a100")  # past min_gain, yet at f32
    assert out.nodes[0].inputs[1].type.sparsity is None  # (the layer's own precision) 2:4 gains nothing
    assert "fc (left dense: the pruned weight is predicted no faster on gpu-a100" in report



AUTO = {
    "gpu-a100": ("nm", None), "gpu-h100": ("nm", None),
    "tpu-v4": ("block", (128, 128)), "tpu-v5e": ("block", (128, 128)),
    "npu-edge": ("block", (64, 64)), "npu-mobile": ("block", (32, 32)),
    "cpu-host": ("block", (32, 32)), "fpga-u250": ("unstructured", None),
}


@pytest.mark.parametrize("target", list(AUTO))
def test_auto_applies_the_pattern_the_target_accelerates(target: str) -> None:
    pattern, block = AUTO[target]
    sup = load_target(target).sparsity[0]
    assert (sup.pattern, sup.block) == (pattern, block)  # what the shipped target file says
    g = linear_graph(n=1024, k=1024, batch=128)  # large enough to gain on every target that runs it at f32
    out, report = _prune(g, "prune{pattern=auto,sparsity=0.75}", target=target)
    node = out.nodes[0]
    info = node.inputs[1].type.sparsity
    if "the gain needs" in choose_sparsity(target, g.nodes[0], 0.75).reason:  # NPUs: sparsity pays at int8 only
        assert info is None and "prune" not in node.meta
        assert f"left dense: the pruned weight is predicted no faster on {target}" in report
        return
    assert info.pattern == pattern and info.block == block
    assert info.check(node.inputs[1].data, "linear") is None
    if pattern == "nm":
        assert (info.n, info.m, info.density) == (2, 4, 0.5)
    else:
        assert info.density == pytest.approx(0.25, abs=1 / 4)
    assert node.meta["prune"]["reason"] in report and f"predicted on {target} (emulated)" in report


def test_auto_keeps_layers_the_target_cannot_use_dense_with_the_reason() -> None:
    out, report = _prune(linear_graph(n=30, k=64), "prune{pattern=auto}", target="tpu-v4")
    assert "block 128x128 not applied to fc: N=30 is not a multiple of 128" in report
    assert out.nodes[0].inputs[1].type.sparsity is None and "prune" not in out.nodes[0].meta
    out, report = _prune(linear_graph(n=32, k=30), "prune{pattern=auto}", target="gpu-a100")
    assert "2:4 not applied to fc: K=30 is not a multiple of 4" in report


def test_report_states_mean_worst_and_the_bound() -> None:
    rng = np.random.default_rng(0)
    b = GraphBuilder("two")
    x = b.input("x", f32[2, 64])
    h = b.linear(x, _w(rng, 32, 64), name="a")
    w = _w(rng, 16, 32)
    w[:, :8] *= 100  # a few large weights: pruning half of b removes little of its norm
    b.output(b.linear(h, w, name="b"))
    out, report = _prune(b.build(), "prune")
    ra, rb = (n.meta["prune"]["removed_norm"] for n in out.nodes)
    assert ra > rb
    assert f"mean {(ra + rb) / 2:.3f}, worst {ra:.3f} (a)" in report
    assert "||y - y'||_2 <= r * ||W||_F * ||x||_2" in report and "1280 weights zeroed" in report
