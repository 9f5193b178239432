"""What `bench` prints and writes: the measured table, the per-target estimate table, the environment, the JSON."""

from __future__ import annotations

import importlib.metadata
import json
import platform
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from ..backends.cost import EMULATED_LABEL
from .measure import Row

SCHEMA_VERSION = 1
"""Version of the JSON layout written by `--json` (docs/bench.md)."""

VERSIONED_PACKAGES = ("tensorsmith", "numpy", "numba", "llvmlite", "onnx", "onnxruntime", "torch", "matplotlib",
                      "dask", "distributed")
"""Packages whose installed version the environment block records (absent ones are left out)."""

MEASURED_COLUMNS = ("model", "configuration", "median ms", "spread ms", "x numba fp32", "predicted x (cpu-host)",
                    "quality", "cosine", "max err", "model MB", "peak MB", "compile ms", "jit ms")
"""Columns of the measured table, in order (docs/bench.md says what each holds)."""

_BOUND_SHORT = {"compute": "cmp", "memory": "mem", "overhead": "ovh"}


def _f(x: float | None, fmt: str = ".3g") -> str:
    return "-" if x is None else format(x, fmt)


def measured_cells(r: Row) -> list[str]:
    """The measured table's cells for one row (a failed row says so in place of its timing)."""
    quality = f"{r.metric}={r.metric_value:.4g}" if r.metric_value is not None else "-"
    timing = ["FAILED", "-", "-"] if r.error else [_f(r.median_ms, ".4g"), _f(r.spread_ms, ".2g"),
                                                  f"{r.speedup:.2f}x" if r.speedup else "-"]
    return [r.model, r.config, *timing, f"{r.predicted_speedup:.2f}x" if r.predicted_speedup else "-", quality,
            _f(r.cosine, ".5f"), _f(r.max_abs_err, ".2g"), f"{r.model_bytes / 1e6:.3f}",
            "-" if r.peak_memory_bytes is None else f"{r.peak_memory_bytes / 1e6:.2f}", _f(r.compile_ms, ".4g"),
            _f(r.jit_ms, ".4g")]


def measured_table(rows: Sequence[Row], title: str) -> Table:
    """The measured rows as a rich table, failures listed under it by the caller (see `failures`)."""
    t = Table(title=title)
    for col in MEASURED_COLUMNS:
        t.add_column(col, justify="left" if col in ("model", "configuration", "quality") else "right")
    for r in rows:
        t.add_row(*measured_cells(r), style="red" if r.error else None)
    return t


def failures(rows: Sequence[Row]) -> list[str]:
    """One line per failed configuration: model, configuration and the error."""
    return [f"{r.model} / {r.config}: {r.error}" for r in rows if r.error]


def estimate_cells(r: Row, targets: Sequence[str]) -> list[str]:
    """One row of the estimate table: per target latency, bound and energy."""
    cells = [r.model, r.config]
    for tg in targets:
        if tg in r.estimate_ms:
            b = _BOUND_SHORT.get(r.estimate_bound[tg], r.estimate_bound[tg])
            cells.append(f"{r.estimate_ms[tg]:.3g} ms {b}, {r.estimate_mj[tg]:.3g} mJ")
        else:
            cells.append("n/a" if tg in r.estimate_errors else "-")
    return cells


def estimate_table(rows: Sequence[Row], targets: Sequence[str]) -> Table:
    """The cost model's latency, bound and energy per target for every configuration it can price."""
    t = Table(title=f"cost model per target ({EMULATED_LABEL}): latency (bound of most of it), energy")
    t.add_column("model")
    t.add_column("configuration")
    for tg in targets:
        t.add_column(tg, justify="right")
    for r in rows:
        if r.estimate_ms or r.estimate_errors:
            t.add_row(*estimate_cells(r, targets))
    return t


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(threads: int, rows: Sequence[Row]) -> dict[str, Any]:
    """CPU model and flags, int8 paths and kernels used, versions and thread count, for the JSON."""
    from ..backends.numba.cpu_features import best_int8_path, host_features, int8_paths

    feats = host_features()
    versions = {}
    for pkg in VERSIONED_PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    used_paths = sorted({r.int8_path for r in rows if r.int8_path})
    return {
        "cpu": _cpu_model(), "machine": platform.machine(), "python": platform.python_version(),
        "cpu_flags": sorted(k for k, v in feats.items() if v),
        "int8_paths_available": list(int8_paths(feats)), "int8_path_best": best_int8_path(feats),
        "int8_paths_used": used_paths, "threads": threads, "versions": versions,
    }


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON-serializable: {type(x).__name__}")


def to_json(rows: Sequence[Row], env: dict[str, Any], settings: dict[str, Any], extra: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    """The whole run as one JSON-ready dict (layout in docs/bench.md)."""
    out = {"schema": SCHEMA_VERSION, "environment": env, "settings": settings,
           "rows": [asdict(r) for r in rows], "failures": failures(rows)}
    out.update(extra or {})
    return out


def write_json(data: dict[str, Any], path: str | Path) -> None:
    """Write `data` to `path` (indented; NaN and infinity as JSON's extensions)."""
    Path(path).write_text(json.dumps(data, indent=2, default=_jsonable))
