"""What `fuse` buys: intermediate bytes, latency fused vs unfused vs ONNX Runtime, and the cost model's prediction.

    python -m tensorsmith.bench.fusion --repeats 11 [--profile]

Per model: bytes that the graph's equations write to memory before and after `fuse`; the Numba
backend's median latency with `fuse=False` and with the default (fused) pipeline; ONNX Runtime fp32
(which fuses attention, LayerNorm and GELU itself) timed in its own process on the unfused graph;
and the cost model's predicted fused/unfused ratio for `cpu-host` next to the measured one. `--profile` also
splits each model's time, ours (fused) and ONNX Runtime's (its profiler), into products with weights and the
rest, with each side's GFLOP/s in those products (`time_split.py`).
"""

from __future__ import annotations

import argparse
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
import onnx

from .. import runtime
from ..backends.cost import estimate
from ..ir import Graph, from_onnx, to_onnx
from ..passes import DEFAULT_CLEANUP, run_pipeline
from .calibrate import median_time
from .options import check_models, positive_int, split_csv
from .peer_process import PeerError, profile_onnx_in_subprocess, time_onnx_in_subprocess
from .time_split import describe, ort_split, our_split, weight_product_flops
from .warmup import warm_up

VIEW_OPS = frozenset({"reshape", "flatten", "identity", "dropout"})
"""Ops that relabel memory: they write nothing."""

DEFAULT_MODELS = ("mlp", "cnn", "transformer-block", "bert-base-layer", "minilm-l6-b1s128", "torch-encoder-layer",
                  "causal-layer-s512")


def written_bytes(graph: Graph) -> int:
    """Bytes the graph's equations write to memory: every output except pure relabelings, graph outputs included."""
    return sum(v.type.nbytes for n in graph.nodes if n.op not in VIEW_OPS for v in n.outputs)


@dataclass
class Case:
    """A model to measure: its unfused graph and inputs."""

    name: str
    graph: Graph
    inputs: dict[str, np.ndarray]


def _zoo(name: str) -> Case | None:
    from .models import list_models, load_model

    if not any(m.name == name and m.available for m in list_models()):
        return None
    m = load_model(name)
    return Case(name, m.graph, m.inputs)


def _minilm_b1s128() -> Case | None:
    """all-MiniLM-L6-v2 at batch 1, sequence 128 (the zoo entry runs the stored 24-sentence batch)."""
    try:
        from .models.minilm import minilm_graph
        g = minilm_graph(1, 128)
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    return Case("minilm-l6-b1s128", g, {"input_ids": rng.integers(0, 30000, (1, 128)).astype(np.int64),
                                        "attention_mask": np.ones((1, 128), np.float32)})


def _torch_encoder_layer() -> Case | None:
    """A torch.nn.TransformerEncoderLayer (d_model 384, 6 heads, GELU, sequence 128) exported to ONNX by PyTorch."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    torch.backends.mha.set_fastpath_enabled(False)
    layer = torch.nn.TransformerEncoderLayer(d_model=384, nhead=6, dim_feedforward=1536, batch_first=True,
                                             activation="gelu").eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x, src_mask=None, is_causal=False)

    x = torch.randn(1, 128, 384)
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Encoder(), (x,), buf, opset_version=14, dynamo=False, input_names=["x"],
                          output_names=["y"])
    g = run_pipeline(from_onnx(onnx.load_from_string(buf.getvalue())), DEFAULT_CLEANUP)
    return Case("torch-encoder-layer", g, {"x": x.numpy()})


def _causal_layer_s512() -> Case:
    """A decoder-style layer: the MiniLM-sized encoder block (hidden 384, 6 heads, FFN 1536) at sequence 512 whose
    scores add a constant causal mask (-inf above the diagonal), as PyTorch exports `generate_square_subsequent_mask`;
    `fuse` makes that mask the attention's `causal` flag."""
    from ..ir import GraphBuilder, f32
    from ..ir.ops.attention import causal_mask
    from .models.builtin import encoder_block, random_encoder_weights

    seq, hidden = 512, 384
    rng = np.random.default_rng(0)
    b = GraphBuilder("causal_layer")
    x = b.input("x", f32[1, seq, hidden])
    mask = b.const(causal_mask(seq, seq), "causal_mask")
    b.output(encoder_block(b, x, random_encoder_weights(rng, hidden, 4 * hidden), 6, "layer0", mask=mask))
    return Case("causal-layer-s512", b.build(), {"x": rng.standard_normal((1, seq, hidden)).astype(np.float32)})


SPECIAL: dict[str, Callable[[], Case | None]] = {"minilm-l6-b1s128": _minilm_b1s128,
                                                 "torch-encoder-layer": _torch_encoder_layer,
                                                 "causal-layer-s512": _causal_layer_s512}


