"""Early-exit test graphs: a small MLP with two exit heads, built with the builder, and the same MLP without exits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tensorsmith.ir import Graph, GraphBuilder, Value, f32, verify

Criterion = tuple[str, float, int]
"""(criterion, threshold, patience) of one exit."""

DEFAULT_CRITERIA: tuple[Criterion, Criterion] = (("max-prob", 0.9, 1), ("patience", 0.0, 2))


def exit_mlp(batch: int = 4, criteria: Sequence[Criterion] = DEFAULT_CRITERIA, *, exits: bool = True,
             features: int = 8, hidden: int = 16, classes: int = 3, seed: int = 0, tail: str = "") -> Graph:
    """x -> fc1 -> relu -> [head0, exit 0] -> fc2 -> relu -> [head1, exit 1] -> fc3 -> relu -> final -> exit_select.

    The same seed gives the same weights at any batch size; `exits=False` returns the network with only `final`
    as output. Exit 1 reads head0 as its earlier head when its criterion is patience or cosine. `tail` adds nodes
    after exit_select: "softmax" (probabilities of the selected logits, output "probs"), "batch-sum" (a sum over
    the batch axis added to them, which mixes rows) or "by-exit" (the logits plus the exit index, which reads it).
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
    if tail == "softmax":
        out = b.softmax(b.mul(out, b.const(np.float32(0.5), "half")), axis=-1, name="probs")
    elif tail == "batch-sum":
        out = b.add(out, b.reduce_sum(out, axes=[0], keepdims=True), name="probs")
    elif tail == "by-exit":
        out = b.add(out, b.reshape(b.cast(taken, dtype="f32"), [batch, 1]), name="probs")
    b.output(out, taken)
    return b.build()


def encoder_exits(batch: int = 6, threshold0: float = 0.5, threshold1: float = 0.9, *, seq: int = 5,
                  dim: int = 8, heads: int = 2, seed: int = 1) -> Graph:
    """Three self-attention blocks with a key mask; after blocks 1 and 2 a mean-pooled head and an exit.

    Exit 0 is max-prob on the projected mean of block 1, exit 1 the cosine of that of block 2 with that of
    block 1; the final output is that of block 3. Splitting heads reshapes with the batch
    in the target shape, so the runtimes must resize those reshapes for the rows left.
    """
    rng = np.random.default_rng(seed)
    hd = dim // heads

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)

    b = GraphBuilder("encoder-exits")
    x = b.input("x", f32[batch, seq, dim])
    mask = b.input("mask", f32[batch, 1, 1, seq])

    def split(v: Value) -> Value:
        return b.transpose(b.reshape(v, [batch, seq, heads, hd]), [0, 2, 1, 3])

    def block(h: Value, i: int) -> Value:
        q, k, v = (split(b.linear(h, w(dim, dim), w(dim), name=f"b{i}.{n}")) for n in "qkv")
        scores = b.add(b.mul(b.matmul(q, b.transpose(k, [0, 1, 3, 2])), np.float32(1 / np.sqrt(hd))), mask)
        ctx = b.reshape(b.transpose(b.matmul(b.softmax(scores, axis=-1), v), [0, 2, 1, 3]), [batch, seq, dim])
        h = b.layernorm(b.add(h, b.linear(ctx, w(dim, dim), w(dim))), name=f"b{i}.ln1")
        return b.layernorm(b.add(h, b.linear(b.gelu(b.linear(h, w(2 * dim, dim))), w(dim, 2 * dim))),
                           name=f"b{i}.out")

    def pooled(h: Value, i: int) -> Value:
        return b.linear(b.reduce_mean(h, axes=[1], keepdims=False), w(dim, dim) * 4, name=f"head{i}")

    h1 = block(x, 1)
    head0 = pooled(h1, 0)
    fire0 = b.exit(head0, criterion="max-prob", threshold=threshold0, name="fire0")
    h2 = block(h1, 2)
    head1 = pooled(h2, 1)
    fire1 = b.exit(head1, criterion="cosine", threshold=threshold1, earlier=[head0], name="fire1")
    final = pooled(block(h2, 3), 2)
    out, taken = b.exit_select(final, [(head0, fire0), (head1, fire1)], name="y")
    b.output(out, taken)
    return b.build()
