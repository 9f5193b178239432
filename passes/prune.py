"""prune: magnitude pruning of constant weights to unstructured, block, N:M or channel sparsity."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal

import numpy as np

from ..backends.cost import CostError, Target, choose_sparsity, load_target, node_cost
from ..ir.graph import Graph, Node, Value
from ..ir.sparsity import from_gemm_view, gemm_view
from ..ir.types import SparsityInfo
from .base import Pass, PassContext, PassResult, TargetRequiredError, register_pass
from .layer_timing import layer_speedup
from .prune_patterns import (
    block_mask,
    block_scores,
    channel_mask,
    global_fractions,
    nm_mask,
    row_scores,
    unstructured_mask,
)
from .target_guard import LayerChange, graph_latency, revert_until_not_worse

PRUNABLE_OPS = ("linear", "conv2d", "matmul")
PATTERNS = ("unstructured", "block", "nm", "channel", "auto")
BUDGETS = ("layer", "global")
BOUND = "||y - y'||_2 <= r * ||W||_F * ||x||_2"


@dataclass
class _Layer:
    """One pruned layer, for the report."""

    name: str
    label: str
    removed_norm: float
    zeroed: int
    note: str = ""


def measured_report(measured: dict[str, tuple[float, float]], predicted: dict[str, float],
                    target: str | None) -> str:
    """'measured on this machine (predicted on <target>): fc1 2.85x (3.10x), ...' for the pruned layers timed."""
    head = "measured on this machine" + (f" (predicted on {target})" if target else "")
    rows = [f"{name} {t0 / max(t1, 1e-12):.2f}x" + (f" ({predicted[name]:.2f}x)" if name in predicted else "")
            for name, (t0, t1) in measured.items()]
    return f"{head}: " + ", ".join(rows)


def split_names(text: str) -> list[str]:
    """`a+b|c` -> ["a", "b", "c"] (commas separate options in a pipeline string, so + or | here)."""
    return [p for p in re.split(r"[+|\s]+", text) if p]


def _detached(node: Node, weight: Value) -> Node:
    """A copy of `node` reading `weight`, for pricing it without touching the graph."""
    ins = [weight if i == 1 else v for i, v in enumerate(node.inputs)]
    out = node.outputs[0]
    return Node(node.op, ins, dict(node.attrs), [Value(out.name, out.type)])


def _restore(node: Node, weight: Value) -> None:
    """Put the dense `weight` back as `node`'s weight and forget the pruning record."""
    node.inputs[1] = weight
    node.meta.pop("prune", None)


