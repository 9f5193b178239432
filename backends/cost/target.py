"""Hardware targets as frozen data: throughput per precision, memories, sparsity, energy, overheads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from .energy import DEFAULT_MAC_PJ, DEFAULT_OP_PJ

PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4")
"""Precisions a matrix unit may have a peak for."""

TARGET_KINDS = ("gpu", "tpu", "npu", "fpga", "cpu")

# When a target has no peak for a precision, the node runs at the first supported one here
# (never at a narrower or lossier format: fp16 does not fall to bf16, nor the reverse).
PRECISION_LADDER: dict[str, tuple[str, ...]] = {
    "int4": ("int4", "int8", "fp16", "bf16", "fp32"),
    "int8": ("int8", "fp16", "bf16", "fp32"),
    "fp8": ("fp8", "fp16", "bf16", "fp32"),
    "fp16": ("fp16", "fp32"),
    "bf16": ("bf16", "fp32"),
    "tf32": ("tf32", "fp32"),
    "fp32": ("fp32",),
    "int32": ("int32", "fp32"),  # wide-integer GEMMs run on the float or vector units
    "int64": ("int64", "fp32"),
}


def frozen_map(d: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only copy of `d`."""
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class MemoryLevel:
    """One level of the memory hierarchy: capacity, bandwidth and energy per byte."""

    name: str
    capacity_bytes: int
    bandwidth: float  # bytes per second
    energy_pj_per_byte: float
    on_chip: bool = True
    per_unit: bool = False  # capacity belongs to each parallel unit (bandwidth is always the chip total)
    persistent: bool = True  # data stays between kernels (caches, TPU VMEM); False for GPU shared memory

    def total_capacity(self, units: int) -> int:
        """Bytes the whole chip holds at this level."""
        return self.capacity_bytes * (units if self.per_unit else 1)


@dataclass(frozen=True)
class SparsitySupport:
    """A sparsity pattern the hardware (or its standard kernels) exploits, and how much."""

    pattern: str  # "nm" | "block" | "unstructured" | "channel"
    speedup: float  # most the compute rate gains
    n: int | None = None
    m: int | None = None
    block: tuple[int, int] | None = None
    precisions: tuple[str, ...] = ()  # empty: every precision
    efficiency: float = 1.0  # fraction of the ideal skipping actually achieved
    metadata_bits: float = 0.0  # index bits per kept value (nm, unstructured) or per kept block
    note: str = ""

    def applies_to(self, precision: str) -> bool:
        """True when the pattern is accelerated at `precision`."""
        return not self.precisions or precision in self.precisions

    def describe(self) -> str:
        """Short name: `2:4`, `block 32x32`, `unstructured`."""
        if self.pattern == "nm":
            return f"{self.n}:{self.m}"
        if self.pattern == "block" and self.block:
            return f"block {self.block[0]}x{self.block[1]}"
        return self.pattern


@dataclass(frozen=True)
class MatrixUnit:
    """The matrix engine: a tiled engine (GPU tensor cores, CPU SIMD) or systolic arrays."""

    kind: str  # "tiled" | "systolic"
    tile: tuple[int, int, int] = (1, 1, 1)  # (m, n, k) granularity of the work; padding waste below it
    rows: int = 0
    cols: int = 0
    dataflow: str = "ws"  # systolic: "ws" weight-, "os" output-, "is" input-stationary
    count: int = 1  # arrays (systolic) or units the tiles are spread over (tiled)


@dataclass(frozen=True)
class Fallback:
    """Where ops run that the accelerator cannot (e.g. float ops next to an int8-only NPU)."""

    name: str
    peak: float  # ops per second
    bandwidth: float  # bytes per second of the fallback's own memory
    link_bandwidth: float  # bytes per second between accelerator and fallback
    energy_pj_per_op: float = 0.9


