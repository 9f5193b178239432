"""The quantize pass's report: per-layer bounds, what was skipped and why, bytes saved."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from ..ir.graph import Node

if TYPE_CHECKING:
    from .quantize import Quantize
    from .sensitivity import LayerSensitivity
    from .smoothquant import Smoothed

_SHOWN = 6  # layers and skip details listed by name in a report


def layer_bound(op: str, meta: dict[str, Any]) -> str:
    """The stated output bound of one quantized layer, as text."""
    over = {"linear": "sum_k |x_k|", "matmul": "sum_k |a_k|", "conv2d": "sum |x| over the receptive field"}[op]
    ch = "j" if op == "matmul" else "i"
    bound = f"|dy_{ch}| <= max|dW_{ch}| * {over}"
    if meta.get("group_size") and meta.get("rounding") != "gptq":
        bound = f"|dy_{ch}| <= sum_g scale_{ch}g/2 * sum_(k in g) |x_k| (groups of {meta['group_size']} along K)"
    if "activation" in meta:
        bound += f" + scale_x/2 * sum |W'_{ch}| (x in the calibrated range)"
    return bound


def _layer(n: Node) -> str:
    m = n.meta["quantize"]
    s = f"{n.name} {m['precision']}"
    if "scale_min" in m:
        s += f" scale {m['scale_min']:.3g}..{m['scale_max']:.3g}"
    s += f" max|dW| {m['max_weight_error']:.3g}"
    if "activation" in m:
        a = m["activation"]
        s += f" x~u8 [{a['range'][0]:.3g}, {a['range'][1]:.3g}]"
    return s


def format_report(p: Quantize, done: list[Node], skipped: list[tuple[str, str]], bytes_before: int,
                  bytes_after: int, batches: int) -> str:
    """What the pass did, one paragraph: counts, bound, bytes, layers, skips with reasons."""
    parts = []
    if done:
        kinds = Counter(n.meta["quantize"]["precision"] for n in done)
        scheme = {"static": "weights and activations (static)", "dynamic": "weights, activations at run time (dynamic)"
                  }.get(p.scheme, "weight-only")
        head = f"quantized {len(done)} layer(s) " + ", ".join(f"{k} x{v}" for k, v in kinds.items())
        head += f", per {p.granularity}, {scheme}" if not p.group_size else \
            f", per group of {p.group_size} along K (conv2d per {p.granularity}), {scheme}"
        if any("activation" in n.meta["quantize"] for n in done):
            head += f"; activations asymmetric u8 per tensor from {p.calibration} over {batches} calibration batch(es)"
        parts.append(head)
        if bytes_after:
            parts.append(f"weights {bytes_before / 1e6:.3g} MB -> {bytes_after / 1e6:.3g} MB "
                         f"({bytes_before / bytes_after:.2f}x smaller)")
        ints = [k for k in kinds if k not in ("fp16", "bf16")]
        who = "each weight rounded to nearest" if p.rounding == "gptq" else "each weight"
        moves = (["by at most scale/2"] if ints else []) + (
            ["by at most half an ulp"] if len(ints) < len(kinds) else [])
        if p.group_size:
            parts.append(f"bound: {who} moves by at most its group's scale/2, so |dy_i| <= sum_g scale_ig/2 * "
                         f"sum_(k in g) |x_k| per output channel (groups of {p.group_size} along K)")
        else:
            parts.append(f"bound: {who} moves {' or '.join(moves)}, so |dy_i| <= max|dW_i| * sum|x| "
                         "per output channel")
        gptq = [n.meta["quantize"] for n in done if "rounding" in n.meta["quantize"]]
        if gptq:
            kept = [m for m in gptq if m["rounding"] == "gptq"]
            near = sum(m["output_error"]["nearest"] for m in gptq)
            now = sum(m["output_error"]["kept"] for m in gptq)
            parts.append(f"rounding=gptq: GPTQ kept on {len(kept)} of {len(gptq)} layer(s) (the rest round to nearest: "
                         f"GPTQ was not better there); squared output error on the calibration inputs summed over "
                         f"them {near:.4g} -> {now:.4g} ({now / near if near else 1.0:.2f}x); a GPTQ layer's weights "
                         "move past scale/2, its bound is |dy_i| <= max|dW_i| * sum|x| with max|dW_i| as measured")
        shown = sorted(done, key=lambda n: -n.meta["quantize"]["max_weight_error"])[:_SHOWN]
        more = f" (+{len(done) - len(shown)} more)" if len(done) > len(shown) else ""
        parts.append("; ".join(_layer(n) for n in shown) + more)
        reasons = [n.meta["quantize"]["reason"] for n in done if "reason" in n.meta["quantize"]]
        if reasons:
            parts.append("chosen: " + "; ".join(reasons[:_SHOWN]) + (" ..." if len(reasons) > _SHOWN else ""))
    else:
        parts.append("nothing quantized")
    if skipped:
        groups: dict[str, list[str]] = {}
        for cat, detail in skipped:
            groups.setdefault(cat, []).append(detail)
        text = []
        for cat, details in groups.items():
            more = f" (+{len(details) - 3} more)" if len(details) > 3 else ""
            text.append(f"{cat} x{len(details)}: " + ", ".join(details[:3]) + more)
        parts.append(f"skipped {len(skipped)}: " + "; ".join(text))
    return "; ".join(parts)


def format_smoothing(smoothed: list[Smoothed]) -> str:
    """Which activations SmoothQuant rescaled, and where X / s went (folded or an inserted mul)."""
    folded = [s for s in smoothed if not s.folded_into.startswith("mul ")]
    text = ", ".join(f"{s.value} -> {'+'.join(s.layers)} via {s.folded_into} (s {s.scale_min:.3g}..{s.scale_max:.3g})"
                     for s in smoothed[:_SHOWN])
    more = f" (+{len(smoothed) - _SHOWN} more)" if len(smoothed) > _SHOWN else ""
    return (f"smoothed {len(smoothed)} activation(s), {len(folded)} folded into their producer, "
            f"{len(smoothed) - len(folded)} by an inserted mul: {text}{more}")


def format_mixed(ranking: list[LayerSensitivity], fp32: set[str], cosine: float | None) -> str:
    """Which layers stayed f32 by sensitivity, with their SQNR, and the cosine reached."""
    kept = [s for s in ranking if s.layer in fp32]
    text = ", ".join(f"{s.layer} ({s.sqnr_db:.1f} dB)" for s in kept) or "none"
    reached = f"; output cosine on the calibration inputs {cosine:.4f}" if cosine is not None else ""
    return f"kept f32 by sensitivity: {text}{reached}"
