"""Kernels compiled ahead in worker processes: how the jobs split, and that the disk cache then serves them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorsmith.bench.configs import BASELINE, Config, Runner
from tensorsmith.bench.prebuild import (
    WORKER_FAILED,
    PrebuildReport,
    compile_weight,
    compiled_kernel,
    lower_job,
    numba_jobs,
    prebuild,
    split_jobs,
)
from tensorsmith.bench.suite import Settings
from tensorsmith.ir import GraphBuilder, f32

FP32 = Config(BASELINE, Runner.NUMBA, fuse=False)
FUSED = Config("numba fused", Runner.NUMBA)


def tiny_mlp() -> tuple[object, dict[str, np.ndarray]]:
    """linear -> relu -> linear on a [4, 24] input (seeded)."""
    rng = np.random.default_rng(3)
    b = GraphBuilder("tiny")
    x = b.input("x", f32[4, 24])
    h = b.relu(b.linear(x, rng.standard_normal((40, 24)), rng.standard_normal(40)))
    b.output(b.linear(h, rng.standard_normal((8, 40)), np.zeros(8), name="y"))
    return b.build(), {"x": rng.standard_normal((4, 24)).astype(np.float32)}


def test_the_epilogue_is_not_part_of_the_compiled_kernel() -> None:
    assert compiled_kernel("gemm_uk+add+relu[par]") == "gemm_uk[par]"
    assert compiled_kernel("gemm_uk+add") == "gemm_uk"
    assert compiled_kernel("attention_packed[par]") == "attention_packed[par]"
    assert compile_weight({"gemm_uk[par]", "gemm_uk", "unary_relu"}) == 5


def test_jobs_sharing_kernels_compile_in_one_process() -> None:
    fp32 = [frozenset({"gemm_uk[par]", "unary_relu"}), frozenset({"gemm_uk[par]", "layernorm"})]
    int8 = [frozenset({"qlinear_amx[par]", "quantize_dynamic_row"}), frozenset({"qlinear_amx[par]", "bmm"})]
    groups = split_jobs([fp32[0], int8[0], fp32[1], int8[1]], 2)
    assert sorted(sorted(g) for g in groups) == [[0, 2], [1, 3]]


def test_one_job_or_one_group_is_one_group() -> None:
    assert split_jobs([frozenset({"a"})], 4) == [[0]]
    assert split_jobs([frozenset({"a"}), frozenset({"b"})], 1) == [[0, 1]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.frozensets(st.sampled_from(["a", "b[par]", "c", "d[par]", "e", "f[par]"]), min_size=1),
                min_size=1, max_size=9), st.integers(1, 4))
def test_every_job_lands_in_one_group_and_no_group_costs_more_than_all_together(
        kernels: list[frozenset[str]], bins: int) -> None:
    groups = split_jobs(kernels, bins)
    assert 1 <= len(groups) <= bins
    assert sorted(i for g in groups for i in g) == list(range(len(kernels)))
    heaviest = max(compile_weight(set().union(*(kernels[i] for i in g))) for g in groups)
    assert heaviest <= compile_weight(set().union(*kernels))
    assert heaviest >= max(compile_weight(k) for k in kernels)


def test_only_the_numba_configurations_are_jobs() -> None:
    graph, inputs = tiny_mlp()
    peer = Config("ORT fp32", Runner.ONNXRUNTIME)
    exits = Config("early exit", Runner.NUMBA, exits=True)
    jobs = numba_jobs([("tiny", graph, inputs, None)], [FP32, peer, FUSED, exits])
    assert [j.config.name for j in jobs] == [BASELINE, "numba fused"]  # no exits: no early-exit job


def test_a_lowered_job_carries_the_graph_after_its_passes_and_its_compiled_kernels() -> None:
    graph, inputs = tiny_mlp()
    jobs = numba_jobs([("tiny", graph, inputs, None)], [FP32, FUSED])
    fp32, fused = (lower_job(j, Settings(threads=1)) for j in jobs)
    assert "fused" in [n.op for n in fused.graph.nodes] and "fused" not in [n.op for n in fp32.graph.nodes]
    assert fused.kernels and fused.kernels <= fp32.kernels  # the fused epilogues are data of the same GEMM
    assert not any("+" in k for k in fp32.kernels | fused.kernels)


def elementwise_graphs() -> list[tuple[str, object, dict[str, np.ndarray]]]:
    """Two small graphs with no kernel in common (unfused: relu and sigmoid; layernorm and softmax)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 24)).astype(np.float32)
    b = GraphBuilder("act")
    b.output(b.sigmoid(b.relu(b.input("x", f32[4, 24])), name="y"))
    c = GraphBuilder("norm")
    c.output(c.softmax(c.layernorm(c.input("x", f32[4, 24]), np.ones(24), np.zeros(24)), axis=-1, name="y"))
    return [("act", b.build(), {"x": x}), ("norm", c.build(), {"x": x})]


def test_prebuilt_kernels_load_from_the_disk_cache_in_a_fresh_process(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "numba-cache"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(cache))  # the spawned workers and the checking process use it
    graphs = elementwise_graphs()
    bad = Config("bad", Runner.NUMBA, "prune{sparsity=1.5}", fuse=False)
    jobs = numba_jobs([(name, g, feeds, None) for name, g, feeds in graphs], [FP32, bad])
    report = prebuild(jobs, Settings(threads=1), workers=2)
    assert report.workers == 2 and report.wall_s > 0
    assert set(report.jit_s) == {("act", BASELINE), ("norm", BASELINE)} and report.compiler_s > 0
    assert set(report.errors) == {("act", "bad"), ("norm", "bad")}  # the timed loop reports it in the row
    assert all("sparsity" in e for e in report.errors.values())
    check = (
        "import json, sys, numba\n"
        "numba.set_num_threads(1)\n"
        "from tensorsmith import runtime\n"
        "from tensorsmith.ir import parse\n"
        "stats = [runtime.compile(parse(text), backend='numba', fuse=False).stats for text in json.load(sys.stdin)]\n"
        "print(json.dumps([[s['cache_hits'], s['cache_misses']] for s in stats]))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", check], input=json.dumps([str(g) for _, g, _ in graphs]),
                          capture_output=True, text=True, env=env, timeout=300, check=True)
    for hits, misses in json.loads(done.stdout.strip().splitlines()[-1]):
        assert misses == 0 and hits > 0


def test_jobs_that_share_every_kernel_spawn_nothing() -> None:
    name, graph, feeds = elementwise_graphs()[0]
    same = Config("again", Runner.NUMBA, fuse=False)
    report = prebuild(numba_jobs([(name, graph, feeds, None)], [FP32, same]), Settings(threads=1), workers=2)
    assert report.workers == 0 and report.jit_s == {}


def test_worker_failures_are_told_apart_from_failing_configurations() -> None:
    report = PrebuildReport(2, errors={("a", "x"): f"{WORKER_FAILED}: BrokenProcessPool()",
                                       ("a", "y"): "ValueError: prune: sparsity must be in [0, 1)"})
    assert report.worker_failures() == [f"{WORKER_FAILED}: BrokenProcessPool()"]
