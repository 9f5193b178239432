"""Tensor types: shape, element type, and optional quantization and sparsity descriptions."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .dtypes import DType

SPARSITY_PATTERNS = ("dense", "unstructured", "block", "nm", "channel")


@dataclass(frozen=True)
class QuantInfo:
    """How integer values map to reals: real = scale * (q - zero_point).

    `axis` is None for per-tensor quantization, else the channel axis that
    `scale`/`zero_point` run along; `group_size` splits that axis into groups.
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    bits: int = 8
    axis: int | None = None
    group_size: int | None = None

    def __post_init__(self) -> None:
        if len(self.scale) != len(self.zero_point):
            raise ValueError(
                f"quant: {len(self.scale)} scales but {len(self.zero_point)} zero points"
            )
        if self.axis is None and len(self.scale) != 1:
            raise ValueError("quant: per-tensor quantization needs exactly one scale")
        if any(not s > 0 for s in self.scale):
            raise ValueError("quant: scales must be positive")

    @property
    def per_axis(self) -> bool:
        """True when scales vary along `axis`."""
        return self.axis is not None


@dataclass(frozen=True)
class SparsityInfo:
    """Which zeros a tensor is known to have: pattern, shape parameters, and density.

    `padded`: the blocks (or groups of m) tile the weight's GEMM view padded with zeros to the
    next multiple of the block (of m); the edge units are partial, the array keeps its shape.
    """

    pattern: str
    density: float
    block: tuple[int, int] | None = None
    n: int | None = None
    m: int | None = None
    padded: bool = False

    def __post_init__(self) -> None:
        if self.pattern not in SPARSITY_PATTERNS:
            raise ValueError(
                f"sparsity: unknown pattern {self.pattern!r}; known: {', '.join(SPARSITY_PATTERNS)}"
            )
        if not 0.0 <= self.density <= 1.0:
            raise ValueError(f"sparsity: density {self.density} is not in [0, 1]")
        if self.pattern == "block" and (self.block is None or len(self.block) != 2):
            raise ValueError("sparsity: pattern 'block' needs block=(bh, bw)")
        if self.pattern == "nm" and (self.n is None or self.m is None or not 0 < self.n <= self.m):
            raise ValueError("sparsity: pattern 'nm' needs 0 < n <= m")

    def check(self, array: np.ndarray, op: str | None = None) -> str | None:
        """Why `array` breaks this annotation (read as `op`'s weight; see ir/sparsity.py), or None."""
        from .sparsity import sparsity_violation

        return sparsity_violation(self, array, op)


@dataclass(frozen=True)
class TensorType:
    """The static type of a value: shape, dtype, and what passes learned about it."""

    shape: tuple[int, ...]
    dtype: DType
    quant: QuantInfo | None = None
    sparsity: SparsityInfo | None = None

    def __post_init__(self) -> None:
        if any((not isinstance(d, (int, np.integer))) or d < 0 for d in self.shape):
            raise ValueError(f"shape {self.shape} must hold non-negative integers")

    @property
    def rank(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def numel(self) -> int:
        """Number of elements (exact: no int64 wrap-around for huge shapes)."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes when stored densely and packed (i4 takes half a byte)."""
        return (self.numel * self.dtype.bits + 7) // 8

    def with_shape(self, shape: tuple[int, ...]) -> TensorType:
        """The same type with another shape (quant and sparsity dropped)."""
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype: DType) -> TensorType:
        """The same shape with another dtype (quant and sparsity dropped)."""
        return TensorType(self.shape, dtype)

    def replace(self, **changes: object) -> TensorType:
        """A copy with the given fields changed."""
        return replace(self, **changes)

    def __str__(self) -> str:
        from .text import format_type

        return format_type(self)
