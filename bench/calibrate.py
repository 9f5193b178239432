"""Calibrate the cpu-host target: measure this machine's fp32 GEMM peak, memory bandwidth, vector
throughput and per-kernel dispatch overhead, and write a TOML override merged over the shipped
cpu-host.toml (`bench calibrate`, or `python -m tensorsmith.bench.calibrate [--out PATH]`).

Figures are medians after warm-up. int8 has no fast numpy path to measure, so its peak keeps the
shipped int8/fp32 ratio (measured once with an int8 micro-kernel) applied to the new fp32 peak.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.cost import config_dir, load_target


def _median_time(fn: Callable[[], Any], repeats: int = 7, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def measure_gemm_gflops(sizes: tuple[int, ...] = (1024, 2048), repeats: int = 5) -> dict[int, float]:
    """fp32 GEMM GFLOP/s of numpy's BLAS at square sizes (median of `repeats`)."""
    rng = np.random.default_rng(0)
    out = {}
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.empty((n, n), np.float32)
        t = _median_time(lambda a=a, b=b, c=c: np.matmul(a, b, out=c), repeats)
        out[n] = 2 * n**3 / t / 1e9
    return out


def measure_bandwidth_gbs(mbytes: int = 256, repeats: int = 5) -> dict[str, float]:
    """DRAM bandwidth (GB/s) from a large copy (2 arrays moved) and a numba triad (3 arrays), when numba imports."""
    n = mbytes * 2**20 // 8
    a = np.zeros(n)
    b = np.ones(n)
    c = np.full(n, 2.0)
    res = {"copy": 2 * a.nbytes / _median_time(lambda: np.copyto(a, b), repeats) / 1e9}
    try:
        import numba

        @numba.njit(parallel=True, fastmath=True, cache=False)
        def triad(x: np.ndarray, y: np.ndarray, z: np.ndarray, s: float) -> None:  # pragma: no cover - jitted
            for i in numba.prange(x.shape[0]):
                x[i] = y[i] + s * z[i]

        res["triad"] = 3 * a.nbytes / _median_time(lambda: triad(a, b, c, 3.0), repeats) / 1e9
    except ImportError:  # pragma: no cover - numba is a core dependency
        pass
    return res


