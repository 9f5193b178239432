"""Work done in spawned processes by test_concurrency: compile a graph, run it, report what it touched."""

from __future__ import annotations

import os

import numpy as np
from tensorsmith.ir import Graph, GraphBuilder, f32


def region_graph(seed: int = 3) -> Graph:
    """A linear followed by an elementwise chain: `fuse` makes the chain a generated region kernel."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("regions")
    x = b.input("x", f32[16, 64])
    h = b.linear(x, rng.uniform(-0.2, 0.2, (96, 64)).astype(np.float32), name="fc")
    e = b.tanh(b.mul(b.exp(b.neg(h)), np.float32(0.5)))
    b.output(b.add(b.sigmoid(e), h, name="y"))
    return b.build()


def compile_and_run(args: tuple[str, int, int]) -> dict[str, object]:
    """In a fresh process: compile `region_graph` on the Numba backend with region cache `folder`, run it
    `repeats` times on input `seed`; return the outputs, the pid, the arena address and the cache folder used."""
    folder, seed, repeats = args
    os.environ["TENSORSMITH_REGION_CACHE"] = folder
    from tensorsmith import runtime
    from tensorsmith.backends.numba.region_cache import cache_dir

    exe = runtime.compile(region_graph(), backend="numba")
    x = np.random.default_rng(seed).standard_normal((16, 64)).astype(np.float32)
    outs = [exe.run({"x": x})["y"] for _ in range(repeats)]
    return {"pid": os.getpid(), "y": outs, "cache": str(cache_dir()),
            "arena": int(exe.stats["arena_bytes"]), "fused": exe.stats["fused"]}
