"""Early-exit test graphs: a small MLP with two exit heads, built with the builder, and the same MLP without exits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tensorsmith.ir import Graph, GraphBuilder, f32, verify

Criterion = tuple[str, float, int]
"""(criterion, threshold, patience) of one exit."""

DEFAULT_CRITERIA: tuple[Criterion, Criterion] = (("max-prob", 0.9, 1), ("patience", 0.0, 2))


def exit_mlp(batch: int = 4, criteria: Sequence[Criterion] = DEFAULT_CRITERIA, *, exits: bool = True,
             features: int = 8, hidden: int = 16, classes: int = 3, seed: int = 0) -> Graph:
    """x -> fc1 -> relu -> [head0, exit 0] -> fc2 -> relu -> [head1, exit 1] -> fc3 -> relu -> final -> exit_select.

    The same seed gives the same weights at any batch size; `exits=False` returns the network with only `final`
    as output. Exit 1 reads head0 as its earlier head when its criterion is patience or cosine.
    """
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 2 / np.sqrt(shape[-1])).astype(np.float32)

    (c0, t0, p0), (c1, t1, p1) = criteria
    b = GraphBuilder("exit-mlp")
    x = b.input("x", f32[batch, features])
    h1 = b.relu(b.linear(x, w(hidden, features), w(hidden), name="fc1"), name="act1")
    head0 = b.linear(h1, w(classes, hidden), w(classes), name="head0")
    fire0 = b.exit(head0, criterion=c0, threshold=t0, patience=p0, name="fire0") if exits else None
    h2 = b.relu(b.linear(h1, w(hidden, hidden), w(hidden), name="fc2"), name="act2")
    head1 = b.linear(h2, w(classes, hidden), w(classes), name="head1")
    earlier = [head0] if c1 in ("patience", "cosine") else []
    fire1 = b.exit(head1, criterion=c1, threshold=t1, patience=p1, earlier=earlier, name="fire1") if exits else None
    h3 = b.relu(b.linear(h2, w(hidden, hidden), w(hidden), name="fc3"), name="act3")
    final = b.linear(h3, w(classes, hidden), w(classes), name="final")
    if fire0 is None or fire1 is None:
        b.output(final)
        g = b.build(check=False)
        g.remove_dead_nodes()  # the heads, without their exits
        return verify(g)
    out, taken = b.exit_select(final, [(head0, fire0), (head1, fire1)], name="y")
    b.output(out, taken)
    return b.build()
