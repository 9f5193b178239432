"""The op registry and every op's declaration (name, inputs, attributes, type rule)."""

from . import attention, elementwise, exits, fused, integer, nn, quant, shape_ops  # noqa: F401  (registers the ops)
from .elementwise import broadcast_shapes
from .registry import (
    OPS,
    Attr,
    OpDef,
    TypeInferenceError,
    get_op,
    infer_types,
    register_op,
)

__all__ = [
    "OPS",
    "Attr",
    "OpDef",
    "TypeInferenceError",
    "broadcast_shapes",
    "get_op",
    "infer_types",
    "register_op",
]
