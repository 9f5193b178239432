"""`bench case-study`: the BERT optimization case study's shape on all-MiniLM-L6-v2 and a BERT-base layer.

The published case study took BERT from 440 MB / 120 ms to 28 MB / 22 ms with pruning, INT8,
fusion and early exit together. Here each technique runs alone, then stacked in that order, at
batch 1 and sequence 128, with model bytes, measured latency, the cost model's latency per target
and quality (cosine to reference fp32), next to ONNX Runtime fp32 and int8 in the same run.
Targets checked on MiniLM: >= 8x smaller and >= 4x faster than our fp32 with cosine >= 0.98, and
faster than ONNX Runtime's best. Early exit is not among the techniques here: `bench`'s early-exit rows need a
model with a metric to bound them (resmlp-digits); MiniLM's exits are measured by `bench.early_exit --minilm`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Graph
from .configs import BASELINE, INT8, INT8_BACKEND_REL_ERR, Config, Runner
from .measure import Row

PRUNE = "prune{pattern=block,sparsity=0.3}"
"""The case study's pruning: 32x32 blocks, 30% of each layer (one-shot, no fine-tuning)."""

SEQ = 128
SIZE_TARGET = 8.0
SPEED_TARGET = 4.0
COSINE_TARGET = 0.98


def _numba(name: str, pipeline: str, fuse: bool) -> Config:
    int8 = INT8 in pipeline
    return Config(name, Runner.NUMBA, pipeline, fuse=fuse, backend_rel_err=INT8_BACKEND_REL_ERR if int8 else 1e-3)


CASE_STUDY_CONFIGS: tuple[Config, ...] = (
    _numba(BASELINE, "", False),
    _numba("fusion alone", "", True),
    _numba("pruning alone", PRUNE, False),
    _numba("int8 alone", INT8, False),
    _numba("pruning + int8", f"{PRUNE},{INT8}", False),
    _numba("pruning + int8 + fusion", f"{PRUNE},{INT8}", True),
    _numba("int8 + fusion (no pruning)", INT8, True),
    Config("ORT fp32", Runner.ONNXRUNTIME),
    Config("ORT int8 dynamic", Runner.ONNXRUNTIME, peer_variant="int8-dynamic"),
)
"""Each technique alone, then stacked in the case study's order, then the peers. No quality floor:
every row is timed and the summary judges quality against COSINE_TARGET."""

STACKED = "pruning + int8 + fusion"


@dataclass(frozen=True)
class CaseModel:
    """A model of the case study: its graph and inputs at batch 1, sequence 128."""

    name: str
    graph: Graph
    inputs: dict[str, np.ndarray]


def case_models() -> list[CaseModel]:
    """all-MiniLM-L6-v2 (when its weights are installed) and a BERT-base layer with random weights."""
    from .models import load_model

    out = []
    try:
        from .models.minilm import minilm_graph
        from .quantized_models import token_batch

        out.append(CaseModel("minilm-l6-b1s128", minilm_graph(1, SEQ),
                             token_batch(np.random.default_rng(0), 1, SEQ)))
    except (ImportError, FileNotFoundError):
        pass
    bert = load_model("bert-base-layer", batch=1, seq=SEQ)
    out.append(CaseModel("bert-base-layer-b1s128", bert.graph, bert.inputs))
    return out


def _judge(label: str, base: Row, row: Row, peer: Row | None) -> str:
    """One sentence: `row` against the size, speed and quality targets and the peer."""
    smaller = base.model_bytes / max(row.model_bytes, 1)
    faster = (base.median_ms or 0.0) / (row.median_ms or float("inf"))
    cos = row.cosine if row.cosine is not None else float("nan")
    line = (f"{label} ({row.config}): {smaller:.1f}x smaller (target {SIZE_TARGET:g}x: "
            f"{'met' if smaller >= SIZE_TARGET else 'missed'}), {faster:.2f}x faster (target {SPEED_TARGET:g}x: "
            f"{'met' if faster >= SPEED_TARGET else 'missed'}), cosine {cos:.4f} (target {COSINE_TARGET}: "
            f"{'met' if cos >= COSINE_TARGET else 'missed'})")
    if peer is not None and peer.median_ms and row.median_ms:
        line += (f"; {peer.config} {peer.median_ms:.3g} ms (cosine {peer.cosine:.4f}) vs {row.median_ms:.3g} ms: "
                 f"{'faster' if row.median_ms < peer.median_ms else 'slower'}")
    return line


def verdicts(rows: list[Row]) -> list[str]:
    """Per model: the stacked row, and the fastest of our rows that keeps cosine >= COSINE_TARGET, against the
    size, speed, quality and peer targets (every row stays in the table)."""
    out = []
    for model in dict.fromkeys(r.model for r in rows):
        mine = {r.config: r for r in rows if r.model == model}
        base, stacked = mine.get(BASELINE), mine.get(STACKED)
        if base is None or not base.median_ms:
            out.append(f"{model}: the baseline failed; no verdict")
            continue
        peers = [r for r in mine.values() if r.backend == "onnxruntime" and r.median_ms]
        peer = min(peers, key=lambda r: r.median_ms or 0.0) if peers else None
        if stacked is not None and stacked.median_ms:
            out.append(_judge(f"{model}: stacked", base, stacked, peer))
        keeping = [r for r in mine.values() if r.backend == "numba" and r.median_ms and r.cosine is not None
                   and r.cosine >= COSINE_TARGET]
        if keeping:
            best = min(keeping, key=lambda r: r.median_ms or 0.0)
            out.append(_judge(f"{model}: fastest with cosine >= {COSINE_TARGET}", base, best, peer))
    return out
