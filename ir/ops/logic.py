"""Comparisons, logical ops and `where`: bool tensors computed at run time (masks an exported model builds).

Comparisons take two operands of one dtype (numpy broadcasting) and give bool; NaN compares false to
everything (`equal(NaN, NaN)` is false), as IEEE and numpy. The logical ops take and give bool.
`where(condition, a, b)` picks a where the bool condition holds, else b, all three broadcast together.
"""

from __future__ import annotations

from typing import Any

from ..dtypes import boolean
from ..types import TensorType
from .elementwise import broadcast_shapes, same_dtype
from .registry import dtype_error, register_op

COMPARISONS = {"equal": "a == b", "less": "a < b", "less-equal": "a <= b", "greater": "a > b",
               "greater-equal": "a >= b"}
"""Comparison ops and what each computes."""
LOGICAL_BINARY = {"logical-and": "a and b", "logical-or": "a or b", "logical-xor": "a != b"}
"""Binary logical ops (bool operands) and what each computes."""


def _require_bool(op: str, types: list[TensorType]) -> None:
    bad = [t.dtype.name for t in types if t.dtype != boolean]
    if bad:
        raise dtype_error(f"{op}: operands must be bool, got {[t.dtype.name for t in types]}")


def _comparison(name: str, what: str) -> None:
    @register_op(name, ("a", "b"), doc=f"{what} elementwise with numpy broadcasting: bool (NaN compares false).",
                 elementwise=True)
    def infer(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
        same_dtype(name, ts)
        return [TensorType(broadcast_shapes(name, ts[0].shape, ts[1].shape), boolean)]


def _logical(name: str, what: str) -> None:
    @register_op(name, ("a", "b"), doc=f"{what} on bool tensors with numpy broadcasting.", elementwise=True)
    def infer(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
        _require_bool(name, ts)
        return [TensorType(broadcast_shapes(name, ts[0].shape, ts[1].shape), boolean)]


for _name, _what in COMPARISONS.items():
    _comparison(_name, _what)
for _name, _what in LOGICAL_BINARY.items():
    _logical(_name, _what)


@register_op("logical-not", ("x",), doc="not x on a bool tensor.", elementwise=True)
def _logical_not(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    _require_bool("logical-not", ts)
    return [ts[0]]


@register_op("where", ("condition", "a", "b"),
             doc="a where the bool condition holds, else b; all three broadcast together (numpy's where).",
             elementwise=True)
def _where(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    cond, x, y = ts
    _require_bool("where", [cond])
    same_dtype("where", [x, y])
    return [TensorType(broadcast_shapes("where", cond.shape, x.shape, y.shape), x.dtype)]
