"""Calibrate the cpu-host target: measure this machine's fp32 GEMM peak, memory bandwidth, vector
throughput and per-kernel dispatch overhead, and write a TOML override merged over the shipped
cpu-host.toml (`bench calibrate`, or `python -m tensorsmith.bench.calibrate [--out PATH]`).

Figures are medians after warm-up. The per-kernel overhead, the int8 GEMM rate and the op weights
are measured through a runtime backend (Numba when registered); numpy's reference backend has no
fast int8 path, so with it the int8 peak keeps the shipped int8/fp32 ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.cost import config_dir, load_target
from .options import positive_int, reject_unknown, runtime_backends

MAX_SPREAD = 0.25
"""Largest spread (90th over 10th percentile of repeated timings, minus 1) a calibration accepts: beyond it
the machine is busy and the figures would mislead the cost model, so nothing is written unless forced."""


class CalibrationUnstableError(RuntimeError):
    """Repeated measurements disagree by more than the allowed spread; nothing was written."""


def time_samples(fn: Callable[[], Any], repeats: int = 7, warmup: int = 2) -> list[float]:
    """Seconds of each of `repeats` calls of `fn` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


def median_time(fn: Callable[[], Any], repeats: int = 7, warmup: int = 2) -> float:
    """Median seconds of `fn` over `repeats` calls after `warmup` untimed calls."""
    return float(np.median(time_samples(fn, repeats, warmup)))


BLAS_SPIN_SECONDS = 0.2
"""How long numpy's OpenBLAS workers keep spinning after a call (about 0.1 s by default; docs/reliability.md)."""


def blas_median_time(fn: Callable[[], Any], repeats: int = 7, warmup: int = 2) -> float:
    """`median_time` of a numpy (OpenBLAS) call, then a pause until its spinning workers sleep, so that they do not
    take the cores from the next measurement in this process."""
    t = median_time(fn, repeats, warmup)
    time.sleep(BLAS_SPIN_SECONDS)
    return t


def spread(samples: list[float]) -> float:
    """How much repeated timings disagree: 90th over 10th percentile, minus 1 (0.25 = 25%)."""
    lo, hi = np.percentile(samples, [10, 90])
    return float(hi / lo - 1.0)