@register_pass
class Prune(Pass):
    """Zeroes the smallest weights of linear, conv2d and matmul-by-a-constant layers to a sparse pattern.

    Options: `sparsity` (fraction of zeros; N:M fixes its own), `budget` (`layer`: each layer
    loses `sparsity` of its own weights; `global`: every candidate weight is ranked together by
    magnitude, one threshold across layers, so that `sparsity` of all their elements go; not
    for nm or auto), `pad` (ragged dimensions are padded with zeros to the block or to m instead
    of skipping the layer; the array keeps its shape and its annotation says `padded`), `pattern` (unstructured, block,
    nm, channel, or auto: the pattern the target accelerates, from the cost model's
    `choose_sparsity`; needs `ctx.target`), `block` (bh x bw, `32` means 32x32), `n`:`m`,
    `ops` and `skip` (node names, globs allowed; several joined by `+`), `min_params`, and for
    auto `min_gain`: a layer whose predicted speed-up on the target is below it stays dense.

    Each weight is read as the N x K matrix the GEMM sees (ir/sparsity.py): linear [N,K];
    conv2d [O, I/groups*kh*kw], grouped and depthwise included (a block must not straddle two
    groups); matmul's constant B [..., K, N] as [..., N, K]. unstructured drops the smallest
    |w|, block the bh x bw blocks of smallest L2 norm, channel the rows (output channels) of
    smallest L2 norm, nm keeps the n largest |w| of every m along K. Dimensions that are not a
    multiple of the block or of m are skipped with the reason unless `pad`. Skipped
    too, with their reason: quantized or non-float weights, weights under `min_params`, weights
    read elsewhere (shared), layers already as sparse as asked, layers named in `skip`.

    The pruned weight is a new constant of the same name whose type carries SparsityInfo
    (density = the fraction of elements, blocks, rows kept, or n/m) and whose array holds the
    zeros. Bound (lossy): per layer r = ||W - W'||_F / ||W||_F goes to node.meta["prune"] and
    the report; for y = Wx + b, ||y - y'||_2 <= ||W - W'||_2 ||x||_2 <= r ||W||_F ||x||_2 (for
    conv2d, x is the unfolded input patch; for matmul A @ B, each row of A). There is no
    input-independent elementwise bound, so `tolerance` leaves NumericCheck only shapes, NaNs and
    infinities to check; pass `NumericCheck(bounds={"prune": ...})` to hold a model to a tolerance.

    With `ctx.measure` (a graph timer, `runtime.graph_timer("numba")`), each pruned layer is also timed alone
    with its dense and its pruned weight, and the report gives the measured speed-up per layer beside the
    predicted one (`stats["measured_speedup"]` for the pruned layers together).
    """

    name = "prune"
    exact = False
    tolerance = (0.0, float(np.finfo(np.float32).max))  # no input-independent elementwise bound (docstring)

    sparsity: float = 0.5
    pattern: Literal["unstructured", "block", "nm", "channel", "auto"] = "unstructured"
    block: tuple[int, ...] = (32, 32)
    n: int = 2
    m: int = 4
    ops: str = "linear+conv2d+matmul"
    skip: str = ""
    min_params: int = 256
    min_gain: float = 1.05  # pattern=auto: prune a layer only when the target is predicted this much faster
    budget: Literal["layer", "global"] = "layer"
    pad: bool = False

    def __post_init__(self) -> None:
        """Check the options; errors name the option at fault."""
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"prune: sparsity={self.sparsity} must be in [0, 1)")
        if self.pattern not in PATTERNS:
            raise ValueError(f"prune: pattern={self.pattern!r} must be one of {', '.join(PATTERNS)}")
        if len(self.block) not in (1, 2) or min(self.block) < 1:
            raise ValueError(f"prune: block={self.block} must be one or two positive sizes (32 or 16x32)")
        if not 0 < self.n <= self.m:
            raise ValueError(f"prune: n={self.n}, m={self.m} must satisfy 0 < n <= m")
        bad = [o for o in split_names(self.ops) if o not in PRUNABLE_OPS]
        if bad or not split_names(self.ops):
            raise ValueError(f"prune: ops={self.ops!r}: {bad or 'none'} not prunable; choose from "
                             f"{'+'.join(PRUNABLE_OPS)}")
        if self.min_params < 0:
            raise ValueError(f"prune: min_params={self.min_params} must be >= 0")
        if self.budget not in BUDGETS:
            raise ValueError(f"prune: budget={self.budget!r} must be one of {', '.join(BUDGETS)}")
        if self.budget == "global" and self.pattern in ("nm", "auto"):
            raise ValueError(f"prune: budget=global ranks magnitudes across layers; pattern={self.pattern} fixes "
                             f"each layer's own density (use budget=layer)")

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        """Prune every eligible layer; report layers, removed norms, skips and the predicted gain."""
        if self.pattern == "auto" and ctx.target is None:
            raise TargetRequiredError(str(self), " (pattern=auto picks the pattern the target runs fastest)")
        target = load_target(ctx.target) if ctx.target is not None else None
        uses: dict[int, int] = {}
        for v in [v for n in graph.nodes for v in n.inputs] + list(graph.outputs):
            uses[id(v)] = uses.get(id(v), 0) + 1
        ops, skip = set(split_names(self.ops)), split_names(self.skip)
        done: list[_Layer] = []
        kept: list[str] = []
        lat = [0.0, 0.0]
        nodes = []
        for node in graph.nodes:
            if node.op not in ops:
                continue
            if any(fnmatchcase(node.name, p) for p in skip):
                kept.append(f"{node.name} (named in skip)")
                continue
            nodes.append(node)
        fractions = self._global_fractions(nodes, uses) if self.budget == "global" else {}
        guard = self.pattern == "auto" and target is not None
        before_s = graph_latency(graph, target) if guard and target is not None else None
        changes: list[LayerChange] = []
        predicted: dict[str, float] = {}
        measured: dict[str, tuple[float, float]] = {}
        for node in nodes:
            old = node.inputs[1]
            out = self._prune_node(node, target, uses, fractions.get(id(node)))
            if isinstance(out, str):
                kept.append(out)
                continue
            if target is not None:
                try:
                    was = node_cost(_detached(node, old), target).latency_s
                    now = node_cost(_detached(node, node.inputs[1]), target).latency_s
                except CostError:
                    was = now = 0.0
                if guard and now >= was:
                    _restore(node, old)
                    kept.append(f"{node.name} (left dense: the pruned weight is predicted no faster on "
                                f"{target.name}, {was * 1e6:.2f} -> {now * 1e6:.2f} us)")
                    continue
                lat[0] += was
                lat[1] += now
                predicted[node.name] = was / now if now > 0 else 1.0
                changes.append(LayerChange(node.name, was - now, lambda node=node, old=old: _restore(node, old)))
            if ctx.measure is not None:
                measured[node.name] = layer_speedup(ctx.measure, node, old, node.inputs[1])
            done.append(out)
        if guard and target is not None:
            undone = set(revert_until_not_worse(graph, target, before_s, changes))
            if undone:
                kept += [f"{d.name} (restored dense: the whole graph was predicted slower on {target.name})"
                         for d in done if d.name in undone]
                done = [d for d in done if d.name not in undone]
                lat[0] = lat[1] = 0.0  # the per-layer sum no longer describes what stays pruned
        stats = {"layers": len(done), "kept_dense": len(kept), "zeroed": sum(d.zeroed for d in done)}
        summary = f"pruned {len(done)} layer(s)" if done else "nothing pruned"
        if done:
            kinds = Counter(d.label.split(",")[0] for d in done)
            summary += " " + ", ".join(f"{k} x{v}" for k, v in kinds.items()) + f", {stats['zeroed']} weights zeroed"
        if kept:
            summary += f"; {len(kept)} kept dense"
        if target is not None and done and lat[1] > 0:
            stats["predicted_speedup"] = lat[0] / lat[1]
            summary += f"; predicted {lat[0] / lat[1]:.2f}x on {target.name} (emulated)"
        report = self._report(done, kept, target, lat)
        measured = {d.name: measured[d.name] for d in done if d.name in measured}
        if measured:
            t_dense, t_pruned = (sum(t[i] for t in measured.values()) for i in (0, 1))
            stats["measured_speedup"] = t_dense / max(t_pruned, 1e-12)
            summary += f"; measured {stats['measured_speedup']:.2f}x on this machine"
            report += "; " + measured_report(measured, predicted, target.name if target is not None else None)
        return PassResult(graph, bool(done), report, stats, summary)

    def _pattern(self, node: Node, target: Target | None) -> dict[str, Any] | str:
        """pattern, sparsity, block, n, m (and the cost model's note) for this node, or why it is skipped."""
        if self.pattern != "auto":
            bh, bw = (self.block * 2)[:2]
            return {"pattern": self.pattern, "sparsity": self.sparsity, "block": (bh, bw), "n": self.n,
                    "m": self.m, "note": ""}
        assert target is not None
        d = choose_sparsity(target, node, self.sparsity)
        if not d.applied:
            return d.reason
        if d.speedup is not None and d.speedup < self.min_gain:
            return (f"{node.name} left dense: {d.choice} is predicted {d.speedup:.2f}x on {target.name}, "
                    f"below min_gain={self.min_gain:.2f}")
        p = dict(d.params)
        return {"pattern": p["pattern"], "sparsity": float(p.get("sparsity", self.sparsity)),
                "block": tuple(p.get("block") or (1, 1)), "n": p.get("n"), "m": p.get("m"), "note": d.reason}

    def _global_fractions(self, nodes: list[Node], uses: dict[int, int]) -> dict[int, float]:
        """budget=global: per eligible node, the fraction of its units that one threshold across layers drops."""
        bh, bw = (self.block * 2)[:2]
        eligible, scores, sizes = [], [], []
        for node in nodes:
            if self._ineligible(node, uses) is not None:
                continue
            view = gemm_view(node.inputs[1].data, node.op)
            if self.pattern == "block":
                if (view.shape[1] % bh or view.shape[2] % bw) and not self.pad:
                    continue
                scores.append(block_scores(view, bh, bw))
                sizes.append(bh * bw)
            elif self.pattern == "channel":
                scores.append(row_scores(view))
                sizes.append(view.shape[2])
            else:
                scores.append(np.abs(view.astype(np.float64)))
                sizes.append(1)
            eligible.append(node)
        if not eligible:
            return {}
        return {id(n): f for n, f in zip(eligible, global_fractions(scores, sizes, self.sparsity))}

    def _ineligible(self, node: Node, uses: dict[int, int]) -> str | None:
        """Why the weight of `node` is not pruned at all, or None."""
        name, w = node.name, node.inputs[1]
        role = "B" if node.op == "matmul" else "weight"
        if w.data is None:
            return f"{name} ({node.op}: {role} is not a constant)"
        if w.type.quant is not None:
            return f"{name} (@{w.name} is quantized: prune before quantize)"
        if not w.type.dtype.is_float:
            return f"{name} (@{w.name} is {w.type.dtype.name}, not float)"
        if w.type.numel < self.min_params:
            return f"{name} ({w.type.numel} weights < min_params={self.min_params})"
        if uses.get(id(w), 0) > 1:
            return f"{name} (@{w.name} is shared with other readers)"
        return None

    def _prune_node(self, node: Node, target: Target | None, uses: dict[int, int],
                    fraction: float | None = None) -> _Layer | str:
        """Prune the weight of `node` in place (to `fraction` under a global budget), or say why it stays dense."""
        name, w = node.name, node.inputs[1]
        why = self._ineligible(node, uses)
        if why is not None:
            return why
        spec = self._pattern(node, target)
        if isinstance(spec, str):
            return f"{name} ({spec})"
        if fraction is not None:
            spec["sparsity"] = fraction
        pattern, sparsity, (bh, bw) = spec["pattern"], spec["sparsity"], spec["block"]
        view = gemm_view(w.data, node.op)
        if pattern == "unstructured":
            mask = unstructured_mask(view, sparsity)
        elif pattern == "channel":
            mask = channel_mask(view, sparsity)
        elif pattern == "block":
            groups = int(node.attrs.get("groups", 1)) if node.op == "conv2d" else 1
            mask = block_mask(view, sparsity, bh, bw, name, view.shape[1] // groups if groups > 1 else None,
                              self.pad)
        else:
            mask = nm_mask(view, spec["n"], spec["m"], name, self.pad)
        if isinstance(mask, str):
            return f"{name} ({mask})"
        pruned = view.copy()
        pruned[~mask] = 0
        w64 = view.astype(np.float64)
        diff = w64 - pruned.astype(np.float64)
        zeroed = int(np.count_nonzero(view)) - int(np.count_nonzero(pruned))
        if zeroed == 0:
            zeros = 1.0 - np.count_nonzero(view) / view.size
            return f"{name} (@{w.name} already fits {self._describe(spec)} at the asked sparsity with " \
                   f"{zeros:.0%} zeros: nothing to remove)"
        info = self._info(spec, pruned != 0)
        r = float(np.linalg.norm(diff) / np.linalg.norm(w64))
        node.inputs[1] = Value(w.name, w.type.replace(sparsity=info), from_gemm_view(pruned, w.type.shape, node.op))
        node.meta["prune"] = {"pattern": pattern, "density": info.density, "removed_norm": r,
                              **({"block": info.block} if info.block else {}),
                              **({"n": info.n, "m": info.m} if info.n else {}),
                              **({"reason": spec["note"]} if spec["note"] else {})}
        label = f"{self._describe(spec)}, density {info.density:.2f}"
        return _Layer(name, label, r, zeroed, spec["note"])

    @staticmethod
    def _describe(spec: dict[str, Any]) -> str:
        p = spec["pattern"]
        if p == "nm":
            return f"{spec['n']}:{spec['m']}"
        return f"block {spec['block'][0]}x{spec['block'][1]}" if p == "block" else p

    @staticmethod
    def _info(spec: dict[str, Any], nz: np.ndarray) -> SparsityInfo:
        """The annotation of the pruned view `nz` (its nonzero mask): density per pattern unit."""
        p = spec["pattern"]
        if p == "nm":
            ragged = bool(nz.shape[2] % spec["m"])
            return SparsityInfo("nm", spec["n"] / spec["m"], n=spec["n"], m=spec["m"], padded=ragged)
        if p == "block":
            bh, bw = spec["block"]
            ragged = bool(nz.shape[1] % bh or nz.shape[2] % bw)
            return SparsityInfo("block", float((block_scores(nz, bh, bw) > 0).mean()), block=(bh, bw), padded=ragged)
        if p == "channel":
            return SparsityInfo("channel", float(nz.any(axis=-1).mean()))
        return SparsityInfo("unstructured", float(nz.mean()))

    def _report(self, done: list[_Layer], kept: list[str], target: Target | None, lat: list[float]) -> str:
        parts = []
        if done:
            layers = "; ".join(f"{d.name} ({d.label}, r={d.removed_norm:.3f}" + (f"; {d.note}" if d.note else "")
                               + ")" for d in done)
            worst = max(done, key=lambda d: d.removed_norm)
            mean = sum(d.removed_norm for d in done) / len(done)
            parts.append(f"pruned {len(done)} layer(s): {layers}")
            parts.append(f"{sum(d.zeroed for d in done)} weights zeroed; removed norm r = ||W-W'||_F/||W||_F "
                         f"mean {mean:.3f}, worst {worst.removed_norm:.3f} ({worst.name}); per layer {BOUND}")
        else:
            parts.append("nothing pruned")
        if kept:
            parts.append("kept dense: " + "; ".join(kept))
        if target is not None and done and lat[1] > 0:
            parts.append(f"predicted on {target.name} (emulated): pruned layers {lat[0] * 1e6:.2f} us -> "
                         f"{lat[1] * 1e6:.2f} us ({lat[0] / lat[1]:.2f}x)")
        return "; ".join(parts)
