"""Which CPU kernel a pruned weight runs on (dense, block-sparse BSR, N:M), from stored measurements.

`bench calibrate` measures, on this host, the block density below which the Numba BSR kernel beats
the dense micro-kernel GEMM (`bench.sparse_gemm.measure_bsr_breakeven`) and stores it per block
shape in the cpu-host override's `[bsr_breakeven]` table ("32x32" = 0.41); `[nm_speedup]` holds the
N:M kernel's measured speed-up over dense ("2x4" = 1.2). Without a calibration the shipped figures
below apply. `choose_sparse_kernel` is the one decision both the Numba lowering (which runs the
kernel) and the cost model (which prices it) take: pure data and arithmetic, nothing runs here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ...ir.graph import Node, Value
from ...ir.types import SparsityInfo
from .loader import config_dir

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

TABLE = "bsr_breakeven"
"""Name of the TOML table in the cpu-host override that holds the measured break-even densities."""
INT8_TABLE = "bsr_int8_breakeven"
"""Name of the TOML table that holds the block-sparse int8 kernel's break-even densities against the dense int8
GEMM."""
NM_TABLE = "nm_speedup"
"""Name of the TOML table in the cpu-host override that holds the N:M kernel's measured speed-ups."""
SHIPPED_BREAKEVEN: dict[tuple[int, int], float] = {(8, 8): 0.5, (16, 16): 0.6, (32, 32): 0.75, (64, 64): 0.75}
"""Block densities below which BSR is taken over the dense micro-kernel GEMM, from the development machine (AMD
EPYC, AVX-512, 2 threads, quiet, FFN shapes 128x768x3072 and 128x3072x768: crossings 8x8 0.58-0.60, 16x16
0.67-0.85, 32x32 and 64x64 above 0.85, BSR 1.1-1.4x faster still at 0.85), read conservatively (docs/numba-backend.md).
`bench calibrate` replaces them with this host's figures."""
SHIPPED_INT8_BREAKEVEN: dict[tuple[int, int], float] = {(8, 8): 0.3, (16, 16): 0.5, (32, 32): 0.7, (64, 64): 0.6}
"""Block densities below which the block-sparse int8 kernel is taken over the dense int8 GEMM, from the same machine
(avx512vnni, 2 threads, `python -m tensorsmith.bench.sparse_int8_gemm`; crossings on the FFN shapes and 1024^3:
8x8 0.34-0.48, 16x16 0.56-0.62, 32x32 0.84 and above, 64x64 0.54-0.85), read conservatively. On an AMX host the
dense int8 GEMM runs on tiles and the crossings move lower: `bench calibrate` measures them."""
SHIPPED_NM_SPEEDUP: dict[tuple[int, int], float] = {(2, 4): 0.85, (4, 8): 1.0, (1, 4): 1.35}
"""Speed-up of the N:M kernel over the dense micro-kernel on the development machine (2 threads, FFN shapes:
2:4 0.69-1.02, 4:8 1.02-1.15, 1:4 1.38-1.40); 4:8 is read as no gain, so it stays dense."""
MAX_BLOCK = 64
"""Largest block side the BSR kernel takes."""
UNSTRUCTURED_BLOCKS = ((8, 8), (16, 16))
"""Blocks tried for an unstructured weight: BSR over them when its measured block density wins."""
DENSE, BSR, NM = "dense", "bsr", "nm"
"""Kernel kinds a choice names."""


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
    """The TOML key of a block shape (or an n:m pattern): '32x32'."""
    return f"{block[0]}x{block[1]}"


def _override_table(path: str | os.PathLike | None, table: str) -> dict[str, object]:
    """Table `table` of the cpu-host override (`path`, else the one in the config folder); empty without it."""
    p = Path(path) if path is not None else config_dir() / "cpu-host.toml"
    if not p.is_file():
        return {}
    with p.open("rb") as f:
        return dict(tomllib.load(f).get(table, {}))


def _override(path: str | os.PathLike | None, table: str) -> dict[tuple[int, int], float]:
    entries = _override_table(path, table)
    out = {}
    for key, value in entries.items():
        a, b = (int(s) for s in key.split("x"))
        out[(a, b)] = float(value)
    return out


