"""The fused region: one node whose `body` attribute is a small graph of equations, run as one kernel.

The body's inputs are bound, in order, to the node's inputs; the body holds no constants of its own
(every array it reads is a node input), and has exactly one output, which is the node's output.
Its first equation is the anchor (linear, matmul, conv2d) of a matrix region, followed by the
epilogue, or it is a chain of elementwise equations. See `ir/regions.py`.
"""

from __future__ import annotations

from typing import Any

from ..types import TensorType
from .registry import Attr, TypeInferenceError, dtype_error, register_op, shape_error


@register_op("fused", ("args*",), (Attr("body", "graph"),),
             doc="A fused region: runs its body (a graph of equations) on its inputs as one kernel.")
def _fused(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    body = a["body"]
    if len(body.outputs) != 1:
        raise TypeInferenceError("output-count", f"fused: body {body.name} must have one output, "
                                                 f"has {len(body.outputs)}")
    if len(ts) != len(body.inputs):
        raise TypeInferenceError("arity", f"fused: body {body.name} takes {len(body.inputs)} parameter(s) "
                                          f"but the node gives {len(ts)} input(s)")
    for i, (t, p) in enumerate(zip(ts, body.inputs)):
        if t.shape != p.type.shape:
            raise shape_error(f"fused: input {i} is {t} but body parameter %{p.name} "
                              f"is {p.type}")
        if t != p.type:
            raise dtype_error(f"fused: input {i} is {t} but body parameter %{p.name} "
                              f"is {p.type}")
    return [body.outputs[0].type]
