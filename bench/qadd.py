"""Benchmark of qadd against the QDQ form it replaces (dequantize, dequantize, add, quantize) and ONNX Runtime.

    python -m tensorsmith.bench.qadd --repeats 41

Per shape: the QDQ residual of u8 and s8 tensors on the Numba backend before and after `quantize-fold` (which
folds it into one qadd), both checked to give the same bytes, and ONNX Runtime on the QDQ model (in its own
process, default optimizations: it fuses the pattern into its own QLinearAdd). Median microseconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numba
import numpy as np

from .. import runtime
from ..ir import Graph, GraphBuilder, i8, to_onnx, u8
from ..passes import run_pipeline
from .kernels import has, medians, table
from .options import positive_int

SHAPES = ((128, 768), (128, 3072), (512, 3072))
"""Residual shapes: BERT-base rows at sequence 128 (hidden, FFN) and a batch of four sequences."""


def qdq_residual(shape: tuple[int, int]) -> Graph:
    """u8 x and s8 y dequantized per tensor, added, the sum quantized to u8."""
    b = GraphBuilder("residual")
    x, y = b.input("x", u8[shape]), b.input("y", i8[shape])
    s = b.add(b.dequantize(x, 0.031, 121), b.dequantize(y, 0.0173, -7))
    b.output(b.quantize(s, 0.047, 130, dtype="u8", name="sum"))
    return b.build()


def _feeds(shape: tuple[int, int]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.integers(0, 256, shape).astype(np.uint8), "y": rng.integers(-128, 128, shape).astype(np.int8)}


def ort_child(repeats: int, threads: int) -> None:
    """In a child process: ONNX Runtime on each QDQ residual, median seconds as JSON on stdout."""
    import onnxruntime as ort

    out = {}
    for shape in SHAPES:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(to_onnx(qdq_residual(shape)).SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        feeds = _feeds(shape)
        out[str(shape)] = medians({"ort": lambda s=sess, f=feeds: s.run(None, f)}, repeats)["ort"]
    print(json.dumps(out))


def main(argv: list[str] | None = None) -> None:
    """Time the QDQ form, qadd and ONNX Runtime per shape and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=positive_int, default=41)
    ap.add_argument("--threads", type=positive_int, default=2)
    ap.add_argument("--ort-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.ort_child:
        ort_child(args.repeats, args.threads)
        return
    ort_times: dict[str, float] = {}
    if has("onnxruntime"):
        cmd = [sys.executable, "-m", "tensorsmith.bench.qadd", "--ort-child", "--repeats", str(args.repeats),
               "--threads", str(args.threads)]
        ort_times = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    rows = []
    for shape in SHAPES:
        g = qdq_residual(shape)
        qdq = runtime.compile(g, backend="numba")
        folded = runtime.compile(run_pipeline(g, "quantize-fold"), backend="numba")
        feeds = _feeds(shape)
        if not np.array_equal(qdq.run(feeds)["sum"], folded.run(feeds)["sum"]):
            raise AssertionError(f"qadd and the QDQ form differ at {shape}")
        t = medians({"qdq": lambda e=qdq, f=feeds: e.run(f), "qadd": lambda e=folded, f=feeds: e.run(f)}, args.repeats)
        ort_t = ort_times.get(str(shape))
        rows.append([f"{shape[0]}x{shape[1]}", t["qdq"] * 1e6, t["qadd"] * 1e6, t["qdq"] / t["qadd"],
                     "-" if ort_t is None else ort_t * 1e6])
    table(f"QDQ residual add, {args.threads} thread(s), median us of {args.repeats}",
          ["shape", "numba QDQ", "numba qadd", "qadd speed-up", "ORT QDQ"], rows)


if __name__ == "__main__":
    main()
