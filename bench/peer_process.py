"""Time a peer runtime in its own process, so its thread pool never competes with Numba's.

`time_onnx_in_subprocess(model, inputs)` writes an ONNX model and the inputs to a temporary folder,
runs ONNX Runtime there (`python -m tensorsmith.bench.peer_process`) and returns the median seconds
(warm-up first, then `repeats` timed runs) with the peer's version; `time_graph_in_subprocess(graph,
inputs)` does the same with PyTorch eager running the IR graph op by op (`bench/torch_peer.py`).
`profile_onnx_in_subprocess(model, inputs)` returns ONNX Runtime's own per-node kernel times (its profiler).
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


def _run_child(peer: str, module: str, model_name: str, model_bytes: bytes, inputs: Mapping[str, np.ndarray],
               options: list[str], threads: int, timeout_s: float,
               written: tuple[str, str, Callable[[Path], Any]] | None = None) -> tuple[str, Any]:
    """Run `python -m module MODEL INPUTS *options --threads N` in a temporary folder holding the model and the
    inputs; with `written` = (option, file name, read) also `option FILE` and read(FILE) after. Returns (its
    stdout, what `read` returned or None); PeerError with its last lines when it fails."""
    with tempfile.TemporaryDirectory(prefix="tensorsmith-peer-") as tmp:
        model_path, inputs_path = Path(tmp, model_name), Path(tmp, "inputs.npz")
        model_path.write_bytes(model_bytes)
        np.savez(inputs_path, **{k: np.asarray(v) for k, v in inputs.items()})
        cmd = [sys.executable, "-m", module, str(model_path), str(inputs_path), *options, "--threads", str(threads)]
        if written is not None:
            cmd += [written[0], str(Path(tmp, written[1]))]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
            raise PeerError(f"{peer} failed on the model (exit {proc.returncode}):\n{tail}")
        return proc.stdout, written[2](Path(tmp, written[1])) if written is not None else None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return dict(data)


def _time_child(peer: str, module: str, model_name: str, model_bytes: bytes, inputs: Mapping[str, np.ndarray],
                repeats: int, warmup: int, threads: int, timeout_s: float, keep_outputs: bool) -> PeerTiming:
    """Run `python -m module MODEL INPUTS ...` in a temporary folder and read its JSON timing line."""
    stdout, outputs = _run_child(peer, module, model_name, model_bytes, inputs,
                                 ["--repeats", str(repeats), "--warmup", str(warmup)], threads, timeout_s,
                                 ("--outputs", "outputs.npz", _read_npz) if keep_outputs else None)
    out = json.loads(stdout.strip().splitlines()[-1])
    return PeerTiming(peer, out["version"], out["median_s"], out["spread_s"], out["session_s"],
                      out["peak_rss_bytes"], outputs or {})


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


@dataclass(frozen=True)
class PeerNode:
    """One node of the peer's optimized graph: its median kernel time per run (the peer's profiler)."""

    name: str
    op_type: str
    median_s: float
    constant_bytes: int
    """Bytes of the initializers the node reads in the graph ONNX Runtime optimized: 0 for a product of two
    activations."""


def profile_onnx_in_subprocess(model_bytes: bytes, inputs: Mapping[str, np.ndarray], *, repeats: int = 11,
                               threads: int = 2, timeout_s: float = 600) -> list[PeerNode]:
    """ONNX Runtime's per-node kernel times on the model (its profiler, in a child process): the nodes of the graph
    it optimized (its own fusions: Gemm, FusedMatMul, SkipLayerNormalization, ...), slowest first."""
    _, rows = _run_child("onnxruntime's profiler", "tensorsmith.bench.peer_process", "model.onnx",
                         with_node_names(model_bytes), inputs, ["--repeats", str(repeats), "--warmup", "3"], threads,
                         timeout_s, ("--profile", "nodes.json", lambda f: json.loads(f.read_text())))
    return sorted((PeerNode(**r) for r in rows), key=lambda n: -n.median_s)


def with_node_names(model_bytes: bytes) -> bytes:
    """The model with a name on every node (its op type and position where it had none): the profiler and the
    optimized graph then name the same node alike."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    taken = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            n.name = next(c for c in (f"{n.op_type}_{i}", f"{n.op_type}_{i}_{len(taken)}") if c not in taken)
            taken.add(n.name)
    return model.SerializeToString()


