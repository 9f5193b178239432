"""quantize: post-training quantization of matrix-op weights (and activations) in QDQ form."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatch
from typing import Any, Literal

import numpy as np

from ..backends.cost import load_target
from ..ir.dtypes import f32
from ..ir.graph import Graph, Node, Value
from ..ir.ops.registry import get_op
from ..ir.types import TensorType
from .base import Pass, PassContext, PassResult, TargetRequiredError, register_pass
from .calibration import CalibrationStats, activation_range, gather_stats
from .gptq import GptqChoice, gptq_applies, gptq_or_nearest, gram_key, input_gram
from .quantize_fold import QuantizeFold
from .quantize_numeric import (
    HALF_PRECISIONS,
    INT_PRECISIONS,
    StoredWeight,
    activation_params,
    half_weight,
    quantize_grouped,
    quantize_weight,
)
from .quantize_report import format_mixed, format_report, format_smoothing, layer_bound
from .quantize_size import DEFAULT_MIN_KN, shared_widths, too_narrow
from .quantize_tables import quantize_tables
from .sensitivity import LayerSensitivity, agreement, choose_fp32, rank_layers, run_outputs
from .smoothquant import Smoothed, smooth, smoothable
from .target_guard import LayerChange, graph_latency, nodes_latency, remove_if_unused, revert_until_not_worse

WEIGHT_OPS = ("linear", "conv2d", "matmul")
TABLE_OP = "gather"
"""`ops=...+gather` also quantizes constant lookup tables (embeddings) to int8 per row (quantize_tables.py)."""
"""The matrix ops whose constant weight the pass quantizes."""

_TOLERANCE = {"fp16": (1e-2, 1e-3), "bf16": (5e-2, 1e-2), "int8": (5e-2, 5e-2), "uint8": (5e-2, 5e-2),
              "int4": (0.5, 0.5), "auto": (5e-2, 5e-2)}


class QuantizeError(ValueError):
    """The quantize pass cannot run as asked (no calibration data, ...)."""


@dataclass
class _Plan:
    node: Node
    precision: str
    reason: str = ""


def _emit(graph: Graph, anchor: Node, op: str, inputs: list[Value], name: str, **attrs: Any) -> Value:
    """Insert `op(inputs) {attrs}` before `anchor`; its output is named after `name`."""
    opdef = get_op(op)
    attrs = opdef.normalize_attrs(attrs)
    (t,) = opdef.infer([v.type for v in inputs], attrs)
    out = Value(graph.fresh_name(name), t)
    graph.insert_before(anchor, Node(op, inputs, attrs, [out]))
    return out


def _undo(graph: Graph, n: Node, x: Value, w: Value) -> None:
    """Give `n` back its activation `x` and f32 weight `w`; drop the widening and activation steps left unread."""
    added = [v.producer for v in n.inputs[:2] if v is not x and v is not w and v.producer is not None]
    n.inputs[0], n.inputs[1] = x, w
    n.meta.pop("quantize", None)
    for node in added:
        for src in [node] + [u.producer for u in node.inputs if u.producer is not None]:
            remove_if_unused(graph, src)


@register_pass
class Quantize(Pass):
    """Post-training quantization of linear / conv2d / matmul-with-constant-B weights, in QDQ form.

    precision=int8|uint8|int4: each weight W becomes a constant of that dtype (symmetric, round to
    nearest; per output channel with granularity=channel: axis 0 of linear [N,K] and conv2d [O,...],
    the last axis of matmul B [K,N]; one scale with granularity=tensor) read through a `dequantize`;
    the matrix op itself stays f32. fp16|bf16 store W in half precision followed by a `cast` to f32.
    scheme=static also puts quantize -> dequantize (asymmetric u8, per tensor) on each matrix op's
    activation input, with its range from streamed statistics of running the reference backend on
    `ctx.calibration` (calibration=minmax|percentile|entropy|mse, see `calibration.py`); `stats=PATH`
    reads them from / writes them to an .npz file, and `ctx.calibration_stats` keeps them in memory.
    smooth=ALPHA (static only) applies SmoothQuant to the linears first (`smoothquant.py`).
    keep_fp32=N keeps the N layers most sensitive to quantization in f32, and min_cosine=C keeps more,
    in sensitivity order, until the output cosine on the calibration inputs reaches C (`sensitivity.py`).
    With scheme=static or dynamic the pass ends with `quantize-fold` (quantize_fold.py; fold=false
    leaves the QDQ form): the int8 ops become qlinear / qmatmul / qconv2d, and with scheme=dynamic
    their activations are quantized at run time (quantize-dynamic) instead of from calibration;
    min_kn=M (scheme=static or dynamic; default 80, 0 = off) leaves in f32 the products whose reduction length
    K and output width N have a harmonic mean 2KN / (K + N) below M, such as a first convolution over 3 colour
    channels (K = 27): quantizing their activations costs more than the integer product saves; products reading
    one activation add their N up (`quantize_size.py`).
    grouped_conv=true also folds grouped conv2d with several input channels per group (see quantize_fold.py).
    precision=auto asks the cost model (`choose_precision`) per node for `ctx.target`.
    group_size=G (scheme=weight, precision=int4 or int8; 0 = off) gives a linear's W [N, K] (a matmul's
    2-D B [K, N]) one scale per output channel and group of G consecutive k, scale = max|w| / qmax over
    the group, held in an f32 constant [N, ceil(K/G)] ([ceil(K/G), N]) that `dequantize` reads as its
    second input (`group_size=G`, `axis` = the K axis; ONNX DequantizeLinear's block_size). When K is not
    a multiple of G the last group is shorter (as in ONNX); conv2d weights and matmuls with a B of rank
    > 2 keep `granularity`. The Numba backend runs int4 linears of up to 16 rows on an INT4 GEMM kernel.
    rounding=gptq (integer precisions, per channel or in groups; needs `ctx.calibration`) rounds the weights
    of linears, matmuls with a 2-D B and ungrouped conv2d by GPTQ (`gptq.py`: each rounding error spread over
    the weights not yet rounded, through the inverse Gram matrix of the layer's f32 inputs (conv2d: its
    patches) on the calibration data), and keeps it per layer only where its output error on those inputs is
    below round to nearest's. GPTQ moves a weight by more than scale/2, so those layers state the bound
    with their measured max|dW| (below).

    Stated bound: every weight rounded to nearest moves by at most scale/2 (its own channel's scale), so for a linear
    layer |y - y'|_i <= (scale_i / 2) * sum_k |x_k| (grouped: sum over groups g of (scale_ig / 2) *
    sum_{k in g} |x_k|); with scheme=static and x inside the calibrated
    range, + (scale_x / 2) * sum_k |W'_ik|. fp16/bf16 move each weight by at most half an ulp. The
    measured per-layer figures are in node.meta["quantize"] and in the report. `tolerance` is a
    coarse end-to-end guard for the numeric-check instrument, not the bound.
    """

    name = "quantize"
    exact = False
    precision: Literal["int8", "uint8", "int4", "fp16", "bf16", "auto"] = "int8"
    granularity: Literal["channel", "tensor"] = "channel"
    scheme: Literal["weight", "static", "dynamic"] = "weight"
    calibration: Literal["minmax", "percentile", "entropy", "mse"] = "minmax"
    percentile: float = 99.99
    stats: str = ""
    smooth: float = 0.0
    keep_fp32: int = 0
    min_cosine: float = 0.0
    ops: str = "linear+conv2d+matmul"
    skip: str = ""
    min_params: int = 16
    min_kn: int = DEFAULT_MIN_KN
    fold: bool = True
    grouped_conv: bool = False
    weight_bits: Literal["auto", "8", "7"] = "auto"
    group_size: int = 0
    rounding: Literal["nearest", "gptq"] = "nearest"

    def __post_init__(self) -> None:
        """Check the options; errors name the option at fault."""
        bad = [o for o in self.ops.split("+") if o not in (*WEIGHT_OPS, TABLE_OP)]
        if bad or not self.ops:
            raise ValueError(f"quantize: ops={self.ops!r} may only name {'+'.join((*WEIGHT_OPS, TABLE_OP))} "
                             "(joined by '+')")
        if not 0.0 < self.percentile <= 100.0:
            raise ValueError(f"quantize: percentile={self.percentile} must lie in (0, 100]")
        if self.scheme != "weight" and self.precision in HALF_PRECISIONS:
            raise ValueError(f"quantize: scheme={self.scheme} needs an integer precision, "
                             f"not precision={self.precision}")
        if self.min_params < 0:
            raise ValueError(f"quantize: min_params={self.min_params} must be >= 0")
        if self.min_kn < 0:
            raise ValueError(f"quantize: min_kn={self.min_kn} must be >= 0 (0: every product)")
        if not 0.0 <= self.smooth <= 1.0:
            raise ValueError(f"quantize: smooth={self.smooth} (alpha) must lie in [0, 1]")
        if self.smooth > 0 and self.scheme != "static":
            raise ValueError(f"quantize: smooth={self.smooth} needs scheme=static (it balances activation and weight)")
        if self.group_size < 0:
            raise ValueError(f"quantize: group_size={self.group_size} must be >= 0 (0: no groups)")
        if self.group_size and (self.scheme != "weight" or self.precision not in ("int4", "int8")):
            raise ValueError(f"quantize: group_size={self.group_size} needs scheme=weight and precision=int4 or "
                             f"int8, not scheme={self.scheme}, precision={self.precision}")
        if self.rounding == "gptq" and (self.precision not in INT_PRECISIONS or self.granularity != "channel"):
            raise ValueError(f"quantize: rounding=gptq needs an integer precision and granularity=channel, not "
                             f"precision={self.precision}, granularity={self.granularity}")
        if self.keep_fp32 < 0 or not 0.0 <= self.min_cosine <= 1.0:
            raise ValueError(f"quantize: keep_fp32={self.keep_fp32} must be >= 0 and min_cosine={self.min_cosine} "
                             "in [0, 1]")

    @property
    def tolerance(self) -> tuple[float, float]:  # type: ignore[override]
        """A coarse end-to-end (rtol, atol) for NumericCheck; the stated bound is per layer."""
        rtol, atol = _TOLERANCE[self.precision]
        return (2 * rtol, 2 * atol) if self.scheme == "static" else (rtol, atol)

    # ---- what to quantize ------------------------------------------------------------------
    def _weight_problem(self, n: Node) -> tuple[str, str] | None:
        """(category, detail) when `n`'s weight cannot or should not be quantized, else None."""
        if len(n.inputs) < 2:
            return ("no constant weight", f"{n.name} ({n.op} has one input)")
        x, w = n.inputs[0], n.inputs[1]
        if not w.is_constant:
            src = w.producer
            if src is not None and src.op in ("dequantize", "cast") and src.inputs[0].is_constant:
                return ("already quantized", f"{n.name} (weight is {src.op} of {src.inputs[0].type.dtype.name})")
            return ("no constant weight", f"{n.name} ({n.op} of two activations)")
        if w.type.quant is not None:
            return ("already quantized", f"{n.name} (weight {w.type})")
        if not w.type.dtype.is_float:
            return ("integer weight", f"{n.name} ({w.type.dtype.name})")
        if w.type.dtype != f32 or x.type.dtype != f32:
            return ("not f32", f"{n.name} (computes in {x.type.dtype.name} x {w.type.dtype.name})")
        if x.is_constant:
            return ("constant operands", f"{n.name} (both operands are constants)")
        if w.type.numel < self.min_params:
            return ("too small", f"{n.name} ({w.type.numel} params < min_params={self.min_params})")
        if not np.all(np.isfinite(w.data)):  # type: ignore[arg-type]
            return ("non-finite", f"{n.name} (weight holds NaN or inf)")
        return None

    def _axis(self, n: Node) -> int | None:
        """The output-channel axis of `n`'s weight (None per tensor)."""
        w = n.inputs[1]
        if self.granularity == "tensor" or w.type.rank == 0:
            return None
        if n.op == "matmul":
            return w.type.rank - 1 if w.type.rank >= 2 else None
        return 0

    def _group_axis(self, n: Node) -> int | None:
        """The K axis `n`'s weight is grouped along (group_size set, linear or matmul with a 2-D B), else None."""
        if not self.group_size or n.inputs[1].type.rank != 2 or n.op not in ("linear", "matmul"):
            return None
        return 1 if n.op == "linear" else 0

    def _plan(self, graph: Graph, ctx: PassContext) -> tuple[list[_Plan], list[tuple[str, str]]]:
        plans: list[_Plan] = []
        skipped: list[tuple[str, str]] = []
        ops = set(self.ops.split("+"))
        patterns = [p for p in self.skip.split("+") if p]
        judged = self.min_kn > 0 and self.scheme != "weight" and self.precision != "auto"
        widths = shared_widths(n for n in graph.nodes if judged and n.op in ops and n.op in WEIGHT_OPS
                               and self._weight_problem(n) is None)
        for n in graph.nodes:
            if n.op not in WEIGHT_OPS:
                continue
            if n.op not in ops:
                skipped.append(("excluded", f"{n.name} ({n.op} not in ops={self.ops})"))
                continue
            if any(fnmatch(n.name, p) for p in patterns):
                skipped.append(("excluded", f"{n.name} (skip={self.skip})"))
                continue
            why = self._weight_problem(n)
            if why is not None:
                skipped.append(why)
                continue
            narrow = too_narrow(n, self.min_kn, widths.get(id(n.inputs[0]), 0)) if judged else None
            if narrow is not None:
                skipped.append(("too narrow for int8 to pay", narrow))
                continue
            if self.precision != "auto":
                plans.append(_Plan(n, self.precision))
                continue
            from ..backends.cost.decisions import choose_precision  # the cost model decides per node

            assert ctx.target is not None
            d = choose_precision(ctx.target, n)
            if not d.applied or d.choice not in (*INT_PRECISIONS, *HALF_PRECISIONS):
                skipped.append((f"kept for {ctx.target}", d.reason))
            else:
                plans.append(_Plan(n, str(d.choice), d.reason))
        return plans, skipped

    # ---- rewriting ---------------------------------------------------------------------------
    def _store(self, graph: Graph, n: Node, precision: str, axis: int | None,
               gram: np.ndarray | None) -> tuple[Value, StoredWeight, GptqChoice | None] | None:
        """The narrow constant for `n`'s weight and the dequantize / cast that widens it (before `n`), and the
        GPTQ comparison when `gram` (its input's Gram matrix) is given."""
        w = n.inputs[1]
        assert w.data is not None
        gaxis = self._group_axis(n)
        choice = None
        if precision in HALF_PRECISIONS:
            hw = half_weight(w.data, HALF_PRECISIONS[precision], axis)
            if hw is None:
                return None
            sw = hw
        elif gaxis is not None:
            sw = quantize_grouped(w.data, INT_PRECISIONS[precision], gaxis, self.group_size)
        else:
            sw = quantize_weight(w.data, INT_PRECISIONS[precision], axis)
        if gram is not None and precision in INT_PRECISIONS:
            choice = gptq_or_nearest(n.op, w.data, sw, gram, INT_PRECISIONS[precision],
                                     self.group_size if gaxis is not None else 0)
            sw = choice.weight
        # zeros stay zeros (symmetric scales, round to nearest; GPTQ is not given sparse weights), so a pruned
        # weight keeps its sparsity
        stored_type = sw.type.replace(sparsity=w.type.sparsity)
        const = Value(graph.fresh_name(f"{w.name}.{sw.type.dtype.name}"), stored_type, sw.data)
        if sw.group_scale is not None:
            scale = Value(graph.fresh_name(f"{w.name}.scale"), TensorType(sw.group_scale.shape, f32), sw.group_scale)
            return _emit(graph, n, "dequantize", [const, scale], f"{w.name}.dq", axis=sw.axis,
                         group_size=sw.group_size), sw, choice
        if sw.scale is None:
            return _emit(graph, n, "cast", [const], f"{w.name}.f32", dtype="f32"), sw, choice
        return _emit(graph, n, "dequantize", [const], f"{w.name}.dq", scale=list(sw.scale),
                     zero_point=list(sw.zero_point or ()), axis=axis), sw, choice

    def _activation(self, graph: Graph, n: Node, lo: float, hi: float) -> tuple[Value, dict[str, Any]]:
        """quantize -> dequantize (asymmetric u8, per tensor) over [lo, hi] on `n`'s activation input."""
        x = n.inputs[0]
        scale, zp = activation_params(lo, hi)
        q = _emit(graph, n, "quantize", [x], f"{x.name}.q", scale=[scale], zero_point=[zp], axis=None, dtype="u8")
        dq = _emit(graph, n, "dequantize", [q], f"{x.name}.dq", scale=[scale], zero_point=[zp], axis=None)
        return dq, {"dtype": "u8", "scale": scale, "zero_point": zp, "range": (lo, hi), "max_error": scale / 2}

    # ---- calibration, smoothing, sensitivity -------------------------------------------------
    def _stats(self, graph: Graph, ctx: PassContext, wanted: Mapping[str, str],
               channels: tuple[str, ...] = ()) -> CalibrationStats:
        """Streamed statistics for `wanted` (name -> key), reused from ctx / `stats` or observed on ctx.calibration."""
        try:
            st = gather_stats(graph, wanted, channels, ctx.calibration_stats, self.stats, ctx.calibration)
        except Exception as e:  # noqa: BLE001 - re-raised with the pass named
            if not ctx.calibration:
                raise QuantizeError(f"pass {self}: scheme=static needs calibration data: PassContext(calibration="
                                    f"[{{input name: array}}, ...]) or saved statistics ({e})") from e
            raise QuantizeError(f"pass {self}: the calibration run failed: {e}") from e
        ctx.calibration_stats = st
        return st

    def _ranges(self, graph: Graph, ctx: PassContext, static: list[_Plan]) -> tuple[dict[int, tuple[float, float]],
                                                                                   list[Smoothed]]:
        """Smooth the static layers when asked, then the calibrated range of each one's activation (by id)."""
        smoothed: list[Smoothed] = []
        stage = ""
        if self.smooth > 0:
            xs = {p.node.inputs[0].name: p.node.inputs[0].name for p in static if smoothable(p.node)}
            st = self._stats(graph, ctx, xs, tuple(xs))
            absmax = {k: st[k].channel_absmax for k in xs}
            smoothed = smooth(graph, [p.node for p in static], absmax, self.smooth)  # type: ignore[arg-type]
            stage = f"smooth={self.smooth:g}:"
        wanted = {p.node.inputs[0].name: stage + p.node.inputs[0].name for p in static}
        st = self._stats(graph, ctx, wanted)
        ranges = {id(p.node.inputs[0]): activation_range(st[wanted[p.node.inputs[0].name]], self.calibration,
                                                         self.percentile) for p in static}
        return ranges, smoothed

    def _batches(self, ctx: PassContext, why: str) -> list[Mapping[str, np.ndarray]]:
        if not ctx.calibration:
            raise QuantizeError(f"pass {self}: {why} needs calibration inputs: PassContext(calibration=[...])")
        return list(ctx.calibration)

    def _only(self, graph: Graph, ctx: PassContext, fp32: set[str], grams: dict[str, np.ndarray]) -> Graph:
        """A copy of `graph` quantized by this pass's options except the layers named in `fp32`."""
        g = graph.copy()
        dataclasses.replace(self, keep_fp32=0, min_cosine=0.0)._quantize(g, ctx, fp32, grams)
        return g

    def sensitivity(self, graph: Graph, ctx: PassContext,
                    grams: dict[str, np.ndarray] | None = None) -> list[LayerSensitivity]:
        """Each layer this pass would quantize, quantized alone: output SQNR and cosine on ctx.calibration,
        most sensitive first (`sensitivity.format_sensitivity` makes a table)."""
        batches = self._batches(ctx, "sensitivity")
        names = [p.node.name for p in self._plan(graph, ctx)[0]]
        ref = run_outputs(graph, batches)
        grams = {} if grams is None else grams
        return rank_layers(names, lambda name: self._only(graph, ctx, set(names) - {name}, grams), batches, ref)

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        """Quantize every eligible matrix op; the report lists each layer's error and every skip."""
        if self.precision == "auto" and ctx.target is None:
            raise TargetRequiredError(str(self), " (precision=auto picks the precision the target runs fastest)")
        grams: dict[str, np.ndarray] = {}  # GPTQ's Gram matrices, observed once for every trial below
        if not (self.keep_fp32 or self.min_cosine):
            return self._quantize(graph, ctx, set(), grams)
        batches = self._batches(ctx, f"keep_fp32={self.keep_fp32}, min_cosine={self.min_cosine}")
        ranking = self.sensitivity(graph, ctx, grams)
        ref = run_outputs(graph, batches)
        fp32, cos = choose_fp32(ranking, self.keep_fp32, self.min_cosine,
                                lambda kept: agreement(ref, run_outputs(self._only(graph, ctx, kept, grams),
                                                                        batches)).cosine)
        result = self._quantize(graph, ctx, fp32, grams)
        return PassResult(graph, result.changed, result.report + "; " + format_mixed(ranking, fp32, cos),
                          {**result.stats, "kept_fp32": len(fp32)}, result.summary + f"; {len(fp32)} kept f32")

    def _gptq_grams(self, graph: Graph, ctx: PassContext, plans: list[_Plan],
                    grams: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """With rounding=gptq, the Gram matrix of each GPTQ layer's input (observed now where `grams` lacks it)."""
        if self.rounding != "gptq":
            return {}
        layers = {gram_key(p.node): p.node for p in plans if gptq_applies(p.node)}
        missing = [n for key, n in layers.items() if key not in grams]
        if missing:
            batches = self._batches(ctx, "rounding=gptq")
            try:
                grams.update(input_gram(graph, batches, missing))
            except Exception as e:  # noqa: BLE001 - re-raised with the pass named
                raise QuantizeError(f"pass {self}: the calibration run for GPTQ failed: {e}") from e
        return grams

    def _quantize(self, graph: Graph, ctx: PassContext, fp32: set[str], grams: dict[str, np.ndarray]) -> PassResult:
        """Quantize the planned layers but those named in `fp32`, in place."""
        plans, skipped = self._plan(graph, ctx)
        static = [p for p in plans if self.scheme == "static" and p.precision in INT_PRECISIONS]
        ranges: dict[int, tuple[float, float]] = {}
        smoothed: list[Smoothed] = []
        if static:
            ranges, smoothed = self._ranges(graph, ctx, static)
        skipped += [("kept f32 (sensitive)", p.node.name) for p in plans if p.node.name in fp32]
        plans = [p for p in plans if p.node.name not in fp32]
        grams = self._gptq_grams(graph, ctx, plans, grams)
        static_ids = {id(p) for p in static}
        weights: dict[tuple[int, str, int | None, int | None], tuple[Value, StoredWeight, GptqChoice | None]] = {}
        acts: dict[int, tuple[Value, dict[str, Any]]] = {}
        done: list[Node] = []
        bytes_before = bytes_after = 0
        guarded = self.precision == "auto" and self.scheme == "weight" and ctx.target is not None
        target = load_target(ctx.target) if guarded else None  # type: ignore[arg-type]
        before_s = graph_latency(graph, target) if target is not None else None
        changes: list[LayerChange] = []
        for p in plans:
            n, w, x0 = p.node, p.node.inputs[1], p.node.inputs[0]
            was = nodes_latency([n], target) if target is not None else None
            axis = self._axis(n)
            key = (id(w), p.precision, axis, self._group_axis(n))
            fresh = key not in weights
            if fresh:
                gram = grams.get(gram_key(n)) if gptq_applies(n) else None
                made = self._store(graph, n, p.precision, axis, gram)
                if made is None:
                    skipped.append(("overflow", f"{n.name} (weight overflows {p.precision})"))
                    continue
                weights[key] = made
            dq, sw, choice = weights[key]
            n.inputs[1] = dq
            if target is not None and was is not None:
                now = nodes_latency([n] + ([dq.producer] if fresh and dq.producer is not None else []), target)
                if now is not None and now >= was:
                    _undo(graph, n, x0, w)
                    if fresh:
                        del weights[key]
                    skipped.append((f"kept for {target.name}", f"{n.name} ({p.precision} as emitted, the weight "
                                    f"widened before the {n.op}, is predicted {was * 1e6:.2f} -> {now * 1e6:.2f} us)"))
                    continue
                changes.append(LayerChange(n.name, was - (now or was), lambda n=n, x0=x0, w=w: _undo(graph, n, x0, w)))
            if fresh:
                bytes_before += w.type.nbytes
                bytes_after += sw.type.nbytes + (sw.group_scale.nbytes if sw.group_scale is not None else 0)
            meta: dict[str, Any] = {"precision": p.precision, "scheme": "dynamic" if self.scheme == "dynamic" else
                                    "weight", "axis": axis,
                                    "max_weight_error": sw.max_error, "channel_error": sw.channel_error}
            if sw.group_scale is not None:
                meta.update(axis=sw.axis, group_size=sw.group_size, scale_min=float(sw.group_scale.min()),
                            scale_max=float(sw.group_scale.max()), weight_bound="scale/2 of its group")
            elif sw.scale is not None:
                meta.update(scale_min=min(sw.scale), scale_max=max(sw.scale), weight_bound="scale/2")
            else:
                meta.update(weight_bound=f"half an ulp of {sw.type.dtype.name}")
            if choice is not None:
                meta.update(rounding="gptq" if choice.gptq else "nearest", output_error={
                    "kept": choice.error, "nearest": choice.nearest_error})
                if choice.gptq:
                    meta["weight_bound"] = "max|dW| as measured (GPTQ moves weights past scale/2)"
            if id(p) in static_ids:
                x = n.inputs[0]
                if id(x) not in acts:
                    acts[id(x)] = self._activation(graph, n, *ranges[id(x)])
                n.inputs[0], meta["activation"] = acts[id(x)][0], acts[id(x)][1]
                meta["scheme"] = "static"
            if p.reason:
                meta["reason"] = p.reason
            meta["bound"] = layer_bound(n.op, meta)
            n.meta["quantize"] = meta
            done.append(n)
        if target is not None:
            undone = set(revert_until_not_worse(graph, target, before_s, changes))
            skipped += [(f"kept for {target.name}", f"{n.name} (quantized, the whole graph was predicted slower)")
                        for n in done if n.name in undone]
            done = [n for n in done if n.name not in undone]
        tables = []
        if TABLE_OP in self.ops.split("+"):
            if self.precision in INT_PRECISIONS:
                tables, table_skips = quantize_tables(graph, self.min_params, [p for p in self.skip.split("+") if p])
                skipped += table_skips
                bytes_before += sum(t.bytes_before for t in tables)
                bytes_after += sum(t.bytes_after for t in tables)
            else:
                skipped.append(("tables kept f32", f"precision={self.precision} (lookup tables go to int8 only)"))
        report = format_report(self, done, skipped, bytes_before, bytes_after, len(ctx.calibration or ()))
        if tables:
            report += "; " + "; ".join(f"table {t.name} int8 per row, {t.bytes_before / t.bytes_after:.2f}x smaller, "
                                       f"max error {t.max_error:.3g}" for t in tables)
        if smoothed:
            report += "; " + format_smoothing(smoothed)
        if self.fold and self.scheme != "weight" and done:
            folded = QuantizeFold(dynamic=self.scheme == "dynamic", weight_bits=self.weight_bits,
                                  grouped_conv=self.grouped_conv).run(graph, ctx)
            report += "\n" + folded.report
        kinds = Counter(n.meta["quantize"]["precision"] for n in done)
        summary = (f"quantized {len(done)} layer(s) " + ", ".join(f"{k} x{v}" for k, v in kinds.items())
                   + (f", weights {bytes_before / bytes_after:.2f}x smaller" if bytes_after else "")) if done \
            else "nothing quantized"
        if tables:
            summary += f"; {len(tables)} table(s) int8"
        if skipped:
            summary += f"; {len(skipped)} skipped"
        stats = {"layers": len(done), "tables": len(tables), "skipped": len(skipped), "smoothed": len(smoothed),
                 "weight_bytes_before": bytes_before, "weight_bytes_after": bytes_after}
        return PassResult(graph, bool(done) or bool(smoothed) or bool(tables), report, stats, summary)
