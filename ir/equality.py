"""Structural equality of graphs: names, ops, attributes, types and constant bytes."""

from __future__ import annotations

from .graph import Graph, Value


def _vkey(v: Value) -> tuple:
    return ("@" if v.is_constant else "%", v.name, v.type)


def graph_difference(a: Graph, b: Graph) -> str | None:
    """The first difference between `a` and `b`, in words, or None when they are equal."""
    if a.name != b.name:
        return f"names differ: {a.name!r} vs {b.name!r}"
    if [_vkey(v) for v in a.inputs] != [_vkey(v) for v in b.inputs]:
        return "inputs differ"
    if len(a.nodes) != len(b.nodes):
        return f"node counts differ: {len(a.nodes)} vs {len(b.nodes)}"
    for i, (m, n) in enumerate(zip(a.nodes, b.nodes)):
        if m.op != n.op:
            return f"node {i}: op {m.op} vs {n.op}"
        attr_diff = _attrs_difference(m.attrs, n.attrs)
        if attr_diff is not None:
            return f"node {i} ({m.op}): {attr_diff}"
        if [_vkey(v) for v in m.inputs] != [_vkey(v) for v in n.inputs]:
            return f"node {i} ({m.op}): inputs differ"
        if [_vkey(v) for v in m.outputs] != [_vkey(v) for v in n.outputs]:
            return f"node {i} ({m.op}): outputs differ"
    if [_vkey(v) for v in a.outputs] != [_vkey(v) for v in b.outputs]:
        return "outputs differ"
    ca, cb = a.constants, b.constants
    if [_vkey(v) for v in ca] != [_vkey(v) for v in cb]:
        return "constants differ"
    for x, y in zip(ca, cb):
        assert x.data is not None and y.data is not None
        if x.data.dtype != y.data.dtype or x.data.tobytes() != y.data.tobytes():
            return f"constant @{x.name}: data differs"
    return None


def _attrs_difference(a: dict, b: dict) -> str | None:
    """How two attribute dicts differ (region bodies compared as graphs), or None."""
    if set(a) != set(b):
        return f"attribute names {sorted(a)} vs {sorted(b)}"
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, Graph) and isinstance(y, Graph):
            diff = graph_difference(x, y)
            if diff is not None:
                return f"body {k!r}: {diff}"
        elif x != y:
            return f"attrs {a} vs {b}"
    return None


def graphs_equal(a: Graph, b: Graph) -> bool:
    """True when `a` and `b` have the same structure, names, types, attributes and data."""
    return graph_difference(a, b) is None


def assert_graphs_equal(a: Graph, b: Graph) -> None:
    """Raise AssertionError describing the first difference between `a` and `b`."""
    diff = graph_difference(a, b)
    if diff is not None:
        raise AssertionError(f"graphs differ: {diff}")
