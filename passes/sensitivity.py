"""Per-layer quantization sensitivity (output SQNR and cosine with one layer quantized) and mixed precision."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..ir.graph import Graph

Outputs = list[dict[str, np.ndarray]]
"""Model outputs by name, one dict per calibration batch."""


@dataclass(frozen=True)
class Agreement:
    """How close quantized outputs are to the f32 ones: SQNR in dB and the smallest row cosine."""

    sqnr_db: float
    cosine: float


@dataclass(frozen=True)
class LayerSensitivity:
    """The model's output agreement when only `layer` is quantized."""

    layer: str
    sqnr_db: float
    cosine: float


def run_outputs(graph: Graph, batches: Sequence[Mapping[str, np.ndarray]]) -> Outputs:
    """The graph's outputs on each batch (reference backend)."""
    from ..backends.reference import run  # the golden semantics (numpy)

    return [run(graph, dict(b)) for b in batches]


def agreement(ref: Outputs, out: Outputs) -> Agreement:
    """SQNR = 10 log10(sum y^2 / sum (y - y')^2) over every float output; cosine: the minimum over rows
    (axis 0 of each output, the rest flattened) of cos(y, y')."""
    sig = noise = 0.0
    cos = 1.0
    for r, o in zip(ref, out):
        for name, y in r.items():
            if not np.issubdtype(y.dtype, np.floating):
                continue
            a = y.astype(np.float64).reshape(y.shape[0] if y.ndim else 1, -1)
            b = o[name].astype(np.float64).reshape(a.shape)
            sig += float(np.sum(a * a))
            noise += float(np.sum((a - b) ** 2))
            na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
            both = (na > 0) & (nb > 0)
            if both.any():
                cos = min(cos, float(np.min(np.sum(a * b, axis=1)[both] / (na * nb)[both])))
    sqnr = np.inf if noise == 0 else (np.inf if sig == 0 else 10 * np.log10(sig / noise))
    return Agreement(float(sqnr), cos)


def rank_layers(layers: Sequence[str], quantize_only: Callable[[str], Graph],
                batches: Sequence[Mapping[str, np.ndarray]], ref: Outputs) -> list[LayerSensitivity]:
    """Each layer quantized alone (`quantize_only(name)`), most sensitive (lowest SQNR) first."""
    out = []
    for name in layers:
        a = agreement(ref, run_outputs(quantize_only(name), batches))
        out.append(LayerSensitivity(name, a.sqnr_db, a.cosine))
    return sorted(out, key=lambda s: (s.sqnr_db, s.cosine))


def choose_fp32(ranking: Sequence[LayerSensitivity], keep: int = 0, min_cosine: float = 0.0,
                quality: Callable[[set[str]], float] | None = None) -> tuple[set[str], float | None]:
    """The layers to keep in f32: the `keep` most sensitive, then more in ranking order until
    `quality(kept)` (the cosine with every other layer quantized) reaches `min_cosine`.

    Returns the set and the last measured cosine (None when none was measured).
    """
    kept = {s.layer for s in ranking[:keep]}
    if min_cosine <= 0.0 or quality is None:
        return kept, None
    cos = quality(kept)
    for s in ranking[keep:]:
        if cos >= min_cosine:
            break
        kept.add(s.layer)
        cos = quality(kept)
    return kept, cos


def format_sensitivity(ranking: Sequence[LayerSensitivity], top: int | None = None) -> str:
    """A markdown table of the ranking (most sensitive first), the first `top` rows."""
    rows = ["| layer | SQNR (dB) | min cosine |", "|---|---|---|"]
    rows += [f"| {s.layer} | {s.sqnr_db:.1f} | {s.cosine:.4f} |" for s in list(ranking)[:top]]
    return "\n".join(rows)
