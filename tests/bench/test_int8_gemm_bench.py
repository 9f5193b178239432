"""The int8 GEMM benchmark: the graph rows run a compiled qlinear, every row is timed, numpy in a child."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.backends.numba.cpu_features import best_int8_path
from tensorsmith.bench import int8_gemm

pytestmark = pytest.mark.skipif(best_int8_path() is None, reason="this host executes no int8 path")


@pytest.mark.parametrize("granularity", ["tensor", "row"])
def test_quantized_linear_runs_a_qlinear_close_to_the_float_product(granularity: str) -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((40, 96), dtype=np.float32)
    x = rng.standard_normal((5, 96), dtype=np.float32)
    exe = int8_gemm.quantized_linear(w, 5, str(best_int8_path()), granularity)
    y = exe.run({"x": x})[exe.graph.outputs[0].name]
    ref = x @ w.T
    cos = float((y * ref).sum() / np.linalg.norm(y) / np.linalg.norm(ref))
    assert y.shape == (5, 40) and cos > 0.999
    kernels = [s.kernel for s in exe.plan.steps if s.kernel != "view"]
    assert kernels == [f"quantize_dynamic_{granularity}", f"qlinear_{best_int8_path()}"]


def test_every_row_of_a_shape_is_timed() -> None:
    path = str(best_int8_path())
    t = int8_gemm.bench_shape(4, 64, 48, [path], repeats=1, threads=1)
    assert {f"{path} graph", f"{path} graph row", f"{path} gemm"} <= set(t)
    assert all(v > 0 for v in t.values())


def test_numpy_runs_in_a_child_process() -> None:
    figs = int8_gemm.peer_figures("numpy", ((4, 64, 48),), threads=1, repeats=1)
    assert set(figs) == {"4x64x48"} and figs["4x64x48"] > 0