def measure_spreads(quick: bool = False, repeats: int = 11) -> dict[str, float]:
    """The spread of repeated timings of a compute-bound GEMM and a memory-bound copy on this machine now."""
    n, mbytes = (256, 16) if quick else (768, 128)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    src, dst = np.ones(mbytes * 2**20 // 8), np.zeros(mbytes * 2**20 // 8)
    return {f"gemm {n}^3": spread(time_samples(lambda: np.matmul(a, a, out=c), repeats)),
            f"copy {mbytes} MB": spread(time_samples(lambda: np.copyto(dst, src), repeats))}


def measure_gemm_gflops(sizes: tuple[int, ...] = (1024, 2048), repeats: int = 5) -> dict[int, float]:
    """fp32 GEMM GFLOP/s of numpy's BLAS at square sizes (median of `repeats`)."""
    rng = np.random.default_rng(0)
    out = {}
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.empty((n, n), np.float32)
        t = median_time(lambda a=a, b=b, c=c: np.matmul(a, b, out=c), repeats)
        out[n] = 2 * n**3 / t / 1e9
    return out


def measure_bandwidth_gbs(mbytes: int = 256, repeats: int = 5) -> dict[str, float]:
    """DRAM bandwidth (GB/s) from a large copy (2 arrays moved) and a numba triad (3 arrays), when numba imports."""
    n = mbytes * 2**20 // 8
    a = np.zeros(n)
    b = np.ones(n)
    c = np.full(n, 2.0)
    res = {"copy": 2 * a.nbytes / median_time(lambda: np.copyto(a, b), repeats) / 1e9}
    try:
        import numba

        @numba.njit(parallel=True, fastmath=True, cache=False)
        def triad(x: np.ndarray, y: np.ndarray, z: np.ndarray, s: float) -> None:  # pragma: no cover - jitted
            for i in numba.prange(x.shape[0]):
                x[i] = y[i] + s * z[i]

        res["triad"] = 3 * a.nbytes / median_time(lambda: triad(a, b, c, 3.0), repeats) / 1e9
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

            out[name] = 12 * n * reps * threads / median_time(run, repeats) / 1e9
    return out


def measure_vector_gops(n: int = 1 << 11, repeats: int = 7) -> float:
    """Elementwise fp32 throughput (G adds/s) of a jitted loop over L1-resident arrays."""
    import numba

    @numba.njit(fastmath=True, cache=False)
    def add_rep(x: np.ndarray, y: np.ndarray, out: np.ndarray, reps: int) -> None:  # pragma: no cover - jitted
        for _ in range(reps):
            for i in range(x.shape[0]):
                out[i] = x[i] + y[i]

    x, y, out = (np.ones(n, np.float32) for _ in range(3))
    reps = max(1, int(2e7 // n))
    return n * reps / median_time(lambda: add_rep(x, y, out, reps), repeats) / 1e9


# ops whose kernels are compute-heavy enough to time against COST_RULES' op count (cheap ones such as
# add or relu are bandwidth-bound and keep weight 1); shapes differ from bench/validate_cost.py's suite
_WEIGHTED_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "exp": lambda b, x: b.exp(x), "log": lambda b, x: b.log(b.abs(x)), "sqrt": lambda b, x: b.sqrt(b.abs(x)),
    "tanh": lambda b, x: b.tanh(x), "erf": lambda b, x: b.erf(x), "sigmoid": lambda b, x: b.sigmoid(x),
    "gelu": lambda b, x: b.gelu(x), "softmax": lambda b, x: b.softmax(x), "div": lambda b, x: b.div(x, x),
    "layernorm": lambda b, x: b.layernorm(x, np.ones(1024, np.float32), np.zeros(1024, np.float32)),
    "maxpool2d": lambda b, x: b.maxpool2d(b.reshape(x, (1, 16, 64, 64)), (3, 3), (2, 2), pads=1),
    "avgpool2d": lambda b, x: b.avgpool2d(b.reshape(x, (1, 16, 64, 64)), (3, 3), (2, 2), pads=1),
}


def measure_op_weights(backend: str, vector_gops: float, dispatch_us: float, repeats: int = 15) -> dict[str, float]:
    """For each op of _WEIGHTED_OPS: its kernel's time on f32[64, 1024] through `backend`, less the dispatch,
    over the time COST_RULES' op count takes at `vector_gops` (the [op_weights] entry; 1 = as counted)."""
    from .. import runtime
    from ..backends.cost import node_work
    from ..ir import GraphBuilder, f32

    rng = np.random.default_rng(2)
    xs = {"x": rng.standard_normal((64, 1024), dtype=np.float32)}
    b = GraphBuilder("abs")  # the helper node some graphs put in front of the op being timed
    b.output(b.abs(b.input("x", f32[64, 1024])))
    t_abs = runtime.compile(b.build(), backend=backend).median_seconds(xs, repeats=repeats, warmup=3)
    out = {}
    for op, build in _WEIGHTED_OPS.items():
        b = GraphBuilder(op)
        b.output(build(b, b.input("x", f32[64, 1024])))
        g = b.build()
        node = next(n for n in g.nodes if n.op == op)
        t = runtime.compile(g, backend=backend).median_seconds(xs, repeats=repeats, warmup=3)
        extra = t_abs if any(n.op == "abs" for n in g.nodes) else dispatch_us * 1e-6
        counted = node_work(node).ops / (vector_gops * 1e9)
        out[op] = round(max(0.05, (t - extra) / counted), 3)
    return out


def measure_int8_gops(backend: str, n: int = 384, repeats: int = 7) -> float | None:
    """int8 GEMM GOP/s of `backend` on an n^3 one-node graph (i8 x i8 -> i32), or None when it has no
    int8 path or is the numpy reference backend (which has no fast one)."""
    if backend == "reference":
        return None
    from .. import runtime
    from ..ir import GraphBuilder, QuantInfo, TensorType, Value, i8

    rng = np.random.default_rng(3)
    q = QuantInfo((0.05,), (0,), 8)
    b = GraphBuilder("int8")
    x = b.input("x", TensorType((n, n), i8, quant=q))
    w = Value("w", TensorType((n, n), i8, quant=q), rng.integers(-127, 128, (n, n), dtype=np.int8))
    b.output(b.linear(x, w))
    try:
        exe = runtime.compile(b.build(), backend=backend)
        t = exe.median_seconds({"x": rng.integers(-127, 128, (n, n), dtype=np.int8)}, repeats=repeats, warmup=2)
    except Exception:  # no int8 path in this backend: keep the shipped ratio
        return None
    return 2 * n**3 / t / 1e9


def measure_dispatch_us(backend: str | None = None, repeats: int = 201) -> tuple[float, str]:
    """Per-kernel overhead (us): the whole run of a one-node graph on 8 floats through the runtime, with
    the best backend available (a backend may fuse chains of nodes, so a longer graph would not tell)."""
    from .. import runtime
    from ..ir import GraphBuilder, f32

    b = GraphBuilder("tiny")
    x = b.input("x", f32[1, 8])
    b.output(b.relu(x))
    g = b.build()
    runtime.load_optional_backends()
    name = backend or ("numba" if "numba" in runtime.BACKENDS else "reference")
    exe = runtime.compile(g, backend=name)
    t = exe.median_seconds({"x": np.ones((1, 8), np.float32)}, repeats=repeats, warmup=5)
    return t * 1e6, name


BSR_BLOCKS = ((32, 32), (16, 16))
"""Block shapes whose BSR / dense break-even density calibrate stores."""


def measure_bsr_breakevens(quick: bool = False) -> dict[str, Any] | None:
    """Per block of BSR_BLOCKS, the density below which the Numba BSR kernel beats the dense micro-kernel GEMM
    (an FFN-shaped product, 128x3072x768), or None when this host has no path for the sparse kernels."""
    from ..backends.cost.sparse_kernels import block_key
    from ..backends.numba import k_microkernel
    from ..backends.numba.sparse_ukernels import HOST_ISA
    from .sparse_gemm import measure_bsr_breakeven

    if HOST_ISA is None or not k_microkernel.AVAILABLE:
        return None
    shape, dens = ((64, 256, 512), (0.1, 0.5)) if quick else ((128, 768, 3072), (0.1, 0.3, 0.5, 0.7))
    out: dict[str, Any] = {"shape_mnk": list(shape), "densities": list(dens), "speedups": {}, "density": {}}
    for block in BSR_BLOCKS:
        be = measure_bsr_breakeven(*shape, block, densities=dens, repeats=3 if quick else 7)
        out["speedups"][block_key(block)] = [round(s, 3) for s in be.speedups]
        out["density"][block_key(block)] = round(be.density, 3)
    return out


def measure_bsr_int8_breakevens(quick: bool = False) -> dict[str, Any] | None:
    """Per block of BSR_BLOCKS, the density below which the block-sparse int8 kernel beats the dense int8 GEMM on the
    host's best int8 path (128x3072x768), or None when this host has no int8 path."""
    from ..backends.cost.sparse_kernels import block_key
    from .sparse_int8_gemm import measure_bsr_int8_breakeven

    shape, dens = ((64, 256, 512), (0.1, 0.5)) if quick else ((128, 768, 3072), (0.1, 0.2, 0.3, 0.5))
    out: dict[str, Any] = {"shape_mnk": list(shape), "densities": list(dens), "speedups": {}, "density": {}}
    for block in BSR_BLOCKS:
        be = measure_bsr_int8_breakeven(*shape, block, densities=dens, repeats=3 if quick else 7)
        if be is None:
            return None
        out["speedups"][block_key(block)] = [round(s, 3) for s in be.speedups]
        out["density"][block_key(block)] = round(be.density, 3)
    return out


NM_PATTERNS = ((2, 4), (4, 8), (1, 4))
"""N:M patterns whose kernel speed-up over the dense GEMM calibrate stores."""


def measure_nm_speedups(quick: bool = False) -> dict[str, Any] | None:
    """Per pattern of NM_PATTERNS, the N:M kernel's speed-up over the dense micro-kernel GEMM on an FFN-shaped
    product (128x3072x768), or None when this host has no path for the sparse kernels."""
    from ..backends.cost.sparse_kernels import block_key
    from ..backends.numba import k_microkernel
    from ..backends.numba.sparse_ukernels import HOST_ISA
    from .sparse_gemm import measure_nm_speedup

    if HOST_ISA is None or not k_microkernel.AVAILABLE:
        return None
    shape = (64, 256, 512) if quick else (128, 768, 3072)
    speedups = {block_key(p): round(measure_nm_speedup(*shape, p, repeats=3 if quick else 7), 3)
                for p in NM_PATTERNS}
    return {"shape_mnk": list(shape), "speedup": speedups}


def _clock_ghz() -> float | None:
    try:
        mhz = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
               if line.lower().startswith("cpu mhz")]
        return round(max(mhz) / 1000, 3) if mhz else None
    except OSError:
        return None


def _breakeven_lines(table: str, what: str, be: dict[str, Any]) -> list[str]:
    """The TOML lines of one measured break-even table (read by backends/cost/sparse_kernels.py)."""
    head = f"[{table}]   # block density below which {what} (MxNxK {'x'.join(map(str, be['shape_mnk']))})"
    return [head, *(f"{key} = {d}   # speed-ups {be['speedups'][key]} at densities {be['densities']}"
                    for key, d in be["density"].items()), ""]


def toml_override(m: dict[str, Any]) -> str:
    """The cpu-host override file's text for the measured figures `m`, merged over the shipped cpu-host.toml."""
    base = load_target("cpu-host", overrides=False)
    lines = [f"# cpu-host override written by `bench calibrate` on {m['date']} ({m['machine']}).",
             "# Merged over the shipped cpu-host.toml; delete this file to go back to the shipped figures.",
             f"launch_overhead_us = {m['dispatch_us']:.3f}   # measured one-node graph run ({m['dispatch_backend']})"]
    if m.get("threads"):
        lines.append(f"units = {m['units']}   # measured with {m['threads']} thread(s)")
    if m.get("clock_ghz"):
        lines.append(f"clock_ghz = {m['clock_ghz']}   # /proc/cpuinfo")
    lines += ["", "[peak_tops]",
              f"fp32 = {m['fp32_gflops'] / 1e3:.6g}   # measured numpy fp32 GEMM, best of {m['gemm_sizes']}",
              f"int8 = {m['int8_gops'] / 1e3:.6g}   # " + (f"measured {m['dispatch_backend']} int8 GEMM"
                                                      if m["int8_measured"] else
                                                      "shipped int8/fp32 ratio x measured fp32 (not measured)"),
              "", "[vector_tops]",
              f"fp32 = {m['vector_gops'] / 1e3:.6g}   # measured jitted add loop on cache-resident arrays",
              f"int8 = {m['vector_gops'] / 1e3:.6g}", "",
              f"[op_weights]   # {m['dispatch_backend']} kernel time / (COST_RULES' op count at the rate above)"]
    lines += [f"{op} = {w}" for op, w in m["op_weights"].items()] + [""]
    for table, what in (("bsr_breakeven", "the BSR kernel beats the dense GEMM"),
                        ("bsr_int8_breakeven", "the block-sparse int8 kernel beats the dense int8 GEMM")):
        if m.get(table):
            lines += _breakeven_lines(table, what, m[table])
    if m.get("nm_speedup"):
        nm = m["nm_speedup"]
        shape = "x".join(map(str, nm["shape_mnk"]))
        lines += [f"[nm_speedup]   # dense GEMM time / N:M kernel time (MxNxK {shape}); above 1 the N:M kernel runs",
                  *(f"{key} = {v}" for key, v in nm["speedup"].items()), ""]
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


@contextlib.contextmanager
def thread_limit(threads: int | None) -> Iterator[None]:
    """Limit numpy's BLAS (through threadpoolctl, when installed) and Numba to `threads` threads."""
    if threads is None:
        yield
        return
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - optional
            yield
        else:
            with threadpool_limits(threads):
                yield
    finally:
        numba.set_num_threads(before)


def calibrate(out_path: str | os.PathLike | None = None, quick: bool = False,
              threads: int | None = None, backend: str | None = None, force: bool = False,
              max_spread: float = MAX_SPREAD) -> dict[str, Any]:
    """Measure this CPU and write the cpu-host override TOML (default: config_dir()/cpu-host.toml).

    First times a GEMM and a copy repeatedly: when either spread exceeds `max_spread` (the machine is busy)
    it raises CalibrationUnstableError and writes nothing, unless `force` (then `m["unstable"]` says so).
    Returns the measurements and the path written. `quick` uses smaller problems (for tests);
    `threads` measures with that many threads and records them as the target's units; `backend`
    is the runtime backend whose dispatch, op weights and int8 GEMM are measured (default: numba
    when registered, else reference).
    """
    shipped = load_target("cpu-host", overrides=False)
    units = threads or shipped.units
    sizes = (256, 512) if quick else (1024, 2048)
    with thread_limit(threads):
        spreads = measure_spreads(quick)
        unstable = {k: v for k, v in spreads.items() if v > max_spread}
        if unstable and not force:
            shown = ", ".join(f"{k} {v:.0%}" for k, v in unstable.items())
            raise CalibrationUnstableError(
                f"repeated timings disagree by more than {max_spread:.0%} ({shown}): the machine is busy, and a "
                "calibration taken now would mislead the cpu-host predictions. Nothing was written; run again on a "
                "quiet machine, or force it (bench calibrate --force)")
        gemm = measure_gemm_gflops(sizes, repeats=3 if quick else 5)
        bw = measure_bandwidth_gbs(16 if quick else 256, repeats=3 if quick else 5)
        caches = measure_cache_bandwidth_gbs([(lv.name, lv.total_capacity(units)) for lv in shipped.on_chip],
                                             threads=units, repeats=3 if quick else 5)
        vec = measure_vector_gops(repeats=3 if quick else 7)
        disp, backend = measure_dispatch_us(backend, repeats=21 if quick else 201)
        weights = measure_op_weights(backend, vec, disp, repeats=5 if quick else 15)
        int8 = measure_int8_gops(backend, 128 if quick else 384, repeats=3 if quick else 7)
        bsr = measure_bsr_breakevens(quick) if backend == "numba" else None
        bsr_int8 = measure_bsr_int8_breakevens(quick) if backend == "numba" and int8 is not None else None
        nm = measure_nm_speedups(quick) if backend == "numba" else None
    fp32 = max(gemm.values())
    m: dict[str, Any] = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or platform.platform()}, {os.cpu_count()} CPUs",
        "threads": threads, "units": units,
        "gemm_sizes": list(sizes), "gemm_gflops": {str(k): round(v, 2) for k, v in gemm.items()},
        "fp32_gflops": fp32, "int8_measured": int8 is not None,
        "int8_gops": int8 if int8 is not None else fp32 * shipped.peak["int8"] / shipped.peak["fp32"],
        "bandwidth_gbs": {k: round(v, 2) for k, v in bw.items()}, "dram_gbs": max(bw.values()),
        "cache_gbs": {k: round(v, 2) for k, v in caches.items()},
        "vector_gops": vec, "op_weights": weights,
        "dispatch_us": disp, "dispatch_backend": backend, "clock_ghz": _clock_ghz(), "bsr_breakeven": bsr,
        "bsr_int8_breakeven": bsr_int8, "nm_speedup": nm,
        "spread": {k: round(v, 4) for k, v in spreads.items()}, "max_spread": max_spread, "unstable": bool(unstable),
    }
    path = Path(out_path) if out_path is not None else config_dir() / "cpu-host.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(toml_override(m))
    m["path"] = str(path)
    return m


