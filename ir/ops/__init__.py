"""The op registry and every op's declaration (name, inputs, attributes, type rule)."""

# importing each module registers its ops
from . import attention, elementwise, exits, fused, integer, logic, nn, quant, shape_ops  # noqa: F401
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
