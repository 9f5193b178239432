"""Reference semantics of the early-exit ops `exit` and `exit_select` (docs/early-exit.md).

The softmax is the softmax op's (f64, rounded to f32); entropy, margin and cosine are computed in f64 from
that f32 softmax (or the f32 head). The Numba backend calls these same functions, so both backends fire on
exactly the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ...ir.graph import Node

Arrays = list[np.ndarray]


def _rows(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1)


def row_softmax(head: np.ndarray) -> np.ndarray:
    """Softmax over each row's values, computed as the softmax op does (f64, rounded to f32)."""
    x = _rows(head).astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _max_prob(head: np.ndarray, earlier: Sequence[np.ndarray], threshold: float, patience: int) -> np.ndarray:
    return row_softmax(head).max(axis=1) >= np.float32(threshold)


def _entropy(head: np.ndarray, earlier: Sequence[np.ndarray], threshold: float, patience: int) -> np.ndarray:
    p = row_softmax(head).astype(np.float64)
    logs = np.log(np.where(p > 0, p, 1.0))
    return -(p * logs).sum(axis=1) <= threshold


def _margin(head: np.ndarray, earlier: Sequence[np.ndarray], threshold: float, patience: int) -> np.ndarray:
    p = np.sort(row_softmax(head), axis=1)
    return (p[:, -1].astype(np.float64) - p[:, -2]) >= threshold


def _patience(head: np.ndarray, earlier: Sequence[np.ndarray], threshold: float, patience: int) -> np.ndarray:
    top = _rows(head).argmax(axis=1)
    fire = np.ones(head.shape[0], np.bool_)
    for e in earlier[len(earlier) - (patience - 1):] if patience > 1 else ():
        fire &= _rows(e).argmax(axis=1) == top
    return fire


def _cosine(head: np.ndarray, earlier: Sequence[np.ndarray], threshold: float, patience: int) -> np.ndarray:
    a, b = _rows(head).astype(np.float64), _rows(earlier[-1]).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.where(norms > 0, (a * b).sum(axis=1) / np.where(norms > 0, norms, 1.0), 0.0)
    return cos >= threshold


CRITERION_RULES: dict[str, Callable[[np.ndarray, Sequence[np.ndarray], float, int], np.ndarray]] = {
    "max-prob": _max_prob,
    "entropy": _entropy,
    "margin": _margin,
    "patience": _patience,
    "cosine": _cosine,
}
"""criterion -> fire(head, earlier_heads, threshold, patience) -> bool[B]."""


def exit_fire(node: Node, head: np.ndarray, earlier: Sequence[np.ndarray]) -> np.ndarray:
    """The fire mask of exit `node` for `head` (any number of rows) and its earlier heads."""
    a = node.attrs
    return CRITERION_RULES[a["criterion"]](head, earlier, a["threshold"], a["patience"])


def select_rows(final: np.ndarray, pairs: Sequence[np.ndarray], out: np.ndarray, taken: np.ndarray) -> None:
    """Write into `out` / `taken` each row's output from the first exit that fired, else from `final`."""
    n = len(pairs) // 2
    out[...] = final
    taken[...] = n
    for k in range(n - 1, -1, -1):
        fire = pairs[2 * k + 1]
        out[fire] = pairs[2 * k][fire]
        taken[fire] = k


def _exit(node: Node, xs: Arrays) -> np.ndarray:
    return exit_fire(node, xs[0], xs[1:])


def _exit_select(node: Node, xs: Arrays) -> Arrays:
    final = xs[0]
    out, taken = np.empty_like(final), np.empty(final.shape[0], np.int32)
    select_rows(final, xs[1:], out, taken)
    return [out, taken]


EXIT_RULES = {"exit": _exit, "exit_select": _exit_select}
"""Reference rules of the early-exit ops."""
