"""Helpers of the sparse GEMM tests: pruned weights and the reference result of a fused linear."""

from __future__ import annotations

import numpy as np
from tensorsmith.backends import reference
from tensorsmith.backends.numba.epilogue import StageKind
from tensorsmith.ir import GraphBuilder, f32

ADD_VEC, MUL_VEC, ADD_RES, RELU, GELU = (int(k) for k in (StageKind.ADD, StageKind.MUL, StageKind.RESIDUAL,
                                                            StageKind.RELU, StageKind.GELU))
EPILOGUE_CASES = {
    "bias": [ADD_VEC],
    "bias+relu": [ADD_VEC, RELU],
    "scale+bias+residual+gelu": [MUL_VEC, ADD_VEC, ADD_RES, GELU],
}
"""Epilogue stage lists the sparse kernels are tested with."""


def block_pruned(rng: np.random.Generator, n: int, k: int, block: tuple[int, int], density: float) -> np.ndarray:
    """A random W [n, k] whose bh x bw blocks (padded at the edges) are kept with probability `density`."""
    bh, bw = block
    nbr, nbc = -(-n // bh), -(-k // bw)
    mask = rng.random((nbr, nbc)) < density
    full = np.kron(mask, np.ones((bh, bw), np.float32))[:n, :k]
    return (rng.standard_normal((n, k)) * full).astype(np.float32)


def nm_pruned(rng: np.random.Generator, n_out: int, k: int, n: int, m: int) -> np.ndarray:
    """A random W [n_out, k] keeping the n largest |w| of every m consecutive K."""
    g = rng.standard_normal((n_out, k // m, m)).astype(np.float32)
    keep = np.argsort(-np.abs(g), axis=2)[:, :, :n]
    mask = np.zeros(g.shape, bool)
    np.put_along_axis(mask, keep, True, axis=2)
    return (g * mask).reshape(n_out, k)


def epilogue_reference(x: np.ndarray, w: np.ndarray, stages: list[int], vecs: np.ndarray,
                       res: np.ndarray) -> np.ndarray:
    """The reference backend's linear(x, w) followed by `stages` (vectors in order from `vecs`)."""
    b = GraphBuilder("sparse_epilogue")
    y = b.linear(b.input("x", f32[x.shape]), w)
    vi = 0
    for code in stages:
        if code in (ADD_VEC, MUL_VEC):
            vec = b.const(vecs[vi], f"v{vi}")
            y = b.add(y, vec) if code == ADD_VEC else b.mul(y, vec)
            vi += 1
        elif code == ADD_RES:
            y = b.add(y, b.input("res", f32[res.shape]))
        elif code == RELU:
            y = b.relu(y)
        elif code == GELU:
            y = b.gelu(y)
        else:
            raise ValueError(f"no reference for epilogue stage {code}")
    b.output(y)
    feeds = {"x": x} | ({"res": res} if ADD_RES in stages else {})
    return next(iter(reference.run(b.build(), feeds).values()))