def load_case(name: str) -> Case | None:
    """A model by name: a zoo entry or one of SPECIAL; None when what it needs is not installed."""
    return SPECIAL[name]() if name in SPECIAL else _zoo(name)


def measure(case: Case, repeats: int, threads: int, peer: bool) -> dict[str, float | str]:
    """One row: bytes, latencies and ratios for `case`."""
    fused_graph = run_pipeline(case.graph, "fuse")
    unfused = runtime.compile(case.graph, backend="numba", fuse=False)
    fused = runtime.compile(case.graph, backend="numba")
    want = unfused.run(case.inputs)
    got = fused.run(case.inputs)
    err = max(float(np.max(np.abs(got[k] - want[k]))) if want[k].size else 0.0 for k in want)
    warm_up(lambda: unfused.run(case.inputs), 2)  # as long as the peer's (warmup.py)
    t_unfused = median_time(lambda: unfused.run(case.inputs), repeats)
    warm_up(lambda: fused.run(case.inputs), 2)
    t_fused = median_time(lambda: fused.run(case.inputs), repeats)
    predicted = estimate(case.graph, "cpu-host").total.latency_s / estimate(fused_graph, "cpu-host").total.latency_s
    row: dict[str, float | str] = {
        "model": case.name, "MB written": written_bytes(case.graph) / 1e6,
        "MB written fused": written_bytes(fused_graph) / 1e6, "regions": len(fused.stats["fused"]),
        "unfused ms": t_unfused * 1e3, "fused ms": t_fused * 1e3, "measured x": t_unfused / t_fused,
        "predicted x": predicted, "max |fused - unfused|": err, "ORT ms": "-", "fused/ORT": "-"}
    if peer:
        try:
            ort = time_onnx_in_subprocess(to_onnx(case.graph).SerializeToString(), case.inputs, repeats=repeats,
                                          threads=threads)
            row["ORT ms"], row["fused/ORT"] = ort.median_s * 1e3, t_fused / ort.median_s
        except (PeerError, ImportError) as e:
            print(f"(ONNX Runtime on {case.name}: {e})")
    return row


def _fmt(v: float | str) -> str:
    if isinstance(v, str):
        return v
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def main(argv: list[str] | None = None) -> None:
    """Measure each model and print one table (ratios > 1 mean fusion is faster; fused/ORT < 1 beats ONNX Runtime)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help=f"comma-separated zoo models or {', '.join(SPECIAL)} (default: {','.join(DEFAULT_MODELS)})")
    p.add_argument("--repeats", type=positive_int, default=11)
    p.add_argument("--no-peer", action="store_true", help="skip ONNX Runtime")
    p.add_argument("--profile", action="store_true",
                   help="also split each model's time into products with weights and the rest, ours (fused) and "
                        "ONNX Runtime's (its profiler), with each side's GFLOP/s in those products")
    args = p.parse_args(argv)
    names = split_csv(args.models)
    check_models(p, "--models", names, extra=DEFAULT_MODELS, unavailable_ok=True)
    threads = numba.get_num_threads()
    print(f"threads {threads}; repeats {args.repeats}; medians after warm-up; ONNX Runtime in its own process")
    rows, splits = [], []
    for name in names:
        case = load_case(name)
        if case is None:
            print(f"({name}: not available here)")
            continue
        rows.append(measure(case, args.repeats, threads, not args.no_peer))
        if args.profile:
            splits.append(time_split(case, args.repeats, threads, not args.no_peer))
    if not rows:
        return
    cols = list(rows[0])
    widths = [max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(_fmt(r[c]).rjust(w) for c, w in zip(cols, widths)))
    if splits:
        print("\nwhere the time goes (each side's profiler, ms per run; GFLOP/s of the unfused graph's products with "
              "weights over each side's time in them):")
        for lines in splits:
            print("\n".join(lines))


def time_split(case: Case, repeats: int, threads: int, peer: bool) -> list[str]:
    """Lines splitting the fused executable's time, and ONNX Runtime's, into products with weights and the rest."""
    flops = weight_product_flops(case.graph)
    fused = runtime.compile(case.graph, backend="numba")
    warm_up(lambda: fused.run(case.inputs), 2)
    lines = [describe(f"{case.name}, Numba fused", our_split(fused.profile(case.inputs, repeats).to_dicts()), flops)]
    if peer:
        try:
            nodes = profile_onnx_in_subprocess(to_onnx(case.graph).SerializeToString(), case.inputs,
                                               repeats=repeats, threads=threads)
            lines.append(describe(f"{case.name}, ONNX Runtime", ort_split(nodes), flops))
        except (PeerError, ImportError) as e:
            lines.append(f"({case.name}: ONNX Runtime's profile failed: {e})")
    return lines


if __name__ == "__main__":
    main()
