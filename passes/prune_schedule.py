"""Gradual pruning: the cubic sparsity schedule of Zhu & Gupta (2017), and keep-masks to fine-tune with elsewhere.

tensorsmith does not train. A training loop elsewhere asks `cubic_sparsity(step, ...)` for the
target at each step, prunes to it (`prune{sparsity=...}` on the current weights, or its own
code), and holds the pruned weights at zero with the masks `prune_masks(graph)` exports
(`save_masks` writes them to .npz or .safetensors, keyed by weight name).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..ir.graph import Graph

MATRIX_OPS = ("linear", "conv2d", "matmul")
MASK_FORMATS = (".npz", ".safetensors")


def cubic_sparsity(step: int, final: float, initial: float = 0.0, start: int = 0, steps: int = 100,
                   every: int = 1) -> float:
    """Target sparsity at `step`: s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3 (Zhu & Gupta 2017).

    Pruning happens every `every` (dt) steps from `start` (t0) for `steps` (n) pruning steps; t is
    the last pruning step at or before `step`, so the target holds between them. Before `start`
    it is `initial`, after `start + steps * every` it is `final`.
    """
    if not 0.0 <= initial <= final < 1.0:
        raise ValueError(f"cubic_sparsity: need 0 <= initial ({initial}) <= final ({final}) < 1")
    if steps < 1 or every < 1:
        raise ValueError(f"cubic_sparsity: steps ({steps}) and every ({every}) must be >= 1")
    if step < start:
        return initial
    t = min(step, start + steps * every)
    t = start + (t - start) // every * every
    frac = (t - start) / (steps * every)
    return final + (initial - final) * (1.0 - frac) ** 3


def prune_masks(graph: Graph, annotated_only: bool = True) -> dict[str, np.ndarray]:
    """Keep-masks (True where the weight is nonzero) of matrix-op weights, by constant name.

    With `annotated_only` (the default) only weights that carry a SparsityInfo, i.e. that a
    pruning pass wrote; otherwise every constant float weight of linear, conv2d and matmul.
    """
    out: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        if node.op not in MATRIX_OPS or len(node.inputs) < 2:
            continue
        w = node.inputs[1]
        if w.data is None or not w.type.dtype.is_float or (annotated_only and w.type.sparsity is None):
            continue
        out[w.name] = np.asarray(w.data) != 0
    return out


def save_masks(masks: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write boolean masks to .npz or .safetensors (by the file's suffix)."""
    p = Path(path)
    arrays = {k: np.ascontiguousarray(v, dtype=bool) for k, v in masks.items()}
    if p.suffix == ".npz":
        np.savez(p, **arrays)  # type: ignore[arg-type]
    elif p.suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file(arrays, str(p))
    else:
        raise ValueError(f"save_masks: {p} must end in one of {', '.join(MASK_FORMATS)}")
    return p


def load_masks(path: str | Path) -> dict[str, np.ndarray]:
    """Read masks written by `save_masks`."""
    p = Path(path)
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as d:
            return {k: d[k] for k in d.files}
    if p.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return dict(load_file(str(p)))
    raise ValueError(f"load_masks: {p} must end in one of {', '.join(MASK_FORMATS)}")
