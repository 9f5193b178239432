"""The sparse GEMM benchmarks run end to end on small shapes and report what they claim to measure."""

from __future__ import annotations

import pytest
from tensorsmith.backends.numba.cpu_features import best_int8_path
from tensorsmith.backends.numba.sparse_ukernels import HOST_ISAS
from tensorsmith.bench import sparse_gemm, sparse_int8_gemm
from tensorsmith.bench.sparse_gemm import crossing_line

SMALL = ((16, 128, 128),)
"""(M, K, N): small, and a multiple of every block side (scipy.sparse BSR needs whole blocks)."""


@pytest.mark.skipif(not HOST_ISAS, reason="sparse kernels need AVX2 + FMA")
def test_fp32_sparse_benchmark_rows(capsys: pytest.CaptureFixture[str]) -> None:
    rows = sparse_gemm.run(1, 1, None, torch=False, shapes=SMALL)
    kernels = {r["kernel"] for r in rows}
    assert {"dense", "bsr 32x32", "bsr 8x8", "nm 2:4"} <= kernels
    assert all(r["seconds"] > 0 for r in rows)
    out = capsys.readouterr().out
    assert "break-even densities the lowering uses" in out
    assert "measured break-even of bsr 32x32 against our dense GEMM: " in out


@pytest.mark.skipif(best_int8_path() is None, reason="this host executes no int8 path")
def test_int8_sparse_benchmark_rows(capsys: pytest.CaptureFixture[str]) -> None:
    rows = sparse_int8_gemm.run(1, 1, shapes=SMALL)
    assert len(rows) == len(sparse_int8_gemm.SWEEP_DENSITIES) + len(sparse_int8_gemm.BLOCK_SIZES) - 1
    assert all(r["seconds"] > 0 and r["vs_int8"] > 0 and r["vs_fp32_bsr"] > 0 for r in rows)
    assert {r["lowering"] for r in rows} <= {"dense", *(f"bsr {b}x{b} int8" for b in (8, 16, 32, 64))}
    out = capsys.readouterr().out
    assert f"dense int8 GEMM path: {best_int8_path()}" in out and "int8 break-even densities" in out
    assert "measured break-even of bsr 32x32 int8 against the dense int8 GEMM: " in out


def test_crossing_line_reads_the_sweep() -> None:
    rows = [{"shape": (1, 2, 3), "kernel": "k", "density": d, "s": v} for d, v in ((0.1, 4.0), (0.5, 1.5), (0.7, 0.5))]
    assert crossing_line(rows, (1, 2, 3), "k", "s", "dense").endswith("against dense: 0.60")
    rows[-1]["s"] = 1.2
    assert crossing_line(rows, (1, 2, 3), "k", "s", "dense").endswith("above 0.70 (1.20x there)")
