"""A Graph pickles flat: any depth, values shared as in the original, regions and meta kept."""

from __future__ import annotations

import pickle

import numpy as np
from tensorsmith.backends import reference
from tensorsmith.ir import Graph, GraphBuilder, assert_graphs_equal, f32, verify
from tensorsmith.passes import run_pipeline


def deep_chain(length: int) -> Graph:
    """x -> (add a shared constant, relu) repeated `length` times."""
    b = GraphBuilder("deep")
    h = b.input("x", f32[2, 8])
    step = b.const(np.full((8,), 0.01, np.float32))
    for _ in range(length):
        h = b.relu(b.add(h, step))
    b.output(h)
    return b.build()


def test_a_graph_deeper_than_the_recursion_limit_round_trips() -> None:
    g = deep_chain(6000)  # 12000 nodes in one chain: pickling by reference would recurse about that deep
    back = pickle.loads(pickle.dumps(g))
    verify(back)
    assert_graphs_equal(back, g)
    x = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    np.testing.assert_array_equal(reference.run(back, {"x": x})[back.outputs[0].name],
                                  reference.run(g, {"x": x})[g.outputs[0].name])


def test_values_stay_shared_and_linked_to_their_producers() -> None:
    back = pickle.loads(pickle.dumps(deep_chain(3)))
    adds = back.nodes_of("add")
    assert all(n.inputs[1] is adds[0].inputs[1] for n in adds)  # one constant, read by every add
    assert not adds[0].inputs[1].data.flags.writeable
    for n in back.nodes:
        assert all(v.producer is n for v in n.outputs)
    assert back.outputs[0] is back.nodes[-1].outputs[0] and back.inputs[0] is adds[0].inputs[0]


def test_fused_regions_and_meta_survive() -> None:
    rng = np.random.default_rng(1)
    b = GraphBuilder("mlp")
    x = b.input("x", f32[4, 16])
    h = b.relu(b.linear(x, rng.standard_normal((32, 16)), rng.standard_normal(32)))
    b.output(b.linear(h, rng.standard_normal((8, 32)), np.zeros(8), name="y"))
    g = run_pipeline(b.build(), "fuse")
    g.nodes[0].meta["stream"] = 3
    back = pickle.loads(pickle.dumps(g))
    assert_graphs_equal(back, g)
    assert [n.op for n in back.nodes] == [n.op for n in g.nodes] and "fused" in [n.op for n in back.nodes]
    assert back.nodes[0].meta["stream"] == 3
    feeds = {"x": rng.standard_normal((4, 16)).astype(np.float32)}
    np.testing.assert_array_equal(reference.run(back, feeds)["y"], reference.run(g, feeds)["y"])
