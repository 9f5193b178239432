"""Element types of the IR and their numpy storage types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import ml_dtypes
import numpy as np

if TYPE_CHECKING:
    from .types import TensorType


@dataclass(frozen=True)
class DType:
    """An element type: its IR name, numpy storage dtype and bit width."""

    name: str
    np_dtype: np.dtype
    bits: int
    is_float: bool
    is_signed: bool

    def __getitem__(self, shape: int | tuple[int, ...]) -> TensorType:
        """`f32[1, 64]` builds the tensor type of that shape."""
        from .types import TensorType

        if not isinstance(shape, tuple):
            shape = (shape,)
        return TensorType(tuple(int(d) for d in shape), self)

    def __repr__(self) -> str:
        return self.name

    __str__ = __repr__

    @property
    def itemsize_bits(self) -> int:
        """Bits one element occupies in memory when packed."""
        return self.bits


f64 = DType("f64", np.dtype(np.float64), 64, True, True)
f32 = DType("f32", np.dtype(np.float32), 32, True, True)
f16 = DType("f16", np.dtype(np.float16), 16, True, True)
bf16 = DType("bf16", np.dtype(ml_dtypes.bfloat16), 16, True, True)
i64 = DType("i64", np.dtype(np.int64), 64, False, True)
i32 = DType("i32", np.dtype(np.int32), 32, False, True)
i8 = DType("i8", np.dtype(np.int8), 8, False, True)
u8 = DType("u8", np.dtype(np.uint8), 8, False, False)
i4 = DType("i4", np.dtype(ml_dtypes.int4), 4, False, True)
boolean = DType("bool", np.dtype(np.bool_), 8, False, False)

DTYPES: dict[str, DType] = {d.name: d for d in (f64, f32, f16, bf16, i64, i32, i8, u8, i4, boolean)}
_BY_NUMPY: dict[np.dtype, DType] = {d.np_dtype: d for d in DTYPES.values()}


def dtype_from_name(name: str) -> DType:
    """The DType called `name` (e.g. "f32"); raises ValueError listing the known names."""
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)}") from None


def dtype_from_numpy(dt: np.dtype | type) -> DType:
    """The DType stored as numpy dtype `dt` (float64 is f64 here; GraphBuilder.const narrows it to f32)."""
    dt = np.dtype(dt)
    if dt in _BY_NUMPY:
        return _BY_NUMPY[dt]
    raise ValueError(f"numpy dtype {dt} has no IR dtype; known: {', '.join(DTYPES)}")
