"""Attention benchmark: the tiled attention kernel vs the unfused op sequence on the Numba backend, and PyTorch.

    python -m tensorsmith.bench.attention [--seqs 128,512,1024] [--heads 12] [--head-dim 64] [--repeats 11] [--causal]

Both tensorsmith forms run on the Numba backend at batch 1: the `attention` op (one tiled kernel)
and the same computation as reshape/transpose/matmul/mul/softmax/matmul/transpose/reshape. Times
are medians after warm-up; compile time (lowering, arena planning, JIT) is reported apart. With `--causal`
the op has causal=true and the unfused sequence adds the causal mask as a constant.
PyTorch's `scaled_dot_product_attention` runs in its own process (its threads never spin beside
Numba's) with the same thread count, when torch is installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
import time

import numpy as np

from ..backends.numba.jit import num_threads
from ..backends.numba.k_microkernel import MR, NR
from ..backends.numba.rules_attention import attention_tiles_for, packed_path
from ..ir import Graph, GraphBuilder, f32
from ..ir.ops.attention import causal_mask
from ..runtime.numba_exec import NumbaExecutable
from .calibrate import BLAS_SPIN_SECONDS, median_time
from .options import check_threads, nonnegative_int, positive_int, positive_ints


def attention_graph(seq: int, heads: int, head_dim: int, causal: bool = False) -> Graph:
    """attention(q, k, v) at batch 1 as one op."""
    b = GraphBuilder("attention")
    e = heads * head_dim
    q, k, v = (b.input(n, f32[1, seq, e]) for n in ("q", "k", "v"))
    b.output(b.attention(q, k, v, heads=heads, causal=causal, name="y"))
    return b.build()


def unfused_graph(seq: int, heads: int, head_dim: int, causal: bool = False) -> Graph:
    """The same computation as separate ops (heads split by reshape + transpose)."""
    b = GraphBuilder("attention_unfused")
    e = heads * head_dim
    q, k, v = (b.input(n, f32[1, seq, e]) for n in ("q", "k", "v"))
    qh = b.transpose(b.reshape(q, (1, seq, heads, head_dim)), (0, 2, 1, 3))
    kt = b.transpose(b.reshape(k, (1, seq, heads, head_dim)), (0, 2, 3, 1))
    vh = b.transpose(b.reshape(v, (1, seq, heads, head_dim)), (0, 2, 1, 3))
    s = b.mul(b.matmul(qh, kt), np.float32(1.0 / math.sqrt(head_dim)))
    if causal:
        s = b.add(s, b.const(causal_mask(seq, seq), "causal_mask"))
    s = b.softmax(s, axis=-1)
    o = b.transpose(b.matmul(s, vh), (0, 2, 1, 3))
    b.output(b.reshape(o, (1, seq, e), name="y"))
    return b.build()


def time_numba(graph: Graph, feeds: dict[str, np.ndarray], repeats: int) -> tuple[float, float, np.ndarray]:
    """(compile seconds, median run seconds, output) of `graph` on the Numba backend."""
    t0 = time.perf_counter()
    exe = NumbaExecutable(graph)
    compile_s = time.perf_counter() - t0
    out = exe.run(feeds)["y"]
    return compile_s, median_time(lambda: exe.run(feeds), repeats, warmup=3), out


def torch_seconds(seq: int, heads: int, head_dim: int, threads: int, repeats: int, causal: bool = False) -> float:
    """Median seconds of torch's scaled_dot_product_attention (run in this process: call it in a child)."""
    import torch

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.rand(1, heads, seq, head_dim, generator=g) for _ in range(3))

    def run() -> object:
        with torch.no_grad():
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return median_time(run, repeats, warmup=3)


def torch_in_child(seq: int, heads: int, head_dim: int, threads: int, repeats: int,
                   causal: bool = False) -> float | None:
    """torch_seconds in a fresh process, or None when torch is missing or the child fails."""
    if importlib.util.find_spec("torch") is None:
        return None
    args = [sys.executable, "-m", "tensorsmith.bench.attention", "--torch-child", "--seqs", str(seq),
            "--heads", str(heads), "--head-dim", str(head_dim), "--threads", str(threads), "--repeats", str(repeats),
            *(["--causal"] if causal else [])]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"  (torch child failed: {done.stderr.strip().splitlines()[-1:]})")
        return None
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def main(argv: list[str] | None = None) -> None:
    """Print kernel vs unfused (and torch) per sequence length."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seqs", type=positive_ints, default="128,512,1024", help="sequence lengths, comma separated")
    p.add_argument("--heads", type=positive_int, default=12)
    p.add_argument("--head-dim", type=positive_int, default=64)
    p.add_argument("--repeats", type=positive_int, default=11)
    p.add_argument("--threads", type=nonnegative_int, default=0, help="thread count (default: Numba's)")
    p.add_argument("--causal", action="store_true", help="causal attention (query i sees keys 0..i)")
    p.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    check_threads(p, "--threads", [a.threads])
    seqs = a.seqs
    threads = a.threads or num_threads()
    if a.torch_child:
        print(json.dumps({"seconds": torch_seconds(seqs[0], a.heads, a.head_dim, threads, a.repeats, a.causal)}))
        return
    if a.threads:
        import numba

        numba.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    print(f"{'causal ' if a.causal else ''}attention, batch 1, {a.heads} heads of {a.head_dim}, {threads} threads, "
          f"median of {a.repeats}")
    print(f"{'seq':>6} {'tiles':>9} {'kernel ms':>10} {'unfused ms':>11} {'speedup':>8} {'torch ms':>9} "
          f"{'kernel/torch':>12} {'compile s (kernel/unfused)':>27}")
    for seq in seqs:
        e = a.heads * a.head_dim
        feeds = {n: rng.standard_normal((1, seq, e), dtype=np.float32) for n in ("q", "k", "v")}
        cu, tu_s, yu = time_numba(unfused_graph(seq, a.heads, a.head_dim, a.causal), feeds, a.repeats)
        time.sleep(BLAS_SPIN_SECONDS)  # the unfused matmuls run on BLAS: its workers spin a while after them
        ck, tk_s, yk = time_numba(attention_graph(seq, a.heads, a.head_dim, a.causal), feeds, a.repeats)
        time.sleep(BLAS_SPIN_SECONDS)
        err = float(np.abs(yk - yu).max())
        tt = torch_in_child(seq, a.heads, a.head_dim, threads, a.repeats, a.causal)
        tq, tk = attention_tiles_for(seq, seq, a.head_dim)
        torch_ms = f"{tt * 1e3:9.3f}" if tt else f"{'-':>9}"
        ratio = f"{tk_s / tt:12.2f}" if tt else f"{'-':>12}"
        print(f"{seq:>6} {f'{tq}x{tk}':>9} {tk_s * 1e3:10.3f} {tu_s * 1e3:11.3f} {tu_s / tk_s:8.2f} {torch_ms} "
              f"{ratio} {f'{ck:.2f} / {cu:.2f}':>27}   max|diff| {err:.1e}")
    if packed_path(a.head_dim):
        print(f"kernel path: both products of each tile on the {MR}x{NR} fp32 GEMM micro-kernel (K and V read in "
              "place, P read from the score tile, Q^T packed per head), online softmax with the vectorized float32 exp")
    else:
        print("kernel path: BLAS sgemm per score tile and per P @ V tile (single-threaded BLAS inside prange; this "
              "host lacks the micro-kernel's AVX2 + FMA), online softmax with the vectorized float32 exp")


if __name__ == "__main__":
    main()
