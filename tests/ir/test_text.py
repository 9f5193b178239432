"""The text form: a golden printout, print/parse round trips, parse errors, and graph equality."""

from __future__ import annotations

import base64
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from tensorsmith.backends import reference
from tensorsmith.ir import (
    Graph,
    GraphBuilder,
    ParseError,
    SparsityInfo,
    Value,
    assert_graphs_equal,
    f32,
    graph_difference,
    graphs_equal,
    parse,
)

from tests.strategies import random_graphs

from . import sample_graphs as samples

GOLDEN = """\
graph mlp(%x: f32[1,4]) -> (f32[1,2], f32[1,2]) {
  %h = linear(%x, @w0, @h.bias) : f32[1,2]
  %a = gelu(%h) {approximate="tanh"} : f32[1,2]
  %s = softmax(%a) : f32[1,2]
  %q = quantize(%s) {scale=[0.5], zero_point=[3]} : i8[1,2]<quant scale=[0.5] zero_point=[3] bits=8>
  %y = dequantize(%q) {scale=[0.5], zero_point=[3]} : f32[1,2]
  return %y, %a
}
const @w0: f32[2,4] = [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875]
const @h.bias: f32[2] = [0.5, -1.0]
"""


def small() -> Graph:
    b = GraphBuilder("mlp")
    x = b.input("x", f32[1, 4])
    w0 = b.const(np.arange(8, dtype=np.float32).reshape(2, 4) / 8, "w0")
    a = b.gelu(b.linear(x, w0, np.array([0.5, -1.0]), name="h"), approximate="tanh", name="a")
    q = b.quantize(b.softmax(a, axis=-1, name="s"), 0.5, 3, name="q")
    b.output(b.dequantize(q, name="y"), a)
    return b.build()


def test_golden_print() -> None:
    g = small()
    assert g.to_text() == GOLDEN
    assert str(g) == GOLDEN  # nothing large enough to elide
    assert_graphs_equal(parse(GOLDEN), g)


def test_large_constants_print_as_blob_or_elided() -> None:
    b = GraphBuilder("big")
    x = b.input("x", f32[2, 10])
    w = np.arange(80, dtype=np.float32).reshape(8, 10) - 40
    b.output(b.linear(x, w, name="y"))
    g = b.build()
    last = g.to_text().splitlines()[-1]
    assert last.startswith('const @y.weight: f32[8,10] = blob"')
    blob = base64.b64decode(last.split('"')[1])
    assert blob == w.astype("<f4").tobytes()
    assert str(g).splitlines()[-1] == "const @y.weight: f32[8,10] = elided<320 bytes>"
    assert g.to_text(constants="elide") == str(g)


SAMPLES: dict[str, Callable[[], Graph]] = {
    "mlp": samples.mlp,
    "cnn": samples.cnn,
    "transformer-block": samples.transformer_block,
    "quant-and-sparsity": samples.annotated,
    "inline-constants": lambda: samples.constants(8),
    "blob-constants": lambda: samples.constants(100),
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_round_trip(name: str) -> None:
    g = SAMPLES[name]()
    text = g.to_text()
    back = parse(text)
    assert_graphs_equal(back, g)
    assert back.to_text() == text
    for v in back.constants:
        assert not v.data.flags.writeable


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer-block", "quant-and-sparsity"])
def test_round_trip_runs_identically(name: str) -> None:
    g = SAMPLES[name]()
    rng = np.random.default_rng(0)
    feeds = {}
    for v in g.inputs:
        feeds[v.name] = (rng.integers(-100, 100, v.type.shape) if not v.type.dtype.is_float
                         else rng.standard_normal(v.type.shape)).astype(v.type.dtype.np_dtype)
    want = reference.run(g, feeds)
    got = reference.run(parse(g.to_text()), feeds)
    assert list(got) == list(want)
    for k in want:
        assert_array_equal(got[k], want[k])


def test_annotations_survive_the_round_trip() -> None:
    back = parse(samples.annotated().to_text())
    types = {v.name: v.type for v in back.values()}
    assert types["qx"].quant.axis == 0 and types["qx"].quant.zero_point == (0, -3)
    assert types["w_block"].sparsity.block == (2, 4)
    assert (types["w_24"].sparsity.n, types["w_24"].sparsity.m) == (2, 4)
    assert types["w_chan"].sparsity.pattern == "channel"
    assert types["w_i4"].quant.group_size == 2 and types["w_i4"].quant.bits == 4
    assert types["q_out"].dtype.name == "u8" and types["q_out"].quant.scale == (0.1, 0.2, 0.3, 0.4)


@pytest.mark.parametrize("n", [8, 100])
def test_special_float_values_keep_their_bits(n: int) -> None:
    g = parse(samples.constants(n).to_text())
    for dt in ("f32", "f16", "bf16"):
        data = g.value(f"c_{dt}").data
        want = samples.constant_array(dt, n)
        assert data.dtype == want.dtype
        assert data.tobytes() == want.tobytes(), dt  # inf, -inf, nan, -nan, -0.0, extremes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_random_graphs_round_trip(case: tuple[Graph, dict[str, np.ndarray]]) -> None:
    g, feeds = case
    back = parse(g.to_text())
    assert graphs_equal(back, g), graph_difference(back, g)
    want, got = reference.run(g, feeds), reference.run(back, feeds)
    for k in want:
        assert_array_equal(got[k], want[k])


# ---- parse errors -----------------------------------------------------------------------------
HEADER = "graph g(%x: f32[2]) -> f32[2] {\n"
BAD_TEXTS = {
    "unknown op": (HEADER + "  %y = frob(%x) : f32[2]\n  return %y\n}\n", 2, 8, "unknown op 'frob'"),
    "bad character": (HEADER + "  %y = relu(%x) $ f32[2]\n  return %y\n}\n", 2, 17, "unexpected character '$'"),
    "unknown dtype": ("graph g(%x: f33[2]) -> f32[2] {\n  return %x\n}\n", 1, 13, "unknown dtype 'f33'"),
    "undefined value": (HEADER + "  %y = relu(%z) : f32[2]\n  return %y\n}\n", 2, 13, "%z used but never defined"),
    "bad attribute": (HEADER + '  %y = softmax(%x) {axis="a"} : f32[2]\n  return %y\n}\n', 2, 8, "'axis' must be int"),
    "truncated": (HEADER, 2, 1, "end of text"),
    "value count": (HEADER + "  return %x\n}\nconst @c: f32[3] = [1.0, 2.0]\n", 4, 20, "2 values"),
    "int range": (HEADER + "  return %x\n}\nconst @c: i8[2] = [1, 128]\n", 4, 19, "out of range"),
    "bad blob": (HEADER + '  return %x\n}\nconst @c: f32[2] = blob"AAA"\n', 4, 20, "bad blob"),
    "bad dimension": ("graph g(%x: f32[2.5]) -> f32[2] {\n  return %x\n}\n", 1, 17, "an integer in [0, "),
    "twice defined": (HEADER + "  %y = relu(%x) : f32[2]\n  %y = relu(%x) : f32[2]\n  return %y\n}\n", 3, 3,
                      "defined twice"),
}


@pytest.mark.parametrize("case", list(BAD_TEXTS))
def test_parse_errors_give_line_and_column(case: str) -> None:
    text, line, col, words = BAD_TEXTS[case]
    with pytest.raises(ParseError) as info:
        parse(text)
    msg = str(info.value)
    assert msg.startswith(f"line {line}, column {col}: "), msg
    assert words in msg
    src = text.splitlines()[line - 1] if line <= len(text.splitlines()) else ""
    assert msg.splitlines()[-2:] == ["  " + src, "  " + " " * (col - 1) + "^"]  # the line, a caret under the column


def test_parsing_an_elided_constant_is_a_clear_error() -> None:
    g = samples.mlp()
    with pytest.raises(ParseError, match=r"constant @fc1.weight was printed elided.*to_text"):
        parse(str(g))


_EDITS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 2),
                            st.sampled_from(list('%@[](){}<>,=:-."0123456789abinf \n') + ["blob", "nan", "i4"])),
                  min_size=1, max_size=3)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["mlp", "cnn", "quant-and-sparsity", "inline-constants", "blob-constants"]), _EDITS)
