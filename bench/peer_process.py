"""Time a peer runtime in its own process, so its thread pool never competes with Numba's.

`time_onnx_in_subprocess(model, inputs)` writes an ONNX model and the inputs to a temporary folder,
runs ONNX Runtime there (`python -m tensorsmith.bench.peer_process`) and returns the median seconds
(warm-up first, then `repeats` timed runs) with the peer's version; `time_graph_in_subprocess(graph,
inputs)` does the same with PyTorch eager running the IR graph op by op (`bench/torch_peer.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..ir.graph import Graph
from .warmup import warm_up


@dataclass(frozen=True)
class PeerTiming:
    """A peer's median time on one model, measured in its own process."""

    peer: str
    version: str
    median_s: float
    spread_s: float
    session_s: float = 0.0  # creating the session (the peer's compile time)
    peak_rss_bytes: int = 0  # the child's resident memory after the runs above what it held before loading the model
    outputs: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)


class PeerError(RuntimeError):
    """The peer's process failed; the message carries its last lines of output."""


def _time_child(peer: str, module: str, model_name: str, model_bytes: bytes, inputs: Mapping[str, np.ndarray],
                repeats: int, warmup: int, threads: int, timeout_s: float, keep_outputs: bool) -> PeerTiming:
    """Run `python -m module MODEL INPUTS ...` in a temporary folder and read its JSON timing line."""
    with tempfile.TemporaryDirectory(prefix="tensorsmith-peer-") as tmp:
        model_path, inputs_path = Path(tmp, model_name), Path(tmp, "inputs.npz")
        model_path.write_bytes(model_bytes)
        np.savez(inputs_path, **{k: np.asarray(v) for k, v in inputs.items()})
        cmd = [sys.executable, "-m", module, str(model_path), str(inputs_path),
               "--repeats", str(repeats), "--warmup", str(warmup), "--threads", str(threads)]
        outputs_path = Path(tmp, "outputs.npz")
        if keep_outputs:
            cmd += ["--outputs", str(outputs_path)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
            raise PeerError(f"{peer} failed on the model (exit {proc.returncode}):\n{tail}")
        outputs = dict(np.load(outputs_path)) if keep_outputs else {}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return PeerTiming(peer, out["version"], out["median_s"], out["spread_s"], out["session_s"],
                      out["peak_rss_bytes"], outputs)


def time_onnx_in_subprocess(model_bytes: bytes, inputs: Mapping[str, np.ndarray], *, peer: str = "onnxruntime",
                            repeats: int = 11, warmup: int = 3, threads: int = 2, timeout_s: float = 600,
                            keep_outputs: bool = False) -> PeerTiming:
    """Median run time of the ONNX model on `peer` (only "onnxruntime" today), measured in a child process.

    With `keep_outputs` the outputs of the first run come back too (to check the peer's quality).
    """
    if peer != "onnxruntime":
        raise ValueError(f"unknown ONNX peer {peer!r}; known: onnxruntime")
    return _time_child(peer, "tensorsmith.bench.peer_process", "model.onnx", model_bytes, inputs, repeats, warmup,
                       threads, timeout_s, keep_outputs)


def time_graph_in_subprocess(graph: Graph, inputs: Mapping[str, np.ndarray], *, repeats: int = 11, warmup: int = 3,
                             threads: int = 2, timeout_s: float = 600, keep_outputs: bool = False) -> PeerTiming:
    """Median run time of `graph` in PyTorch eager mode (`torch_peer.TorchGraph`), measured in a child process."""
    return _time_child("torch", "tensorsmith.bench.torch_peer", "graph.pkl", pickle_graph(graph), inputs, repeats,
                       warmup, threads, timeout_s, keep_outputs)


def pickle_graph(graph: Graph) -> bytes:
    """`graph` pickled (its state is flat: any depth pickles)."""
    return pickle.dumps(graph)


def unpickle_graph(data: bytes) -> Graph:
    """The graph `pickle_graph` wrote."""
    graph = pickle.loads(data)
    if not isinstance(graph, Graph):
        raise TypeError(f"expected a pickled Graph, got {type(graph).__name__}")
    return graph


def rss_bytes() -> int:
    """This process's resident memory now (/proc/self/statm; its peak so far where /proc is absent)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child_arguments(what: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of a peer's child process: MODEL INPUTS --repeats --warmup --threads [--outputs]."""
    from .options import nonnegative_int, positive_int

    p = argparse.ArgumentParser(description=f"time {what} (run by bench.peer_process in a child process)")
    p.add_argument("model")
    p.add_argument("inputs")
    p.add_argument("--repeats", type=positive_int, default=11)
    p.add_argument("--warmup", type=nonnegative_int, default=3)
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--outputs", default=None, help="write the first run's outputs here (.npz)")
    return p.parse_args(argv)


def report_timing(run: Callable[[], Any], version: str, session_s: float, rss0: int, repeats: int,
                  warmup: int) -> None:
    """In a peer's child: warm `run` up (warmup.warm_up), time `repeats` runs, print the JSON line `_time_child`
    reads."""
    warm_up(run, warmup)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    print(json.dumps({"version": version, "median_s": float(med), "spread_s": float(q3 - q1),
                      "session_s": session_s, "peak_rss_bytes": max(0, rss_bytes() - rss0)}))


def _main(argv: list[str] | None = None) -> None:
    args = child_arguments("ONNX Runtime on a model", argv)
    import onnxruntime as ort

    rss0 = rss_bytes()
    t0 = time.perf_counter()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    session_s = time.perf_counter() - t0
    data = np.load(args.inputs)
    feeds = {i.name: data[i.name] for i in sess.get_inputs()}
    if args.outputs:
        names = [o.name for o in sess.get_outputs()]
        np.savez(args.outputs, **dict(zip(names, sess.run(None, feeds))))
    report_timing(lambda: sess.run(None, feeds), ort.__version__, session_s, rss0, args.repeats, args.warmup)


if __name__ == "__main__":
    _main()
