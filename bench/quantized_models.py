"""Benchmark: all-MiniLM-L6-v2 (batch 1, sequence 128) fp32 vs int8 on the Numba backend vs ONNX Runtime.

    python -m tensorsmith.bench.quantized_models --repeats 11

Variants: our fp32; int8 dynamic (`quantize{scheme=dynamic}`: activations quantized at run time per row;
and per tensor, as ONNX Runtime does); int8 static (`quantize{scheme=static}`, calibrated on a few random
token batches); ONNX Runtime fp32 and dynamic int8 (`onnxruntime.quantization.quantize_dynamic` on our
exported fp32 model), each in its own process; and that ONNX Runtime int8 model imported here and run after
`quantize-fold` (which folds its MatMulInteger products into the int8 kernels, exactly). Prints the int8
kernel path, median ms, speed-up over our fp32, and the cosine of each int8 embedding to our fp32 one (min
over the batch rows).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numba
import numpy as np
import onnx

from .. import runtime
from ..ir import Graph, from_onnx, to_onnx
from ..ir.bert_loader import BertLoadError
from ..passes import PassContext, run_pipeline
from .kernels import has, medians, table
from .models.minilm import minilm_graph
from .options import check_int8_paths, check_threads, positive_int
from .peer_process import time_onnx_in_subprocess

VOCAB = 30522
CALIBRATION_BATCHES = 4


def token_batch(rng: np.random.Generator, batch: int, seq: int) -> dict[str, np.ndarray]:
    """Random token ids (a [CLS]-like first token) and a full attention mask."""
    ids = rng.integers(1000, VOCAB, (batch, seq)).astype(np.int64)
    ids[:, 0] = 101
    return {"input_ids": ids, "attention_mask": np.ones((batch, seq), np.float32)}


def variants(g: Graph, rng: np.random.Generator, batch: int, seq: int) -> dict[str, Graph]:
    """The graphs timed: fp32 and the int8 pipelines."""
    cal = [token_batch(rng, batch, seq) for _ in range(CALIBRATION_BATCHES)]
    return {
        "fp32": g,
        "int8 dynamic": run_pipeline(g, "quantize{scheme=dynamic}"),
        "int8 dynamic per tensor": run_pipeline(run_pipeline(g, "quantize"),
                                                "quantize-fold{dynamic=true,granularity=tensor}"),
        "int8 static": run_pipeline(g, "quantize{scheme=static}", ctx=PassContext(calibration=cal)),
    }


def ort_int8_model(fp32_bytes: bytes) -> bytes:
    """ONNX Runtime's quantize_dynamic of the model, run in a child process (no ORT in this one)."""
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d, "f32.onnx"), Path(d, "q8.onnx")
        src.write_bytes(fp32_bytes)
        code = ("import sys; from onnxruntime.quantization import QuantType, quantize_dynamic; "
                "quantize_dynamic(sys.argv[1], sys.argv[2], weight_type=QuantType.QInt8)")
        subprocess.run([sys.executable, "-c", code, str(src), str(dst)], check=True, capture_output=True)
        return dst.read_bytes()


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(a.shape[0], -1).astype(np.float64), b.reshape(b.shape[0], -1).astype(np.float64)
    return float(np.min(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=positive_int, default=11)
    ap.add_argument("--threads", type=positive_int, default=numba.get_num_threads())
    ap.add_argument("--batch", type=positive_int, default=1)
    ap.add_argument("--seq", type=positive_int, default=128)
    ap.add_argument("--int8-path", default=None, help="force an int8 kernel path (default: the host's best)")
    ap.add_argument("--profile", action="store_true", help="print the per-kernel profile of int8 dynamic")
    args = ap.parse_args(argv)
    check_threads(ap, "--threads", [args.threads])
    if args.int8_path is not None:
        check_int8_paths(ap, "--int8-path", [args.int8_path])
    try:
        g = minilm_graph(args.batch, args.seq)
    except BertLoadError as e:
        ap.error(f"argument --seq: {e}")
    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    feeds = token_batch(rng, args.batch, args.seq)
    graphs = variants(g, rng, args.batch, args.seq)
    ort_int8 = None
    if has("onnxruntime"):
        fp32_bytes = to_onnx(g).SerializeToString()
        ort_int8 = ort_int8_model(fp32_bytes)
        graphs["ORT's int8 model imported"] = run_pipeline(from_onnx(onnx.load_from_string(ort_int8)), "quantize-fold")
    exes = {k: runtime.compile(v, backend="numba", int8_path=args.int8_path) for k, v in graphs.items()}
    out = g.outputs[0].name
    ref = exes["fp32"].run(feeds)[out]
    paths = {exe.stats["int8_path"] for exe in exes.values()} - {None}
    print(f"int8 path: {', '.join(sorted(paths))}; threads: {args.threads}; batch {args.batch}, seq {args.seq}")
    ours: dict[str, Any] = {k: (lambda e=e: e.run(feeds)) for k, e in exes.items()}
    times = medians(ours, args.repeats)
    peers: dict[str, float] = {}
    if ort_int8 is not None:
        peers["ORT fp32"] = time_onnx_in_subprocess(fp32_bytes, feeds, repeats=args.repeats,
                                                    threads=args.threads).median_s
        peers["ORT int8 dynamic"] = time_onnx_in_subprocess(ort_int8, feeds, repeats=args.repeats,
                                                            threads=args.threads).median_s
    rows = []
    for k, t in times.items():
        cos = 1.0 if k == "fp32" else _cos(exes[k].run(feeds)[graphs[k].outputs[0].name], ref)
        rows.append([k, t * 1e3, times["fp32"] / t, cos])
    for k, t in peers.items():
        rows.append([k, t * 1e3, times["fp32"] / t, float("nan")])
    table("all-MiniLM-L6-v2: median ms, speed-up over our fp32, min cosine to our fp32 embedding",
          ["variant", "ms", "x fp32", "cosine"], rows)
    if args.profile:
        print(exes["int8 dynamic"].profile(feeds))


if __name__ == "__main__":
    main()
