"""Hardware-aware choices for the prune and quantize passes: the pattern or precision, and why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tensorsmith.backends.cost import choose_precision, choose_sparsity
from tensorsmith.ir import GraphBuilder, f16, f32


@pytest.fixture(autouse=True)
def _no_user_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENSORSMITH_CONFIG_DIR", str(tmp_path / "config"))


def _mlp(dtype=f32):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    b = GraphBuilder("mlp")
    x = b.input("x", dtype[256, 1024])
    w = lambda *s: rng.standard_normal(s).astype(dtype.np_dtype)  # noqa: E731
    h = b.relu(b.linear(x, w(1024, 1024), name="fc1"), name="act")
    h = b.linear(h, w(30, 1024), name="fc2")
    h = b.linear(h, w(10, 30), name="fc3")  # K = 30
    b.output(b.softmax(h, name="sm"))
    return {n.name: n for n in b.build().nodes}


def test_auto_pattern_is_2to4_on_gpus_with_the_skip_reason_for_bad_k() -> None:
    nodes = _mlp(f16)
    d = choose_sparsity("gpu-a100", nodes["fc1"])
    assert d.applied and d.choice == "nm" and dict(d.params) == {"pattern": "nm", "n": 2, "m": 4}
    assert d.speedup is not None and d.speedup > 1.2 and "2:4" in d.reason
    skip = choose_sparsity("gpu-a100", nodes["fc3"])
    assert not skip.applied and skip.reason == "2:4 not applied to fc3: K=30 is not a multiple of 4"
    assert choose_sparsity("gpu-h100", nodes["fc1"]).choice == "nm"


def test_fp32_layers_on_gpus_are_told_which_precision_the_sparse_cores_need() -> None:
    d = choose_sparsity("gpu-a100", _mlp(f32)["fc1"])
    assert d.applied and "computes in fp32" in d.reason and "bf16" in d.reason


def test_tile_aligned_blocks_on_tpu_npu_and_cpu_unstructured_on_fpga() -> None:
    nodes = _mlp()
    for target, block in (("tpu-v4", (128, 128)), ("npu-edge", (64, 64)), ("npu-mobile", (32, 32)),
                          ("cpu-host", (32, 32))):
        d = choose_sparsity(target, nodes["fc1"], sparsity=0.75)
        assert d.choice == "block" and d.params["block"] == block and d.params["sparsity"] == 0.75, target
        assert d.speedup is not None and d.speedup > 1.0
    tpu_skip = choose_sparsity("tpu-v4", nodes["fc2"])
    assert not tpu_skip.applied and tpu_skip.reason == "block 128x128 not applied to fc2: N=30 is not a multiple of 128"
    fpga = choose_sparsity("fpga-u250", nodes["fc3"], sparsity=0.8)
    assert fpga.choice == "unstructured" and fpga.params["sparsity"] == 0.8 and fpga.speedup > 1.0


def test_nodes_without_a_weight_are_explained() -> None:
    nodes = _mlp()
    assert "no weight matrix" in choose_sparsity("gpu-a100", nodes["sm"]).reason
    b = GraphBuilder("att")
    q = b.input("q", f32[4, 16, 8])
    b.output(b.matmul(q, b.transpose(q, (0, 2, 1)), name="qk"))
    qk = b.build().nodes[-1]
    assert "two activations" in choose_sparsity("gpu-a100", qk).reason


def test_precision_auto_picks_the_fastest_supported_precision() -> None:
    fc1 = _mlp()["fc1"]
    assert choose_precision("gpu-a100", fc1).choice == "int8"
    assert choose_precision("npu-edge", fc1).choice == "int8"
    assert choose_precision("fpga-u250", fc1).choice == "int8"
    tpu = choose_precision("tpu-v4", fc1)  # int8 and bf16 share the v4 peak; int8 writes 4-byte accumulators
    assert tpu.choice == "bf16" and "has no fp16 matrix path" in tpu.reason
    assert choose_precision("tpu-v5e", fc1).choice == "int8"  # v5e doubles the rate at int8
    mobile = choose_precision("npu-mobile", fc1, candidates=["fp16", "fp32"])
    assert mobile.choice == "fp16" and "no fp32 matrix path" in mobile.reason
    d = choose_precision("gpu-a100", fc1, candidates=["int4", "int8", "fp16"])
    assert d.choice == "int4" and d.speedup > 1.0


def test_precision_skips_are_explained() -> None:
    nodes = _mlp()
    sm = choose_precision("gpu-a100", nodes["sm"])
    assert not sm.applied and "only matrix ops" in sm.reason
    tiny = choose_precision("gpu-a100", nodes["fc3"])  # 256x10x30: launch overhead dominates
    assert not tiny.applied and "below the 1.05x threshold" in tiny.reason
    keep = choose_precision("gpu-a100", nodes["fc1"], candidates=["fp32"])
    assert not keep.applied and "kept at fp32" in keep.reason
    with pytest.raises(ValueError, match="fp8"):
        choose_precision("gpu-h100", nodes["fc1"], candidates=["fp8"])
