"""When a block-sparse weight should run on the BSR kernel: stored break-even densities and a predictor.

`bench calibrate` measures, on this host, the block density below which `bsr_gemm` beats the dense
micro-kernel GEMM (`bench.sparse_gemm.measure_bsr_breakeven`) and stores it per block shape in the
cpu-host override's `[bsr_breakeven]` table ("32x32" = 0.41). The lowering asks `bsr_beats_dense`
or `predict_bsr_speedup` without measuring; without a calibration the shipped figures below apply.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..cost import config_dir

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

TABLE = "bsr_breakeven"
"""Name of the TOML table in the cpu-host override that holds the measured break-even densities."""
SHIPPED_BREAKEVEN: dict[tuple[int, int], float] = {(32, 32): 0.5, (16, 16): 0.5}
"""Conservative defaults until `bench calibrate` stores this host's figures: on the (heavily shared)
development machine BSR still won at density 0.5 on every benchmark shape (docs/numba-backend.md),
but no clean crossing was measured, so 0.5 is a lower bound, not a measurement."""


@dataclass(frozen=True)
class BreakEven:
    """Measured speed-ups of the BSR kernel over the dense GEMM at several densities, and the crossing."""

    block: tuple[int, int]
    shape: tuple[int, int, int]
    densities: tuple[float, ...]
    speedups: tuple[float, ...]

    @property
    def density(self) -> float:
        """The density where the speed-up falls to 1 (see `breakeven_density`)."""
        return breakeven_density(self.densities, self.speedups)


def breakeven_density(densities: tuple[float, ...], speedups: tuple[float, ...]) -> float:
    """Interpolated density where the speed-up (dense time / BSR time) crosses 1, scanning up from the sparsest.

    0.0 when the sparsest density measured already loses; the densest measured when none loses.
    """
    pts = sorted(zip(densities, speedups))
    if not pts or pts[0][1] < 1.0:
        return 0.0
    for (d0, s0), (d1, s1) in zip(pts, pts[1:]):
        if s1 < 1.0:
            return d0 + (d1 - d0) * (s0 - 1.0) / (s0 - s1)
    return pts[-1][0]


def block_key(block: tuple[int, int]) -> str:
    """The TOML key of a block shape: '32x32'."""
    return f"{block[0]}x{block[1]}"


def load_breakeven(path: str | os.PathLike | None = None) -> dict[tuple[int, int], float]:
    """Break-even densities by block: the shipped ones, overridden by the calibrated cpu-host override."""
    out = dict(SHIPPED_BREAKEVEN)
    p = Path(path) if path is not None else config_dir() / "cpu-host.toml"
    if p.is_file():
        with p.open("rb") as f:
            table = tomllib.load(f).get(TABLE, {})
        for key, value in table.items():
            bh, bw = (int(s) for s in key.split("x"))
            out[(bh, bw)] = float(value)
    return out


def breakeven_for(block: tuple[int, int], table: dict[tuple[int, int], float] | None = None) -> float:
    """The break-even density of `block`: its own figure, else that of the stored block of nearest area."""
    t = load_breakeven() if table is None else table
    if tuple(block) in t:
        return t[tuple(block)]
    area = block[0] * block[1]
    nearest = min(t, key=lambda b: (abs(b[0] * b[1] - area), b[0] * b[1]))
    return t[nearest]


def predict_bsr_speedup(block: tuple[int, int], density: float,
                        table: dict[tuple[int, int], float] | None = None) -> float:
    """Predicted dense time / BSR time: break-even / density (BSR time taken as proportional to density)."""
    return breakeven_for(block, table) / max(density, 1e-6)


def bsr_beats_dense(block: tuple[int, int], density: float, table: dict[tuple[int, int], float] | None = None) -> bool:
    """Whether a weight of this block shape and block density should run on the BSR kernel."""
    return density < breakeven_for(block, table)