def ort_node_times(events: list[dict[str, Any]], skip_runs: int,
                   constant_bytes: Mapping[str, int]) -> list[dict[str, Any]]:
    """Per node of an ONNX Runtime profile (its JSON events): the median kernel time over the runs after the first
    `skip_runs`, its op type and the bytes of initializers it reads (`constant_bytes` by node name, from the
    optimized graph): the fields of `PeerNode`."""
    times: dict[str, list[float]] = {}
    ops: dict[str, str] = {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        name = e["name"][:-len("_kernel_time")]
        times.setdefault(name, []).append(float(e["dur"]) * 1e-6)
        ops[name] = str(e.get("args", {}).get("op_name", "?"))
    return [{"name": n, "op_type": ops[n], "median_s": float(np.median(t[skip_runs:] or t)),
             "constant_bytes": int(constant_bytes.get(n, 0))} for n, t in times.items()]


def initializer_bytes_per_node(model_path: str | os.PathLike[str]) -> dict[str, int]:
    """Node name -> bytes of the initializers it reads, in an ONNX model file."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model_path)).graph
    sizes = {t.name: numpy_helper.to_array(t).nbytes for t in graph.initializer}
    return {n.name: sum(sizes.get(i, 0) for i in n.input) for n in graph.node}


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


def child_arguments(what: str, argv: list[str] | None = None, profile: bool = False) -> argparse.Namespace:
    """The command line of a peer's child process: MODEL INPUTS --repeats --warmup --threads [--outputs], and with
    `profile` [--profile PATH]."""
    from .options import nonnegative_int, positive_int

    p = argparse.ArgumentParser(description=f"time {what} (run by bench.peer_process in a child process)")
    p.add_argument("model")
    p.add_argument("inputs")
    p.add_argument("--repeats", type=positive_int, default=11)
    p.add_argument("--warmup", type=nonnegative_int, default=3)
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--outputs", default=None, help="write the first run's outputs here (.npz)")
    if profile:
        p.add_argument("--profile", default=None, help="instead of timing, write per-node kernel times here (.json)")
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
    args = child_arguments("ONNX Runtime on a model", argv, profile=True)
    import onnxruntime as ort

    rss0 = rss_bytes()
    t0 = time.perf_counter()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    if args.profile:
        _profile_ort(ort, opts, args)
        return
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    session_s = time.perf_counter() - t0
    data = np.load(args.inputs)
    feeds = {i.name: data[i.name] for i in sess.get_inputs()}
    if args.outputs:
        names = [o.name for o in sess.get_outputs()]
        np.savez(args.outputs, **dict(zip(names, sess.run(None, feeds))))
    report_timing(lambda: sess.run(None, feeds), ort.__version__, session_s, rss0, args.repeats, args.warmup)


def _profile_ort(ort: Any, opts: Any, args: argparse.Namespace) -> None:
    """In the child: run the model warmup + repeats times under ONNX Runtime's profiler; write `ort_node_times`."""
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(args.profile).with_suffix(""))
    optimized = Path(args.profile).with_suffix(".optimized.onnx")
    opts.optimized_model_filepath = str(optimized)
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    data = np.load(args.inputs)
    feeds = {i.name: data[i.name] for i in sess.get_inputs()}
    for _ in range(args.warmup + args.repeats):
        sess.run(None, feeds)
    trace = Path(sess.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    Path(args.profile).write_text(json.dumps(ort_node_times(events, args.warmup,
                                                            initializer_bytes_per_node(optimized))))


if __name__ == "__main__":
    _main()