def measure_cache_bandwidth_gbs(levels: list[tuple[str, int]], threads: int, repeats: int = 5) -> dict[str, float]:
    """Bandwidth (GB/s, all cores together) of each on-chip level: `threads` threads each run a jitted
    triad over their own arrays, together filling a quarter of the level, repeated inside the kernel
    so that call overhead does not count."""
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a core dependency
        return {}
    from concurrent.futures import ThreadPoolExecutor

    @numba.njit(nogil=True, fastmath=True, cache=False)
    def triad_rep(x: np.ndarray, y: np.ndarray, z: np.ndarray, reps: int) -> None:  # pragma: no cover - jitted
        for _ in range(reps):
            for i in range(x.shape[0]):
                x[i] = y[i] + np.float32(1.0001) * z[i]

    out = {}
    with ThreadPoolExecutor(threads) as pool:
        for name, total_bytes in levels:
            n = max(256, total_bytes // 4 // threads // 3 // 4)  # per thread: three float32 arrays
            arrays = [[np.ones(n, np.float32) for _ in range(3)] for _ in range(threads)]
            reps = max(1, int(1e8 // (12 * n)))

            def run(reps: int = reps, arrays: list = arrays) -> None:
                list(pool.map(lambda a: triad_rep(a[0], a[1], a[2], reps), arrays))

            out[name] = 12 * n * reps * threads / _median_time(run, repeats) / 1e9
    return out


# vector ops per element that COST_RULES counts for each op, and how the op is built from measured loops
_RULE_OPS = {"exp": 8, "log": 8, "tanh": 10, "erf": 10, "sigmoid": 10, "gelu": 14, "softmax": 12}


def measure_vector(n: int = 1 << 11, repeats: int = 7) -> dict[str, Any]:
    """Elementwise fp32 throughput in cache with jitted loops (adds per second), and what exp, log, tanh
    and erf cost relative to an add; from those, the [op_weights] that scale COST_RULES' op counts."""
    import math as _m

    import numba

    def loop(fn):  # type: ignore[no-untyped-def]
        @numba.njit(fastmath=True, cache=False)
        def run(x: np.ndarray, y: np.ndarray, out: np.ndarray, reps: int) -> None:  # pragma: no cover - jitted
            for _ in range(reps):
                for i in range(x.shape[0]):
                    out[i] = fn(x[i], y[i])

        return run

    fexp, ftanh, ferf, source = _math_functions()
    kernels = {
        "add": loop(numba.njit(lambda a, b: a + b)),
        "exp": loop(numba.njit(lambda a, b: fexp(a))),
        "log": loop(numba.njit(lambda a, b: _m.log(b))),
        "tanh": loop(numba.njit(lambda a, b: ftanh(a))),
        "erf": loop(numba.njit(lambda a, b: ferf(a))),
    }
    rng = np.random.default_rng(1)
    x = rng.standard_normal(n).astype(np.float32)
    y = (np.abs(x) + 0.5).astype(np.float32)
    out = np.empty_like(x)
    reps = max(1, int(2e7 // n))
    per_elem = {k: _median_time(lambda f=f: f(x, y, out, reps), repeats) / (n * reps) for k, f in kernels.items()}
    r = {k: v / per_elem["add"] for k, v in per_elem.items()}
    ratios = {"exp": r["exp"], "log": r["log"], "tanh": r["tanh"], "erf": r["erf"], "sigmoid": r["exp"] + 2,
              "gelu": r["erf"] + 4, "softmax": r["exp"] + 4}
    weights = {op: round(max(0.05, ratios[op] / _RULE_OPS[op]), 3) for op in _RULE_OPS}
    return {"add_gops": 1 / per_elem["add"] / 1e9, "relative_cost": {k: round(v, 2) for k, v in r.items()},
            "op_weights": weights, "math_source": source}


def _math_functions() -> tuple[Any, Any, Any, str]:
    """exp, tanh and erf as the Numba backend's kernels compute them (its vectorizable float32
    approximations) when that backend is installed, else libm's through numba."""
    try:
        from ..backends.numba.mathfn import ferf, fexp, ftanh

        return fexp, ftanh, ferf, "Numba backend (backends/numba/mathfn.py)"
    except Exception:  # backend missing or broken: measure libm instead, and say so in the result
        import math

        import numba

        return (numba.njit(lambda a: math.exp(a)), numba.njit(lambda a: math.tanh(a)),
                numba.njit(lambda a: math.erf(a)), "libm through numba")


def measure_dispatch_us(backend: str | None = None, repeats: int = 201) -> tuple[float, str]:
    """Per-node overhead (us) of running a tiny graph through the runtime, with the best backend available."""
    from .. import runtime
    from ..ir import GraphBuilder, f32

    b = GraphBuilder("tiny")
    x = b.input("x", f32[1, 8])
    y = x
    for _ in range(8):
        y = b.relu(y)
    b.output(y)
    g = b.build()
    runtime._load_optional_backends()
    name = backend or ("numba" if "numba" in runtime.BACKENDS else "reference")
    exe = runtime.compile(g, backend=name)
    t = exe.median_seconds({"x": np.ones((1, 8), np.float32)}, repeats=repeats, warmup=5)
    return t / len(g.nodes) * 1e6, name


def _clock_ghz() -> float | None:
    try:
        mhz = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
               if line.lower().startswith("cpu mhz")]
        return round(max(mhz) / 1000, 3) if mhz else None
    except OSError:
        return None


def _toml_override(m: dict[str, Any]) -> str:
    base = load_target("cpu-host", overrides=False)
    lines = [f"# cpu-host override written by `bench calibrate` on {m['date']} ({m['machine']}).",
             "# Merged over the shipped cpu-host.toml; delete this file to go back to the shipped figures.",
             f"launch_overhead_us = {m['dispatch_us']:.3f}   # measured per-node dispatch ({m['dispatch_backend']})"]
    if m.get("clock_ghz"):
        lines.append(f"clock_ghz = {m['clock_ghz']}   # /proc/cpuinfo")
    lines += ["", "[peak_tops]",
              f"fp32 = {m['fp32_gflops'] / 1e3:.5f}   # measured numpy fp32 GEMM, best of {m['gemm_sizes']}",
              f"int8 = {m['int8_gops'] / 1e3:.5f}   # shipped int8/fp32 ratio x measured fp32 (not measured)",
              "", "[vector_tops]",
              f"fp32 = {m['vector_gops'] / 1e3:.5f}   # measured jitted add loop on cache-resident arrays",
              f"int8 = {m['vector_gops'] / 1e3:.5f}", "",
              f"[op_weights]   # measured cost relative to an add ({m['math_source']}), over COST_RULES' op counts"]
    lines += [f"{op} = {w}" for op, w in m["op_weights"].items()] + [""]
    for lvl in base.memory:
        if not lvl.on_chip:
            bw, src = m["dram_gbs"], "   # measured (max of copy and triad)"
        elif lvl.name in m["cache_gbs"]:
            bw, src = m["cache_gbs"][lvl.name], "   # measured (triad filling a quarter of the level)"
        else:
            bw, src = lvl.bandwidth / 1e9, ""
        lines += ["[[memory]]", f'name = "{lvl.name}"', f"capacity = {lvl.capacity_bytes}",
                  f"per_unit = {str(lvl.per_unit).lower()}", f"on_chip = {str(lvl.on_chip).lower()}",
                  f"persistent = {str(lvl.persistent).lower()}",
                  f"bandwidth_gbs = {bw:.3f}{src}", f"energy_pj_per_byte = {lvl.energy_pj_per_byte}", ""]
    return "\n".join(lines)


def calibrate(out_path: str | os.PathLike | None = None, quick: bool = False) -> dict[str, Any]:
    """Measure this CPU and write the cpu-host override TOML (default: config_dir()/cpu-host.toml).

    Returns the measurements and the path written. `quick` uses smaller problems (for tests).
    """
    sizes = (256, 512) if quick else (1024, 2048)
    gemm = measure_gemm_gflops(sizes, repeats=3 if quick else 5)
    bw = measure_bandwidth_gbs(16 if quick else 256, repeats=3 if quick else 5)
    shipped = load_target("cpu-host", overrides=False)
    caches = measure_cache_bandwidth_gbs([(lv.name, lv.total_capacity(shipped.units)) for lv in shipped.on_chip],
                                         threads=shipped.units, repeats=3 if quick else 5)
    vec = measure_vector(repeats=3 if quick else 7)
    disp, backend = measure_dispatch_us(repeats=21 if quick else 201)
    fp32 = max(gemm.values())
    m: dict[str, Any] = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or platform.platform()}, {os.cpu_count()} CPUs",
        "gemm_sizes": list(sizes), "gemm_gflops": {str(k): round(v, 2) for k, v in gemm.items()},
        "fp32_gflops": fp32, "int8_gops": fp32 * shipped.peak["int8"] / shipped.peak["fp32"],
        "bandwidth_gbs": {k: round(v, 2) for k, v in bw.items()}, "dram_gbs": max(bw.values()),
        "cache_gbs": {k: round(v, 2) for k, v in caches.items()},
        "vector_gops": vec["add_gops"], "relative_cost": vec["relative_cost"], "op_weights": vec["op_weights"],
        "math_source": vec["math_source"],
        "dispatch_us": disp, "dispatch_backend": backend, "clock_ghz": _clock_ghz(),
    }
    path = Path(out_path) if out_path is not None else config_dir() / "cpu-host.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_toml_override(m))
    m["path"] = str(path)
    return m


def main(argv: list[str] | None = None) -> int:
    """Command line: measure and write the override; prints the measurements as JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="where to write the TOML (default: the user config folder)")
    p.add_argument("--quick", action="store_true", help="smaller problems, fewer repeats")
    args = p.parse_args(argv)
    print(json.dumps(calibrate(args.out, quick=args.quick), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
