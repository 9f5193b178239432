"""Peers that `bench` times beside tensorsmith's backends: ONNX Runtime (CPU) when installed."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..ir import Graph

PEERS = ("onnxruntime",)
"""Peers `bench` knows; each is optional and only timed when its package imports."""


def available_peers() -> list[str]:
    """The peers whose package is installed here."""
    return [p for p in PEERS if importlib.util.find_spec(p) is not None]


def peer_runner(peer: str, graph: Graph, threads: int) -> Callable[[Mapping[str, np.ndarray]], dict[str, Any]]:
    """A function running `graph` on `peer` that returns outputs by name.

    ONNX Runtime gets the graph through `to_onnx`, with `threads` intra-op threads (the same count as
    the Numba backend) and its full graph optimizations.
    """
    if peer != "onnxruntime":
        raise ValueError(f"unknown peer {peer!r}; known: {', '.join(PEERS)}")
    import onnxruntime as ort

    from ..ir.onnx_export import to_onnx

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(to_onnx(graph).SerializeToString(), opts, providers=["CPUExecutionProvider"])
    in_names = [i.name for i in sess.get_inputs()]
    out_names = [o.name for o in sess.get_outputs()]

    def run(inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        return dict(zip(out_names, sess.run(None, {k: inputs[k] for k in in_names})))

    return run
