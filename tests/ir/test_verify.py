"""verify() rejects malformed graphs, one test per error kind; builder and input errors name the culprit."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from tensorsmith.backends import reference
from tensorsmith.ir import (
    BuildError,
    Graph,
    GraphBuilder,
    InputError,
    Node,
    Value,
    VerificationError,
    f16,
    f32,
    i32,
    i64,
    verify,
)
from tensorsmith.ir.verify import ERROR_KINDS, dead_nodes, lint

W = np.arange(12, dtype=np.float32).reshape(3, 4) / 10


def base() -> Graph:
    """x -> h = linear -> a = relu -> y = add(a, a)."""
    b = GraphBuilder("g")
    x = b.input("x", f32[2, 4])
    a = b.relu(b.linear(x, W, name="h"), name="a")
    b.output(b.add(a, a, name="y"))
    return b.build()


def fails(g: Graph, kind: str, *names: str, node: Node | None = None, **kw: bool) -> VerificationError:
    """Assert verify(g) raises `kind`, naming every one of `names` (and pointing at `node`)."""
    with pytest.raises(VerificationError) as info:
        verify(g, **kw)
    err = info.value
    assert err.kind == kind, str(err)
    assert err.kind in ERROR_KINDS
    for name in names:
        assert name in str(err), (name, str(err))
    if node is not None:
        assert err.node is node
    return err


def test_base_graph_is_valid() -> None:
    assert verify(base()) is not None


def test_shape_mismatch_declared_type() -> None:
    g = base()
    relu = g.nodes[1]
    relu.outputs[0].type = f32[2, 5]
    err = fails(g, "shape-mismatch", "%a", "relu", "f32[2,5]", "f32[2,3]", node=relu)
    assert "producers:" in str(err) and "%h = linear" in str(err)  # the neighbours are printed
    assert "users:" in str(err) and "%y = add" in str(err)


def test_shape_mismatch_from_type_rule() -> None:
    x = Value("x", f32[2, 4])
    w = Value("w", f32[3, 5], np.zeros((3, 5), np.float32))
    n = Node("linear", [x, w], {}, [Value("h", f32[2, 3])])
    fails(Graph("g", [x], n.outputs, [n]), "shape-mismatch", "%h", "linear", "[2, 4]", "[3, 5]", node=n)


def test_dtype_mismatch_declared_type() -> None:
    g = base()
    relu = g.nodes[1]
    relu.outputs[0].type = f16[2, 3]
    fails(g, "dtype-mismatch", "%a", "f16[2,3]", node=relu)


def test_dtype_mismatch_from_type_rule() -> None:
    x, k = Value("x", f32[3]), Value("k", i32[3])
    n = Node("add", [x, k], {}, [Value("s", f32[3])])
    fails(Graph("g", [x, k], n.outputs, [n]), "dtype-mismatch", "%s", "add", node=n)


def test_use_before_def() -> None:
    g = base()
    g.nodes[1], g.nodes[2] = g.nodes[2], g.nodes[1]
    fails(g, "use-before-def", "%y", "%a", node=g.nodes[1])


def test_dangling_input() -> None:
    g = base()
    add = g.nodes[2]
    add.inputs[1] = Value("ghost", f32[2, 3])
    fails(g, "dangling", "%y", "%ghost", node=add)


def test_dangling_output() -> None:
    g = base()
    g.outputs = [Value("nowhere", f32[2, 3])]
    with pytest.raises(VerificationError) as info:
        verify(g, allow_dead=True)  # %y is no longer read: allow that, so the output check is reached
    assert info.value.kind == "dangling" and "%nowhere" in str(info.value)


def test_unused_node() -> None:
    g = base()
    dead = Node("tanh", [g.inputs[0]], {}, [Value("dead", f32[2, 4])])
    g.nodes.insert(1, dead)
    fails(g, "unused", "%dead", "tanh", node=dead, allow_dead=False)
    assert verify(g) is g  # dead code is valid IR: only `dce` removes it
    assert dead_nodes(g) == [dead]
    assert lint(g) == [f"warning: graph {g.name}, node %dead (tanh): dead, no output is used or returned "
                       "(the 'dce' pass removes it)"]
    assert lint(base()) == []


def test_unknown_op() -> None:
    g = base()
    g.nodes[1].op = "frobnicate"
    fails(g, "unknown-op", "%a", "frobnicate", node=g.nodes[1])


def test_attribute_missing() -> None:
    x = Value("x", f32[2, 3])
    n = Node("transpose", [x], {}, [Value("t", f32[3, 2])])
    fails(Graph("g", [x], n.outputs, [n]), "attribute", "%t", "perm", "missing", node=n)


def test_attribute_unknown() -> None:
    g = base()
    g.nodes[1].attrs["alpha"] = 0.1
    fails(g, "attribute", "%a", "alpha", node=g.nodes[1])


@pytest.mark.parametrize("op,attrs,word", [
    ("softmax", {"axis": "1"}, "axis"),
    ("softmax", {"axis": 1.5}, "axis"),
    ("softmax", {"axis": 4}, "axis"),
    ("gelu", {"approximate": "fast"}, "approximate"),
    ("transpose", {"perm": (0, 0)}, "perm"),
    ("reduce-sum", {"keepdims": 1}, "keepdims"),
])
def test_attribute_ill_typed_or_out_of_range(op: str, attrs: dict, word: str) -> None:
    x = Value("x", f32[2, 2])
    n = Node(op, [x], attrs, [Value("r", f32[2, 2])])
    fails(Graph("g", [x], n.outputs, [n]), "attribute", "%r", op, word, node=n)


def test_cycle() -> None:
    x = Value("x", f32[2])
    p, q = Value("p", f32[2]), Value("q", f32[2])
    n1 = Node("add", [x, q], {}, [p])
    n2 = Node("relu", [p], {}, [q])
    fails(Graph("g", [x], [q], [n1, n2]), "cycle", "%p", "%q")


def test_duplicate_name_between_nodes() -> None:
    g = base()
    g.nodes[1].outputs[0].name = "h"
    fails(g, "duplicate-name", "'h'", node=g.nodes[1])


def test_duplicate_name_between_input_and_constant() -> None:
    g = base()
    g.nodes[0].inputs[1].name = "x"
    fails(g, "duplicate-name", "'x'", "constant")


def test_arity() -> None:
    g = base()
    g.nodes[2].inputs.append(g.nodes[1].outputs[0])
    fails(g, "arity", "%y", "add", "got 3", node=g.nodes[2])
    x = Value("x", f32[2])
    n = Node("relu", [], {}, [Value("r", f32[2])])
    fails(Graph("g", [x], n.outputs, [n]), "arity", "%r", "relu", node=n)


@pytest.mark.parametrize("data", [np.zeros((4, 3), np.float32), np.zeros((3, 4), np.int32),
                                  np.zeros((3, 4), np.float64)])
def test_constant_type(data: np.ndarray) -> None:
    g = base()
    g.nodes[0].inputs[1] = Value("w", f32[3, 4], data)
    fails(g, "constant-type", "@w", "f32[3,4]", str(data.dtype))


def test_input_carrying_data() -> None:
    g = base()
    g.inputs[0].data = np.zeros((2, 4), np.float32)
    fails(g, "constant-type", "%x")


def test_output_count() -> None:
    g = base()
    relu = g.nodes[1]
    relu.outputs.append(Value("a2", f32[2, 3], producer=relu))
    fails(g, "output-count", "%a", "relu", "2", node=relu)


def test_every_error_kind_is_tested() -> None:
    tested = {"shape-mismatch", "dtype-mismatch", "use-before-def", "dangling", "unused", "unknown-op",
              "attribute", "cycle", "duplicate-name", "arity", "constant-type", "output-count",
              "exit"}  # early-exit structure: tests/ir/test_exits.py
    assert tested == set(ERROR_KINDS)


# ---- builder errors ---------------------------------------------------------------------------
@pytest.mark.parametrize("build,words", [
    (lambda b, x: b.linear(x, np.zeros((3, 5), np.float32)), ("linear", "[1, 4]", "[3, 5]")),
    (lambda b, x: b.add(x, np.zeros((3,), np.float32)), ("add", "[1, 4]", "[3]")),
    (lambda b, x: b.matmul(x, np.zeros((3, 2), np.float32)), ("matmul", "[1, 4]", "[3, 2]")),
    (lambda b, x: b.reshape(x, [3, -1]), ("reshape", "[1, 4]", "[3, -1]")),
    (lambda b, x: b.conv2d(x, np.zeros((1, 1, 1, 1), np.float32)), ("conv2d", "[1, 4]", "[1, 1, 1, 1]")),
    (lambda b, x: b.softmax(x, axis=2), ("softmax", "axis 2")),
    (lambda b, x: b.relu(x, alpha=1.0), ("relu", "alpha")),
    (lambda b, x: b.add(x, x, x), ("add", "got 3")),
])
def test_builder_errors_name_op_and_shapes(build: Callable[[GraphBuilder, Value], Value],
                                           words: tuple[str, ...]) -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[1, 4])
    with pytest.raises(BuildError) as info:
        build(b, x)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_builder_rejects_unknown_op_and_empty_graph() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32[1, 4])
    with pytest.raises(KeyError, match="frobnicate"):
        b.op("frobnicate", x)
    with pytest.raises(AttributeError, match="frobnicate"):
        b.frobnicate(x)
    with pytest.raises(BuildError, match="no outputs"):
        b.build()
    with pytest.raises(BuildError, match="already taken"):
        b.input("x", f32[1])


# ---- input errors -----------------------------------------------------------------------------
def _two_inputs() -> Graph:
    b = GraphBuilder("g")
    x = b.input("x", f32[2, 3])
    ids = b.input("ids", i64[2])
    b.output(b.gather(x, ids))
    return b.build()


@pytest.mark.parametrize("feeds,words", [
    ({"x": np.zeros((2, 3), np.float32)}, ("missing", "'ids'")),
    ({"x": np.zeros((2, 3)), "ids": np.zeros(2, np.int64), "z": np.zeros(1)}, ("unknown", "'z'")),
    ({"x": np.zeros((3, 2), np.float32), "ids": np.zeros(2, np.int64)}, ("'x'", "[3, 2]", "[2, 3]")),
    ({"x": np.zeros((2, 3), np.float32), "ids": np.zeros(2, np.float32)}, ("'ids'", "float32", "i64")),
])
def test_input_errors_name_the_input(feeds: dict, words: tuple[str, ...]) -> None:
    with pytest.raises(InputError) as info:
        reference.run(_two_inputs(), feeds)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_inputs_cast_only_when_asked() -> None:
    feeds = {"x": np.ones((2, 3)), "ids": np.array([1, -1], np.int32)}
    with pytest.raises(InputError, match=r"input 'x' has dtype float64, expected f32"):
        reference.run(_two_inputs(), feeds)
    out = reference.run(_two_inputs(), feeds, cast=True)
    (y,) = out.values()
    assert y.dtype == np.float32 and y.shape == (2, 3)