def load_breakeven(path: str | os.PathLike | None = None, precision: str = "fp32") -> dict[tuple[int, int], float]:
    """Break-even densities by block of the `precision` (fp32 or int8) kernel: the shipped ones, overridden by the
    calibrated cpu-host override."""
    if precision == "int8":
        return SHIPPED_INT8_BREAKEVEN | _override(path, INT8_TABLE)
    return SHIPPED_BREAKEVEN | _override(path, TABLE)


def load_nm_speedups(path: str | os.PathLike | None = None) -> dict[tuple[int, int], float]:
    """N:M kernel speed-ups over dense by (n, m): the shipped ones, overridden by the cpu-host override."""
    return SHIPPED_NM_SPEEDUP | _override(path, NM_TABLE)


def breakeven_for(block: tuple[int, int], table: Mapping[tuple[int, int], float] | None = None) -> float:
    """The break-even density of `block`: its own figure, else that of the stored block of nearest area."""
    t = load_breakeven() if table is None else table
    if tuple(block) in t:
        return t[tuple(block)]
    area = block[0] * block[1]
    nearest = min(t, key=lambda b: (abs(b[0] * b[1] - area), b[0] * b[1]))
    return t[nearest]


def predict_bsr_speedup(block: tuple[int, int], density: float,
                        table: Mapping[tuple[int, int], float] | None = None) -> float:
    """Predicted dense time / BSR time: break-even / density (BSR time taken as proportional to density)."""
    return breakeven_for(block, table) / max(density, 1e-6)


def bsr_beats_dense(block: tuple[int, int], density: float,
                    table: Mapping[tuple[int, int], float] | None = None) -> bool:
    """Whether a weight of this block shape and block density should run on the BSR kernel."""
    return density < breakeven_for(block, table)


@dataclass(frozen=True)
class KernelChoice:
    """The kernel a weight runs on, why, and the predicted speed-up over the dense GEMM.

    `density` is the fraction of the dense work the kernel keeps (block density for BSR, n/m for N:M).
    """

    kernel: str
    reason: str
    block: tuple[int, int] | None = None
    nm: tuple[int, int] | None = None
    density: float = 1.0
    speedup: float = 1.0
    precision: str = "fp32"

    @property
    def label(self) -> str:
        """'bsr 32x32', 'nm 2:4' or 'dense'."""
        if self.kernel == BSR and self.block is not None:
            return f"bsr {block_key(self.block)}" + (" int8" if self.precision == "int8" else "")
        if self.kernel == NM and self.nm is not None:
            return f"nm {self.nm[0]}:{self.nm[1]}"
        return DENSE


QUANTIZED_PRODUCTS = frozenset({"qlinear", "qmatmul", "qconv2d"})
"""Integer products: their weight is input 3 and their sparse kernel is the block-sparse int8 one."""


def product_weight(node: Node) -> Value:
    """The weight operand of a product: input 3 of qlinear / qmatmul / qconv2d, else input 1."""
    return node.inputs[3] if node.op in QUANTIZED_PRODUCTS else node.inputs[1]


def kernel_precision(node: Node) -> str:
    """The precision of `node`'s sparse kernels: int8 for the integer products, else fp32."""
    return "int8" if node.op in QUANTIZED_PRODUCTS else "fp32"


def weight_k(node: Node) -> int:
    """Reduction length K of the GEMM view of `node`'s weight (linear [N, K], conv [O, I*kh*kw], matmul B [K, N])."""
    shape = product_weight(node).type.shape
    if node.op in ("matmul", "qmatmul"):
        return shape[-2] if len(shape) >= 2 else shape[0]
    return math.prod(shape[1:])


def sparse_blocker(node: Node) -> str | None:
    """Why `node` (linear, matmul, conv2d or their integer forms) cannot run on a sparse kernel whatever its weight's
    density, or None."""
    w = product_weight(node)
    info = w.type.sparsity
    if info is None or info.pattern == "dense":
        return None
    if node.op in QUANTIZED_PRODUCTS:
        if info.pattern == "nm":
            return "the N:M kernel is fp32; int8 weights have the block-sparse kernel only"
    elif w.type.dtype.name != "f32" or node.outputs[0].type.dtype.name != "f32":
        return f"the sparse kernels are fp32, the weight is {w.type.dtype.name}"
    elif w.type.quant is not None:
        return "the weight is quantized"
    if node.op in ("matmul", "qmatmul") and (w.type.rank != 2 or node.inputs[0].type.rank < 2):
        return "only a 2-D constant B of a matmul has a sparse kernel"
    if node.op in ("conv2d", "qconv2d") and int(node.attrs.get("groups", 1)) != 1:
        return f"conv2d with groups={node.attrs.get('groups')} has no single GEMM view"
    if info.pattern == "nm" and info.m and weight_k(node) % info.m:
        return f"K={weight_k(node)} is not a multiple of m={info.m}"
    return None


