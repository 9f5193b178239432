"""The PyTorch eager peer: its rules cover real ops, it computes what the reference backend does, and bench
runs it in a process of its own (skipped where torch is not installed, except the command-line check)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from tensorsmith.backends import reference
from tensorsmith.bench import cli
from tensorsmith.bench.configs import DEFAULT_CONFIGS, Runner
from tensorsmith.bench.models import load_model
from tensorsmith.ir import GraphBuilder, f32
from tensorsmith.ir.ops.registry import OPS


def test_a_missing_torch_is_named_with_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tensorsmith.bench.peers.available_peers", lambda: ["onnxruntime"])
    msg = cli._check_backends(["numba", "torch"])
    assert msg is not None and "torch" in msg and "pip install torch" in msg
    assert any(c.runner is Runner.TORCH for c in DEFAULT_CONFIGS)


HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (an optional peer)")
if HAS_TORCH:
    import torch
    from tensorsmith.bench.peer_process import time_graph_in_subprocess
    from tensorsmith.bench.torch_peer import TORCH_RULES, TorchGraph, TorchPeerError


@needs_torch
def test_every_rule_is_for_a_registered_op() -> None:
    assert set(TORCH_RULES) <= set(OPS), set(TORCH_RULES) - set(OPS)


@needs_torch
@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer-block", "resmlp-digits", "cnn-digits"])
def test_torch_eager_matches_the_reference_backend(name: str) -> None:
    m = load_model(name)
    want = reference.run(m.graph, dict(m.inputs))
    got = TorchGraph(m.graph)(m.inputs)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(want[k]).max())))


@needs_torch
def test_asymmetric_pool_padding_and_unknown_ops_are_refused_by_node() -> None:
    b = GraphBuilder("pads")
    x = b.input("x", f32[1, 2, 5, 5])
    b.output(b.avgpool2d(x, kernel=[2, 2], pads=[0, 0, 1, 1], name="pool"))
    g = b.build()
    with pytest.raises(TorchPeerError, match="%pool .avgpool2d.: pads"):
        TorchGraph(g)({"x": np.ones((1, 2, 5, 5), np.float32)})
    b = GraphBuilder("q")
    x = b.input("x", f32[2, 3])
    b.output(b.op("quantize", x, scale=[0.1], zero_point=[0], dtype="u8", name="c"))
    with pytest.raises(TorchPeerError, match="no torch rule for %c"):
        TorchGraph(b.build())


@needs_torch
def test_bench_times_torch_in_its_own_process_and_gets_its_outputs() -> None:
    m = load_model("transformer-block")
    t = time_graph_in_subprocess(m.graph, m.inputs, repeats=3, warmup=1, threads=1, keep_outputs=True)
    assert t.peer == "torch" and t.version == torch.__version__ and t.median_s > 0
    want = reference.run(m.graph, dict(m.inputs))
    for k in want:
        np.testing.assert_allclose(t.outputs[k], want[k], rtol=1e-4, atol=1e-5)
