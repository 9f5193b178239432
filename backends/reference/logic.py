"""Reference rules of the comparisons, logical ops and `where` (ir/ops/logic.py): numpy's."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...ir.graph import Node

Arrays = list[np.ndarray]


def _elementwise(fn: Callable[..., np.ndarray]) -> Callable[[Node, Arrays], np.ndarray]:
    return lambda node, xs: np.asarray(fn(*xs))


LOGIC_RULES = {
    "equal": _elementwise(np.equal),
    "less": _elementwise(np.less),
    "less-equal": _elementwise(np.less_equal),
    "greater": _elementwise(np.greater),
    "greater-equal": _elementwise(np.greater_equal),
    "logical-and": _elementwise(np.logical_and),
    "logical-or": _elementwise(np.logical_or),
    "logical-xor": _elementwise(np.logical_xor),
    "logical-not": _elementwise(np.logical_not),
    "where": _elementwise(np.where),
}