def _block_choice(block: tuple[int, int], density: float, table: Mapping[tuple[int, int], float],
                  what: str = "density", precision: str = "fp32") -> KernelChoice:
    be = breakeven_for(block, table)
    name = f"bsr {block_key(block)}" + (" int8" if precision == "int8" else "")
    if density < be:
        return KernelChoice(BSR, f"{name}: {what} {density:.2f} below break-even {be:.2f}", tuple(block),
                            density=density, speedup=be / max(density, 1e-6), precision=precision)
    return KernelChoice(DENSE, f"dense: {what} {density:.2f} above break-even {be:.2f} ({name})")


def choose_sparse_kernel(info: SparsityInfo | None, block_density: Callable[[tuple[int, int]], float] | None = None,
                         blocked: str | None = None, table: Mapping[tuple[int, int], float] | None = None,
                         nm_table: Mapping[tuple[int, int], float] | None = None,
                         precision: str = "fp32") -> KernelChoice:
    """The kernel a weight annotated `info` runs on, and why.

    `block_density(block)` gives the weight's fraction of nonzero blocks of that shape: measured on
    the data by the lowering, estimated from `info` by the cost model; without it the annotation's
    density is used (block patterns only). `blocked` is a reason the layer cannot use a sparse kernel.
    Block sparsity runs on BSR when its block density is below the block's break-even; N:M on its
    kernel when the measured speed-up is above 1; unstructured on BSR over the candidate block (of
    UNSTRUCTURED_BLOCKS) that wins most, if any does; anything else dense. `precision` "int8" takes the
    block-sparse int8 kernel's break-evens (against the dense int8 GEMM) and has no N:M kernel.
    """
    if info is None or info.pattern == "dense":
        return KernelChoice(DENSE, "dense: no sparsity annotation")
    if blocked:
        return KernelChoice(DENSE, f"dense: {blocked}")
    be_table = load_breakeven(precision=precision) if table is None else table
    if info.pattern == "block" and info.block is not None:
        block = (int(info.block[0]), int(info.block[1]))
        if max(block) > MAX_BLOCK:
            return KernelChoice(DENSE, f"dense: block {block_key(block)} has a side above the BSR kernel's "
                                       f"{MAX_BLOCK}")
        return _block_choice(block, block_density(block) if block_density else info.density, be_table,
                             precision=precision)
    if info.pattern == "nm" and precision == "int8":
        return KernelChoice(DENSE, "dense: the N:M kernel is fp32; int8 weights have the block-sparse kernel only")
    if info.pattern == "nm" and info.n and info.m:
        speeds = load_nm_speedups() if nm_table is None else nm_table
        sp = speeds.get((info.n, info.m))
        if sp is None:
            return KernelChoice(DENSE, f"dense: no measured speed-up for the {info.n}:{info.m} kernel")
        if sp > 1.0:
            return KernelChoice(NM, f"nm {info.n}:{info.m}: measured {sp:.2f}x over dense", nm=(info.n, info.m),
                                density=info.n / info.m, speedup=sp)
        return KernelChoice(DENSE, f"dense: the {info.n}:{info.m} kernel measured {sp:.2f}x of dense")
    if info.pattern == "unstructured":
        if block_density is None:
            return KernelChoice(DENSE, "dense: unstructured, no block density known")
        options = [_block_choice(b, block_density(b), be_table, "unstructured, block density", precision)
                   for b in UNSTRUCTURED_BLOCKS]
        wins = [c for c in options if c.kernel == BSR]
        return max(wins, key=lambda c: c.speedup) if wins else options[0]
    return KernelChoice(DENSE, f"dense: {info.pattern} sparsity has no sparse kernel")