def main(argv: list[str] | None = None) -> int:
    """Command line: measure and write the override; prints the measurements as JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="where to write the TOML (default: the user config folder)")
    p.add_argument("--quick", action="store_true", help="smaller problems, fewer repeats")
    p.add_argument("--threads", type=positive_int, default=None, help="measure with this many threads (default: all)")
    p.add_argument("--backend", default=None, help="runtime backend to measure (default: numba if available)")
    p.add_argument("--force", action="store_true", help=f"write even when repeated timings spread more than "
                                                        f"{MAX_SPREAD:.0%} (a busy machine)")
    p.add_argument("--json", action="store_true", help="print every measurement as JSON instead of the summary")
    args = p.parse_args(argv)
    if args.backend is not None:
        reject_unknown(p, "--backend", [args.backend], runtime_backends(), "backend")
    try:
        m = calibrate(args.out, quick=args.quick, threads=args.threads, backend=args.backend, force=args.force)
    except CalibrationUnstableError as e:
        print(f"calibration refused: {e}")
        return 1
    print(json.dumps(m, indent=2) if args.json else summary_text(m))
    return 0


def summary_rows(m: dict[str, Any]) -> list[tuple[str, str]]:
    """The calibration's headline figures as (what, value) rows."""
    rows = [("fp32 GEMM", f"{m['fp32_gflops']:.1f} GFLOP/s"),
            ("int8 GEMM", f"{m['int8_gops']:.1f} GOP/s" + ("" if m["int8_measured"] else " (shipped ratio)")),
            ("DRAM", f"{m['dram_gbs']:.1f} GB/s")]
    rows += [(f"{k} bandwidth", f"{v:.1f} GB/s") for k, v in m["cache_gbs"].items()]
    rows += [("vector", f"{m['vector_gops']:.1f} GOP/s"),
             ("dispatch", f"{m['dispatch_us']:.2f} us per kernel ({m['dispatch_backend']})")]
    for table, what in (("bsr_breakeven", "BSR break-even"), ("bsr_int8_breakeven", "BSR int8 break-even")):
        if m.get(table):
            rows.append((what, ", ".join(f"{k} {d}" for k, d in m[table]["density"].items())))
    if m.get("nm_speedup"):
        speedups = m["nm_speedup"]["speedup"]
        rows.append(("N:M speed-up", ", ".join(f"{k.replace('x', ':')} {v}x" for k, v in speedups.items())))
    rows += [(f"spread, {k}", f"{v:.0%} (limit {m['max_spread']:.0%})") for k, v in m["spread"].items()]
    return rows


def summary_text(m: dict[str, Any]) -> str:
    """A short table of what was measured, where it was written and how to undo it."""
    rows = summary_rows(m)
    width = max(len(k) for k, _ in rows)
    lines = [f"cpu-host calibration, {m['machine']}, {m['units']} unit(s)"]
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    lines += [undo_text(m)]
    return "\n".join(lines)


def undo_text(m: dict[str, Any]) -> str:
    """Where the override was written, what reads it, and how to undo it."""
    warn = ("WARNING: written although repeated timings disagreed beyond the limit (--force); predictions may be off\n"
            if m.get("unstable") else "")
    return (f"{warn}wrote {m['path']}: load_target('cpu-host') now merges it over the shipped cpu-host.toml. "
            f"To undo: rm {m['path']}")


if __name__ == "__main__":
    raise SystemExit(main())
