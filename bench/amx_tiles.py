"""A/B of the AMX int8 GEMM's options in one process: the A prefetch of the tile block, and how many panels'
accumulators the dequantizing driver collects before it dequantizes them.

    python -m tensorsmith.bench.amx_tiles [--option prefetch|epilogue] [--panels 8] [--threads 1] [--repeats 11]
        [--rounds 7]

`prefetch`: the `gemm_i32` driver (u8 x s8 -> i32) around tile blocks built by `make_tile_block` with
`prefetch_a` on and off. `epilogue`: the `gemm_dequant` driver (f32 out) dequantizing every panel apart against
the path's `epilogue_panels` at once. Each variant is the amx path's driver compiled here (not cached); every
other part is the path's own. The variants alternate for `--rounds` rounds and each figure is the median over
rounds of the median of `--repeats` runs, so a change of machine speed during the run hits both. Every output is
checked against numpy's int64 product. Needs a host with AMX (amx-int8) and Linux's permission for the tile state.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from ..backends.numba import int8_amx, int8_drivers
from ..backends.numba import int8_gemm as ig
from ..backends.numba.cpu_features import int8_paths
from ..backends.numba.jit import EMPTY_F32, helper, specialized, subkernel
from .measure import time_runs
from .options import check_threads, positive_int

SHAPES = ((1024, 1024, 1024), (128, 768, 768), (128, 768, 3072), (128, 3072, 768), (128, 384, 1536),
          (128, 1536, 384), (16, 4096, 4096), (100, 1000, 1000))
"""(M, K, N): 1024^3, the BERT-base and MiniLM layer shapes, a memory-bound M and ragged sizes."""

PATH = "amx"


def gemm_variant(tag: str, prefetch_a: bool, epilogue_panels: int, driver: Callable[..., Any],
                 parallel: bool) -> Callable[..., Any]:
    """The amx path's `driver` (uncached) around tile blocks with `prefetch_a`, dequantizing `epilogue_panels`
    panels at once."""
    shape, kernels = ig.SHAPES[PATH], ig.UKERNELS[PATH]
    sizes = {"MR": shape.mr, "NR": shape.nr, "KC": ig.L1_WEIGHT_BLOCK // shape.nr, "EPILOGUE_PANELS": epilogue_panels}
    rows = helper(specialized(int8_drivers.acc_rows, f"{PATH}_{tag}", UK_FULL=kernels[shape.mr], UK_FOUR=kernels[4],
                              UK_TWO=kernels[2], UK_ONE=kernels[1], **sizes))
    clear = helper(specialized(int8_drivers.clear_rows, f"{PATH}_{tag}", **sizes))
    panel = subkernel(specialized(int8_drivers.acc_panel_tiles, f"{PATH}_{tag}", ACC_ROWS=rows, CLEAR_ROWS=clear,
                                  TILE_32=int8_amx.make_tile_block(2, prefetch_a=prefetch_a),
                                  TILE_16=int8_amx.make_tile_block(1, prefetch_a=prefetch_a), **sizes))
    group = subkernel(specialized(int8_drivers.acc_group, f"{PATH}_{tag}", acc_panel=panel, **sizes))
    per_item = helper(specialized(int8_drivers.scratch_per_item, f"{PATH}_{tag}", **sizes))
    return numba.njit(error_model="numpy", parallel=parallel, fastmath=False)(
        specialized(driver, f"{PATH}_{tag}", acc_group=group, scratch_per_item=per_item,
                    TILES_BEGIN=int8_amx.tiles_begin, TILES_END=int8_amx.tiles_end, **sizes))


def variants(option: str, parallel: bool, panels: int) -> dict[str, tuple[Callable[..., Any], int]]:
    """name -> (compiled driver, panels dequantized together) of the two sides of `option` (`panels`: the second
    side's group of panels for `epilogue`)."""
    if option == "prefetch":
        return {"no prefetch": (gemm_variant("nopf", False, panels, int8_drivers.gemm_i32, parallel), panels),
                "prefetch A": (gemm_variant("pfa", True, panels, int8_drivers.gemm_i32, parallel), panels)}
    return {"per panel": (gemm_variant("epi1", True, 1, int8_drivers.gemm_dequant, parallel), 1),
            f"{panels} panels": (gemm_variant(f"epi{panels}", True, panels, int8_drivers.gemm_dequant, parallel),
                                 panels)}


def shape_call(option: str, gemm: Callable[..., Any], panels: int, m: int, k: int, n: int, threads: int,
               rng: np.random.Generator) -> tuple[Callable[[], Any], Callable[[], bool]]:
    """(a call of `gemm` on random operands of m x k x n, a check of its last output against numpy)."""
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    packed = ig.pack_int8_weights(w, np.ones(n, np.float32), PATH)
    xq = rng.integers(0, 256, (m, ig.padded_k(k))).astype(np.uint8)
    tm, tnp = ig.int8_tiles(m, n, PATH, threads, threads > 1)
    items = -(-m // tm) * -(-packed.data.shape[0] // tnp)
    scratch = np.empty(items * tm * ig.SHAPES[PATH].nr * min(tnp, panels), np.int32)
    want = xq[:, :k].astype(np.int64) @ w.astype(np.int64).T
    if option == "prefetch":
        out = np.empty((m, n), np.int32)
        call = functools.partial(gemm, xq, packed.data, out, tm, tnp, scratch)
        return call, lambda: bool(np.array_equal(out, want))
    y = np.empty((m, n), np.float32)
    q, s_out, zp_out = ig.requant_operands(None, m, n)
    call = functools.partial(gemm, xq, np.ones(1, np.float32), np.zeros(1, np.int32), packed.data, packed.colsum,
                             ig.NO_WEIGHT_ZERO_POINT, ig.NO_WEIGHT_ZERO_POINT, packed.scales, np.zeros(n, np.float32),
                             y, tm, tnp, scratch, ig.NO_STAGES, EMPTY_F32, ig.NO_PARAMS, EMPTY_F32, q, s_out, zp_out)
    return call, lambda: bool(np.array_equal(y, want.astype(np.float32)))


def main(argv: list[str] | None = None) -> int:
    """Print GOP/s per shape for each variant and their ratio."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--option", choices=("prefetch", "epilogue"), default="prefetch")
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--panels", type=positive_int, default=ig.SHAPES[PATH].epilogue_panels,
                   help="epilogue: panels dequantized together on the second side (default: the path's)")
    p.add_argument("--repeats", type=positive_int, default=11)
    p.add_argument("--rounds", type=positive_int, default=7)
    args = p.parse_args(argv)
    check_threads(p, "--threads", [args.threads])
    if PATH not in int8_paths():
        print(f"this host does not execute the {PATH} path (int8 paths here: {', '.join(int8_paths()) or 'none'})")
        return 2
    numba.set_num_threads(args.threads)
    pair = variants(args.option, args.threads > 1, args.panels)
    rng = np.random.default_rng(0)
    print(f"int8 GEMM ({'u8 x s8 -> i32' if args.option == 'prefetch' else 'f32 out'}) on the amx path, "
          f"{args.threads} thread(s), GOP/s (median over rounds)")
    for m, k, n in SHAPES:
        calls = {name: shape_call(args.option, gemm, panels, m, k, n, args.threads, rng)
                 for name, (gemm, panels) in pair.items()}
        seconds: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(args.rounds):
            for name, (call, check) in calls.items():
                call()
                if not check():
                    raise AssertionError(f"{name} differs from the int64 product at {m}x{k}x{n}")
                seconds[name].append(time_runs(call, args.repeats, 3)[0] / 1e3)
        gops = {name: 2 * m * k * n / float(np.median(s)) / 1e9 for name, s in seconds.items()}
        first, second = gops
        print(f"{m}x{k}x{n}: " + "  ".join(f"{name} {g:.0f}" for name, g in gops.items())
              + f"  ratio {gops[second] / gops[first]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