@dataclass(frozen=True)
class Target:
    """A hardware target loaded from a TOML file; every figure is in SI units (ops/s, bytes/s, s, J)."""

    name: str
    kind: str
    description: str
    clock_hz: float
    units: int
    peak: Mapping[str, float] = field(hash=False)  # matrix-unit ops/s by precision, dense
    vector: Mapping[str, float] = field(hash=False)  # vector-unit ops/s by precision
    matrix: MatrixUnit
    memory: tuple[MemoryLevel, ...]
    sparsity: tuple[SparsitySupport, ...] = ()
    mac_pj: Mapping[str, float] = field(default_factory=lambda: frozen_map(DEFAULT_MAC_PJ), hash=False)
    op_pj: Mapping[str, float] = field(default_factory=lambda: frozen_map(DEFAULT_OP_PJ), hash=False)
    efficiency: Mapping[str, float] = field(default_factory=lambda: frozen_map({}), hash=False)
    op_weights: Mapping[str, float] = field(default_factory=lambda: frozen_map({}), hash=False)
    launch_overhead_s: float = 0.0
    parallel_units: int = 1  # independent queues a schedule issues nodes on: GPU streams, TPU cores, NPU engines
    tdp_w: float = 0.0
    static_w: float = 0.0
    skips_zeros: bool = False
    sparse_kernels: str = ""  # "measured": a pruned weight runs on the kernel sparse_kernels.py picks
    arbitrary_bits: bool = False
    weights_resident: bool = False  # weights stay in on-chip memory between runs when they fit
    fallback: Fallback | None = None
    source: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise ValueError(f"target {self.name}: kind {self.kind!r} is not one of {TARGET_KINDS}")
        if not self.memory:
            raise ValueError(f"target {self.name}: needs at least one memory level")
        bad = [p for p in self.peak if p not in PRECISIONS]
        if bad:
            raise ValueError(f"target {self.name}: unknown precision(s) {bad}; known: {PRECISIONS}")
        if not self.peak:
            raise ValueError(f"target {self.name}: needs a peak for at least one precision")
        if self.parallel_units < 1:
            raise ValueError(f"target {self.name}: parallel_units must be at least 1, got {self.parallel_units}")

    # ---- precisions --------------------------------------------------------------------------
    def supports(self, precision: str) -> bool:
        """True when the matrix unit has a peak for `precision`."""
        return precision in self.peak

    def compute_precision(self, precision: str) -> str | None:
        """The precision a node of `precision` runs at here (None: only the fallback can run it)."""
        for p in PRECISION_LADDER.get(precision, (precision,)):
            if p in self.peak:
                return p
        return None

    def peak_ops(self, precision: str) -> float:
        """Dense matrix-unit ops/s at `precision` (KeyError when unsupported)."""
        try:
            return self.peak[precision]
        except KeyError:
            raise KeyError(f"target {self.name} has no {precision} peak; it has {list(self.peak)}") from None

    def vector_ops(self, precision: str) -> float:
        """Vector-unit ops/s at `precision` (the fp32 figure, or the lowest, when not listed)."""
        if precision in self.vector:
            return self.vector[precision]
        if "fp32" in self.vector:
            return self.vector["fp32"]
        return min(self.vector.values()) if self.vector else min(self.peak.values())

    def eff(self, what: str) -> float:
        """Fraction of peak reached by well-tuned kernels for `what` (matrix, vector, memory)."""
        return float(self.efficiency.get(what, 1.0))

    def op_weight(self, op: str) -> float:
        """Multiplier on COST_RULES' vector-op count for `op` here (e.g. how dear exp is on this hardware)."""
        return float(self.op_weights.get(op, 1.0))

    def mac_energy_pj(self, precision: str) -> float:
        """pJ per multiply-accumulate at `precision`."""
        return float(self.mac_pj.get(precision, DEFAULT_MAC_PJ.get(precision, DEFAULT_MAC_PJ["fp32"])))

    def op_energy_pj(self, precision: str) -> float:
        """pJ per vector operation at `precision`."""
        return float(self.op_pj.get(precision, DEFAULT_OP_PJ.get(precision, DEFAULT_OP_PJ["fp32"])))

    # ---- memory --------------------------------------------------------------------------
    @property
    def dram(self) -> MemoryLevel:
        """The outermost memory level (off-chip)."""
        return self.memory[-1]

    @property
    def on_chip(self) -> tuple[MemoryLevel, ...]:
        """The on-chip levels, innermost first."""
        return tuple(m for m in self.memory if m.on_chip)

    # ---- misc ----------------------------------------------------------------------------
    def replace(self, **changes: Any) -> Target:
        """A copy with some fields changed (mappings are frozen again)."""
        for k in ("peak", "vector", "mac_pj", "op_pj", "efficiency", "op_weights"):
            if k in changes:
                changes[k] = frozen_map(changes[k])
        return replace(self, **changes)

    def summary(self) -> str:
        """A few lines describing the target."""
        peaks = ", ".join(f"{p} {v / 1e12:g}" for p, v in self.peak.items())
        mems = ", ".join(f"{m.name} {m.capacity_bytes / 2**20:g} MiB @ {m.bandwidth / 1e9:g} GB/s"
                         for m in self.memory)
        sp = ", ".join(s.describe() for s in self.sparsity) or "none"
        return (f"{self.name} ({self.kind}): {self.description}\n  peak TOPS: {peaks}\n"
                f"  memory: {mems}\n  sparsity: {sp}\n  launch overhead {self.launch_overhead_s * 1e6:g} us, "
                f"TDP {self.tdp_w:g} W")
