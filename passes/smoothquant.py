"""SmoothQuant (Xiao et al. 2023): move per-channel range from a linear's activation into its weight.

For the linears reading one activation X [..., K] (weights W [N, K], one scale for all of them):
s_j = max|X_j|^alpha / max|W_:j|^(1-alpha), X' = X / s, W' = W * s, so X' W'^T = X W^T. X / s is
folded into the producer when that is exact and the producer has no other reader: a layernorm over
the last axis with a constant scale (and bias) gets scale / s (and bias / s); a linear with constant
weight [K, .] (and bias) gets its output rows divided by s. Otherwise a `mul` by 1/s is inserted
before the readers. Exact in real arithmetic; in f32 within a few roundings per product.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..ir.dtypes import f32
from ..ir.graph import Graph, Node, Value
from ..ir.ops.registry import get_op

SCALE_LIMITS = (1e-5, 1e5)
"""Smoothing scales are clipped to this range (a dead channel would otherwise blow up its weight)."""


@dataclass(frozen=True)
class Smoothed:
    """One smoothed activation: its name, the linears reading it, where X / s went, the scales' span."""

    value: str
    layers: tuple[str, ...]
    folded_into: str
    scale_min: float
    scale_max: float


def smoothing_scales(x_absmax: np.ndarray, w_absmax: np.ndarray, alpha: float) -> np.ndarray:
    """s_j = max|X_j|^alpha / max|W_j|^(1-alpha); 1 where either maximum is 0, clipped to SCALE_LIMITS."""
    x = np.asarray(x_absmax, np.float64)
    w = np.asarray(w_absmax, np.float64)
    ok = (x > 0) & (w > 0)
    s = np.where(ok, np.power(np.where(ok, x, 1.0), alpha) / np.power(np.where(ok, w, 1.0), 1.0 - alpha), 1.0)
    return np.clip(s, *SCALE_LIMITS).astype(np.float32)


def smoothable(n: Node) -> bool:
    """A linear with a constant f32 weight [N, K] and an f32 activation whose last axis is K."""
    if n.op != "linear" or len(n.inputs) < 2:
        return False
    x, w = n.inputs[0], n.inputs[1]
    return (w.is_constant and w.type.dtype == f32 and w.type.quant is None and w.type.rank == 2
            and not x.is_constant and x.type.dtype == f32 and x.type.rank >= 1
            and x.type.shape[-1] == w.type.shape[1])


def _const(graph: Graph, base: str, data: np.ndarray, like: Value) -> Value:
    return Value(graph.fresh_name(base), like.type, data.astype(np.float32))


def _fold_layernorm(graph: Graph, p: Node, s: np.ndarray) -> bool:
    """scale / s and bias / s on a layernorm over the last axis; False when that is not exact here."""
    rank = p.outputs[0].type.rank
    if len(p.inputs) < 2 or p.attrs.get("axis", -1) % rank != rank - 1:
        return False
    params = p.inputs[1:]
    if not all(v.is_constant and v.type.shape == s.shape for v in params):
        return False
    for i, v in enumerate(params, start=1):
        assert v.data is not None
        p.inputs[i] = _const(graph, f"{v.name}.smooth", v.data / s, v)
    return True


def _fold_linear(graph: Graph, p: Node, s: np.ndarray) -> bool:
    """Rows of the producing linear's weight (and bias) divided by s."""
    w = p.inputs[1]
    if not (w.is_constant and w.type.rank == 2 and w.type.shape[0] == s.shape[0]):
        return False
    if len(p.inputs) > 2 and not (p.inputs[2].is_constant and p.inputs[2].type.shape == s.shape):
        return False
    assert w.data is not None
    p.inputs[1] = _const(graph, f"{w.name}.smooth", w.data / s[:, None], w)
    if len(p.inputs) > 2:
        b = p.inputs[2]
        assert b.data is not None
        p.inputs[2] = _const(graph, f"{b.name}.smooth", b.data / s, b)
    return True


FOLDS = {"layernorm": _fold_layernorm, "linear": _fold_linear}
"""Producer op -> how X / s folds into it exactly."""


def _insert_mul(graph: Graph, x: Value, readers: list[Node], s: np.ndarray) -> str:
    """x * (1/s) before the first reader; the readers read it instead of x. Returns the mul's output name."""
    inv = Value(graph.fresh_name(f"{x.name}.smooth_inv"), f32[s.shape[0]], (1.0 / s).astype(np.float32))
    opdef = get_op("mul")
    attrs = opdef.normalize_attrs({})
    (t,) = opdef.infer([x.type, inv.type], attrs)
    out = Value(graph.fresh_name(f"{x.name}.smooth"), t)
    first = min(readers, key=graph.nodes.index)
    graph.insert_before(first, Node("mul", [x, inv], attrs, [out]))
    for r in readers:
        r.inputs[0] = out
    return out.name


def smooth(graph: Graph, layers: list[Node], x_absmax: Mapping[str, np.ndarray], alpha: float) -> list[Smoothed]:
    """Smooth the `layers` (smoothable linears) in place; `x_absmax` maps activation name -> max|X_j| per channel."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"smooth alpha={alpha} must lie in [0, 1]")
    groups: dict[int, list[Node]] = {}
    for n in layers:
        if smoothable(n):
            groups.setdefault(id(n.inputs[0]), []).append(n)
    users = graph.users()
    outputs = {id(v) for v in graph.outputs}
    done: list[Smoothed] = []
    for group in groups.values():
        x = group[0].inputs[0]
        if x.name not in x_absmax:
            raise ValueError(f"smooth: no per-channel statistics for {x.name!r} (read by {group[0].name})")
        w_absmax = np.max([np.abs(n.inputs[1].data).max(axis=0) for n in group], axis=0)  # type: ignore[union-attr]
        s = smoothing_scales(x_absmax[x.name], w_absmax, alpha)
        for n in group:
            w = n.inputs[1]
            assert w.data is not None
            n.inputs[1] = _const(graph, f"{w.name}.smooth", w.data * s[None, :], w)
        p = x.producer
        only_group = {id(r) for r in users.get(id(x), [])} == {id(n) for n in group} and id(x) not in outputs
        if p is not None and only_group and p.op in FOLDS and FOLDS[p.op](graph, p, s):
            where = f"{p.op} {p.name}"
        else:
            where = f"mul {_insert_mul(graph, x, group, s)}"
        done.append(Smoothed(x.name, tuple(n.name for n in group), where, float(s.min()), float(s.max())))
    return done
