"""Element types of the IR and their numpy storage types."""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .types import TensorType


@dataclass(frozen=True)
class DType:
    """An element type: its IR name, numpy storage dtype (named by `storage`) and bit width."""

    name: str
    storage: str
    bits: int
    is_float: bool
    is_signed: bool

    @property
    def np_dtype(self) -> np.dtype:
        """The numpy dtype that stores this type's elements."""
        return storage_dtype(self.storage)

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


f64 = DType("f64", "float64", 64, True, True)
f32 = DType("f32", "float32", 32, True, True)
f16 = DType("f16", "float16", 16, True, True)
bf16 = DType("bf16", "ml_dtypes.bfloat16", 16, True, True)
i64 = DType("i64", "int64", 64, False, True)
i32 = DType("i32", "int32", 32, False, True)
i8 = DType("i8", "int8", 8, False, True)
u8 = DType("u8", "uint8", 8, False, False)
i4 = DType("i4", "ml_dtypes.int4", 4, False, True)
boolean = DType("bool", "bool", 8, False, False)

DTYPES: dict[str, DType] = {d.name: d for d in (f64, f32, f16, bf16, i64, i32, i8, u8, i4, boolean)}
_BY_STORAGE_NAME: dict[str, DType] = {d.storage.rpartition(".")[2]: d for d in DTYPES.values()}


@functools.cache
def storage_dtype(storage: str) -> np.dtype:
    """The numpy dtype named `storage`: a numpy name, or `ml_dtypes.<name>` for bfloat16 and int4.

    ml_dtypes is imported on the first use of one of its types, not with tensorsmith: its import registers
    casts between all its types and takes over a second, in every process (peers, workers) that imports the IR.
    """
    module, _, name = storage.rpartition(".")
    return np.dtype(getattr(importlib.import_module(module), name) if module else name)


def dtype_from_name(name: str) -> DType:
    """The DType called `name` (e.g. "f32"); raises ValueError listing the known names."""
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)}") from None


def dtype_from_numpy(dt: np.dtype | type) -> DType:
    """The DType stored as numpy dtype `dt` (float64 is f64 here; GraphBuilder.const narrows it to f32)."""
    dt = np.dtype(dt)
    found = _BY_STORAGE_NAME.get(dt.name)
    if found is not None and found.np_dtype == dt:  # ml_dtypes is loaded already where dt is one of its types
        return found
    raise ValueError(f"numpy dtype {dt} has no IR dtype; known: {', '.join(DTYPES)}")