def test_damaged_text_raises_only_parse_errors(name: str, edits: list[tuple[int, int, str]]) -> None:
    text = _TEXTS[name]
    for pos, kind, s in edits:
        p = pos % (len(text) + 1)
        text = text[:p] if kind == 0 else text[:p] + text[p + 1:] if kind == 1 else text[:p] + s + text[p:]
    try:
        assert isinstance(parse(text), Graph)
    except ParseError as e:
        assert str(e).startswith("line ") or str(e).startswith("graph ")


_TEXTS = {name: SAMPLES[name]().to_text() for name in SAMPLES}


# ---- graph equality ---------------------------------------------------------------------------
def test_copy_is_equal_and_independent() -> None:
    g = samples.transformer_block()
    c = g.copy()
    assert graphs_equal(g, c) and graph_difference(g, c) is None
    c.nodes[0].attrs["extra"] = 1
    assert not graphs_equal(g, c)


def test_graphs_equal_detects_a_changed_attribute() -> None:
    g, c = samples.cnn(), samples.cnn()
    assert graphs_equal(g, c)
    c.nodes_of("maxpool2d")[0].attrs["ceil_mode"] = True
    assert not graphs_equal(g, c)
    with pytest.raises(AssertionError, match="maxpool2d.*attrs"):
        assert_graphs_equal(g, c)


def test_graphs_equal_detects_a_changed_constant_byte() -> None:
    g = samples.mlp()
    c = g.copy()
    w = c.nodes[0].inputs[1]
    raw = bytearray(w.data.tobytes())
    raw[17] ^= 1
    c.nodes[0].inputs[1] = Value(w.name, w.type, np.frombuffer(bytes(raw), w.data.dtype).reshape(w.data.shape))
    assert graph_difference(g, c) == "constant @fc1.weight: data differs"


def test_graphs_equal_detects_renamed_values() -> None:
    g = samples.mlp()
    for rename in ("input", "node", "constant"):
        c = g.copy()
        v = {"input": c.inputs[0], "node": c.nodes[1].outputs[0], "constant": c.nodes[0].inputs[2]}[rename]
        v.name = v.name + "_renamed"
        assert not graphs_equal(g, c), rename


def test_graphs_equal_detects_changed_types_and_structure() -> None:
    g = samples.mlp()
    c = g.copy()
    act = c.nodes[1].outputs[0]
    act.type = act.type.replace(dtype=f32)  # the same type again: still equal
    assert graphs_equal(g, c)
    act.type = act.type.replace(sparsity=SparsityInfo("unstructured", 0.5))
    assert not graphs_equal(g, c)
    c = g.copy()
    c.nodes[2].op = "identity"
    assert not graphs_equal(g, c)
    c = g.copy()
    c.outputs = [c.nodes[3].outputs[0]]
    assert not graphs_equal(g, c)
