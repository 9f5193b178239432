"""Peers `bench` times beside our backends, each in its own process: ONNX Runtime (CPU) and PyTorch eager,
each when installed."""

from __future__ import annotations

import importlib.util

PEERS = ("onnxruntime", "torch")
"""Peers `bench` knows; each is optional and only timed when its package imports."""


def available_peers() -> list[str]:
    """The peers whose package is installed here."""
    return [p for p in PEERS if importlib.util.find_spec(p) is not None]
