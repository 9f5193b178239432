"""Early-exit ops: `exit` decides per row whether a head's prediction is good enough to stop there,
`exit_select` takes each row's output from the first exit that fired (or the final output).

See docs/early-exit.md for the semantics, the segments they cut a graph into and how the runtimes stop.
"""

from __future__ import annotations

from typing import Any

from ..dtypes import boolean, f32, i32
from ..types import TensorType
from .registry import Attr, attr_error, dtype_error, register_op, shape_error

CRITERIA = ("max-prob", "entropy", "margin", "patience", "cosine")
"""How an exit decides that a row may stop (see `exit`'s doc)."""

THRESHOLD_RANGES: dict[str, tuple[float, float]] = {
    "max-prob": (0.0, 1.0),
    "margin": (0.0, 1.0),
    "entropy": (0.0, float("inf")),
    "cosine": (-1.0, 1.0),
    "patience": (0.0, 0.0),
}
"""Allowed threshold interval per criterion (inclusive); patience has no threshold (0.0)."""

EARLIER_HEADS: dict[str, tuple[int, int | None]] = {
    "max-prob": (0, 0),
    "entropy": (0, 0),
    "margin": (0, 0),
    "patience": (0, None),
    "cosine": (1, None),
}
"""Fewest and most earlier heads (None: any number) each criterion reads."""


@register_op("exit", ("head", "earlier*"), (
    Attr("index", "int"),
    Attr("criterion", "str", "max-prob", CRITERIA),
    Attr("threshold", "float", 0.0),
    Attr("patience", "int", 1),
), doc="bool[B]: rows whose criterion is met at this exit. max-prob: max softmax(head) >= threshold; entropy: "
       "entropy of softmax(head) <= threshold (nats); margin: top1 - top2 of softmax(head) >= threshold; patience: "
       "argmax of head and of the last patience - 1 earlier heads agree; cosine: cosine(head, earlier[-1]) >= "
       "threshold. Softmax over each row's values in f32 as the softmax op computes it.")
def _exit(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    head, earlier = ts[0], ts[1:]
    crit, thr, patience = a["criterion"], a["threshold"], a["patience"]
    if head.dtype != f32:
        raise dtype_error(f"exit: head must be f32, got {head.dtype.name}")
    if head.rank < 2 or head.shape[0] < 1:
        raise shape_error(f"exit: head {list(head.shape)} must be [B, ...] with B >= 1 and a value per row")
    for e in earlier:
        if e.shape != head.shape or e.dtype != head.dtype:
            raise shape_error(f"exit: earlier head {e} must have the head's type {head}")
    lo, hi = THRESHOLD_RANGES[crit]
    if not lo <= thr <= hi:
        raise attr_error(f"exit: {crit} threshold must lie in [{lo}, {hi}], got {thr}")
    if a["index"] < 0:
        raise attr_error(f"exit: index must be >= 0, got {a['index']}")
    if patience < 1:
        raise attr_error(f"exit: patience must be >= 1, got {patience}")
    fewest, most = EARLIER_HEADS[crit]
    if crit == "patience":
        fewest = patience - 1
    elif patience != 1:
        raise attr_error(f"exit: patience is for the patience criterion, not {crit}")
    if len(earlier) < fewest or (most is not None and len(earlier) > most):
        want = f"{fewest}" if most == fewest else f"at least {fewest}"
        raise attr_error(f"exit: {crit} reads {want} earlier head(s), got {len(earlier)}")
    if crit == "margin" and head.numel // head.shape[0] < 2:
        raise shape_error(f"exit: margin needs at least 2 values per row, head is {list(head.shape)}")
    return [TensorType((head.shape[0],), boolean)]


@register_op("exit_select", ("final", "pairs*"), num_outputs=2,
             doc="(out, taken): row r of out is head_k[r] for the smallest k with fire_k[r], else final[r]; taken[r] "
                 "is that k (i32), n when the row ran to the end. Inputs: final, head_0, fire_0, ..., head_n-1, "
                 "fire_n-1.")
def _exit_select(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    final, pairs = ts[0], ts[1:]
    if not pairs or len(pairs) % 2:
        raise shape_error(f"exit_select: takes final then (head, fire) pairs, got {len(ts)} inputs")
    if final.rank < 1:
        raise shape_error(f"exit_select: final {final} must be [B, ...]")
    rows = final.shape[0]
    for k in range(len(pairs) // 2):
        head, fire = pairs[2 * k], pairs[2 * k + 1]
        if head.shape != final.shape or head.dtype != final.dtype:
            raise shape_error(f"exit_select: head {k} is {head} but every head must have final's type {final}")
        if fire.dtype != boolean or fire.shape != (rows,):
            raise dtype_error(f"exit_select: fire {k} is {fire}, must be bool[{rows}]")
    return [final, TensorType((rows,), i32)]
