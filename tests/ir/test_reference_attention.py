"""The attention op: type rule, reference semantics against float64 loops and against the decomposed graph."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from tensorsmith.backends import reference
from tensorsmith.ir import BuildError, GraphBuilder, f32, i8

from .refcase import covers, run_graph
from .sample_attention import attention_graph, attention_inputs, decomposed_attention_graph

RNG = np.random.default_rng(7)


def loop_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None, heads: int,
                   scale: float) -> np.ndarray:
    """Attention in float64, one (batch, head, query) at a time with explicit loops over keys."""
    b, sq, e = q.shape
    skv, d = k.shape[1], e // heads
    full = np.broadcast_to(mask, (b, heads, sq, skv)) if mask is not None else np.zeros((b, heads, sq, skv))
    out = np.zeros((b, sq, e))
    for n in range(b):
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            for i in range(sq):
                s = [sum(float(q[n, i, c]) * float(k[n, j, c]) for c in range(cols.start, cols.stop)) * scale
                     + float(full[n, h, i, j]) for j in range(skv)]
                top = max(s)
                w = [math.exp(x - top) for x in s]
                total = sum(w)
                for c in range(cols.start, cols.stop):
                    out[n, i, c] = sum(w[j] * float(v[n, j, c]) for j in range(skv)) / total
    return out


@covers("attention")
@pytest.mark.parametrize("b,sq,skv,heads,d,mask_shape,scale", [
    (2, 3, 5, 2, 4, None, 0.0),
    (1, 4, 4, 3, 2, (4, 4), 0.5),
    (2, 2, 6, 1, 3, (2, 1, 1, 6), 0.0),
    (1, 5, 3, 2, 2, (1, 2, 5, 3), -1.5),
])
def test_attention_against_float64_loops(b: int, sq: int, skv: int, heads: int, d: int,
                                         mask_shape: tuple[int, ...] | None, scale: float) -> None:
    feeds = attention_inputs(RNG, b, sq, skv, heads, d, mask_shape, magnitude=2.0)
    got = run_graph(attention_graph(b, sq, skv, heads, d, mask_shape, scale), feeds)["y"]
    assert got.shape == (b, sq, heads * d) and got.dtype == np.float32
    want = loop_attention(feeds["q"], feeds["k"], feeds["v"], feeds.get("mask"), heads,
                          scale or 1.0 / math.sqrt(d))
    # float32 products and sums of a few terms against float64: a few ulps of values of order 1
    assert_allclose(got, want, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("mask_shape", [None, (7, 9), (2, 3, 7, 9), (2, 1, 1, 9)])
def test_attention_equals_the_decomposed_graph_bit_for_bit(mask_shape: tuple[int, ...] | None) -> None:
    """The rule runs the decomposed ops' own numpy calls on the same views, so the results are identical."""
    feeds = attention_inputs(RNG, 2, 7, 9, 3, 5, mask_shape, magnitude=3.0)
    got = reference.run(attention_graph(2, 7, 9, 3, 5, mask_shape), feeds)["y"]
    want = reference.run(decomposed_attention_graph(2, 7, 9, 3, 5, mask_shape), feeds)["y"]
    assert_array_equal(got, want)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_attention_row_masked_entirely_is_nan_like_softmax() -> None:
    feeds = attention_inputs(RNG, 1, 2, 3, 1, 2, (2, 3))
    feeds["mask"][1] = -np.inf
    got = reference.run(attention_graph(1, 2, 3, 1, 2, (2, 3)), feeds)["y"]
    assert np.isfinite(got[0, 0]).all() and np.isnan(got[0, 1]).all()


@pytest.mark.parametrize("shapes,attrs,message", [
    (([1, 4, 6], [1, 5, 6], [1, 5, 6]), {"heads": 4}, "heads=4 must be positive and divide the embedding 6"),
    (([1, 4, 6], [1, 5, 6], [1, 5, 6]), {"heads": 0}, "heads=0 must be positive"),
    (([1, 4, 6], [2, 5, 6], [2, 5, 6]), {"heads": 2}, "must be [1, Skv, 6] to match q [1, 4, 6]"),
    (([1, 4, 6], [1, 5, 4], [1, 5, 4]), {"heads": 2}, "must be [1, Skv, 6]"),
    (([1, 4, 6], [1, 5, 6], [1, 4, 6]), {"heads": 2}, "k [1, 5, 6] and v [1, 4, 6] must have the same shape"),
    (([4, 6], [5, 6], [5, 6]), {"heads": 2}, "q must be [batch, sequence, embed], got [4, 6]"),
    (([1, 4, 6], [1, 5, 6], [1, 5, 6], [4, 4]), {"heads": 2}, "mask [4, 4] does not broadcast to [batch, heads, Sq, "
                                                             "Skv] = [1, 2, 4, 5]"),
    (([1, 4, 6], [1, 5, 6], [1, 5, 6], [1, 1, 1, 4, 5]), {"heads": 2}, "mask [1, 1, 1, 4, 5] does not broadcast"),
    (([1, 4, 6], [1, 5, 6], [1, 5, 6]), {}, "missing required attribute 'heads'"),
])
def test_attention_type_errors_name_the_shapes(shapes: tuple[list[int], ...], attrs: dict, message: str) -> None:
    b = GraphBuilder("bad")
    ins = [b.input(n, f32[tuple(s)]) for n, s in zip(("q", "k", "v", "mask"), shapes)]
    with pytest.raises(BuildError) as err:
        b.op("attention", *ins, **attrs)
    assert message in str(err.value)


def test_attention_needs_f32() -> None:
    b = GraphBuilder("bad")
    q = b.input("q", i8[1, 2, 4])
    with pytest.raises(BuildError, match="attention: q must be f32, got i8"):
        b.attention(q, q, q, heads=2)


@pytest.mark.parametrize("sq,skv", [(6, 6), (4, 9), (9, 4), (1, 5)])
def test_causal_attention_is_the_triangular_mask_bit_for_bit(sq: int, skv: int) -> None:
    """causal=true equals an explicit additive mask of -inf above the top-left diagonal (key j > query i)."""
    feeds = attention_inputs(RNG, 2, sq, skv, 2, 3, None, magnitude=2.0)
    got = reference.run(attention_graph(2, sq, skv, 2, 3, causal=True), feeds)["y"]
    mask = np.where(np.arange(skv)[None, :] > np.arange(sq)[:, None], -np.inf, 0.0).astype(np.float32)
    want = reference.run(attention_graph(2, sq, skv, 2, 3, (sq, skv)), {**feeds, "mask": mask})["y"]
    assert_array_equal(got, want)
    loops = loop_attention(feeds["q"], feeds["k"], feeds["v"], mask, 2, 1.0 / math.sqrt(3))
    assert_allclose(got, loops, rtol=1e-5, atol=2e-6)


def test_causal_attention_prints_parses_and_defaults_off() -> None:
    from tensorsmith.ir import parse, print_graph

    g = attention_graph(1, 3, 3, 1, 2, causal=True)
    text = print_graph(g)
    assert "causal=true" in text
    assert print_graph(parse(text)) == text
    assert "causal" not in print_graph(attention_graph(1, 3, 3, 1, 2))  # the default is not printed
    with pytest.raises(BuildError, match="causal"):
        b = GraphBuilder("bad")
        q = b.input("q", f32[1, 3, 2])
        b.attention(q, q, q, heads=1, causal="yes")  # type: ignore[arg-type]