COPY_TABLE = "sparse_copies"
"""Name of the TOML table in the cpu-host override that holds what the sparse paths' copies of the activations cost
(SHIPPED_COPY_FLOPS's keys: operations of the dense product per value copied)."""
SHIPPED_COPY_FLOPS = {"pack_value": 210.0, "patch_value": 225.0, "output_value": 124.0, "int8_patch_value": 240.0}
"""What the sparse paths copy that the dense kernels do not, per value, in operations of the dense product they
replace. `pack_value`: the BSR and N:M kernels pack their activations into panels per row block (the dense GEMM
reads narrow tiles in place); `patch_value`, `output_value`: a sparse convolution also builds its im2col patches and
copies its result from pixels x channels back to NCHW (the direct convolution reads its input in place). Measured on
the 2-core AMX host, 2026-12-05, 2 threads, 32x32 blocks at density 0.5: a 256x1024 by 1024x64 product took
285-318 us on BSR against 127-137 us dense (its packing about 210 us for 262,144 values, 0.8 ns each, where the
dense GEMM spends 3.9 ps a flop); the zoo cnn's last layer (4 x 32 x 8 x 8 -> 64 channels, 3x3) builds 73,728
patch values in 68 us (0.92 ns each) and copies 16,384 outputs in 8.3 us, where its direct convolution does 9.4
MFLOP in 38.5 us (4.1 ps each). The block-sparse int8 kernel reads its activations in place, but a block-sparse
qconv2d builds its u8 patches in the pruned blocks' K order (channel-major), where the dense int8 convolution copies
whole runs of its channels-last input: `int8_patch_value` is the difference, in int8 operations of the dense
product (that layer: 51.4 against 5.2 us for the patches, its AMX product 24.7 us for 9.4 M operations)."""


def load_copy_flops(path: str | os.PathLike | None = None) -> dict[str, float]:
    """SHIPPED_COPY_FLOPS overridden by the cpu-host override's COPY_TABLE."""
    entries = _override_table(path, COPY_TABLE)
    return {k: float(entries.get(k, v)) for k, v in SHIPPED_COPY_FLOPS.items()}  # type: ignore[arg-type]


def output_channels(node: Node) -> int:
    """N of the GEMM view of `node`'s weight: linear [N, K] and conv [O, ...] rows, matmul B [K, N] columns."""
    shape = product_weight(node).type.shape
    if node.op in ("matmul", "qmatmul"):
        return int(shape[-1])
    return int(shape[0]) if shape else 1


def copy_overhead(node: Node, flops: Mapping[str, float] | None = None) -> float:
    """What the sparse path of `node` copies beyond its dense kernel, as a fraction of the dense product's time:
    `pack_value` flops per activation value packed (each feeds 2 N flops), for a conv2d also `patch_value` per
    im2col value (2 O flops each) and `output_value` per output value (2 K flops each); for a qconv2d
    `int8_patch_value` per patch value; nothing for qlinear / qmatmul (load_copy_flops)."""
    cost = load_copy_flops() if flops is None else flops
    n = max(1, output_channels(node))
    if node.op == "qconv2d":
        return cost["int8_patch_value"] / (2 * n)
    if node.op in QUANTIZED_PRODUCTS:
        return 0.0
    overhead = cost["pack_value"] / (2 * n)
    if node.op == "conv2d":
        _, cg, kh, kw = node.inputs[1].type.shape
        kdim = max(1, cg * kh * kw)
        overhead += cost["patch_value"] / (2 * n) + cost["output_value"] / (2 * kdim)
    return overhead


def with_copies(node: Node, choice: KernelChoice, flops: Mapping[str, float] | None = None) -> KernelChoice:
    """`choice` for `node` once the sparse kernels' copies of the activations are counted (`copy_overhead`): its
    predicted speed-up over the dense kernel, or dense where they cost more than the sparse product saves."""
    if choice.kernel == DENSE:
        return choice
    overhead = copy_overhead(node, flops)
    if overhead <= 0.0:
        return choice
    ratio = 1.0 / max(choice.speedup, 1e-6) + overhead
    what = {"conv2d": "im2col, packing and transpose copies", "qconv2d": "channel-major patches"}.get(
        node.op, "packing of the activations")
    if ratio >= 1.0:
        return KernelChoice(DENSE, f"dense: {choice.label} with its {what} ({overhead:.2f} of the dense kernel's time) "
                                   f"predicted {1.0 / ratio:.2f}x of it")
    return KernelChoice(choice.kernel, f"{choice.reason}; with its {what} {1.0 / ratio:.2f}x", choice.block,
                        choice.nm, choice.density, 1.0 / ratio, choice.precision)
