"""Ops lowered as one-equation elementwise regions: one generated kernel each (region_codegen's rules).

The comparisons, logical ops and `where` (ir/ops/logic.py, region_codegen.LOGIC_RULES), the rounding, sign
and trigonometric maps (floor, ceil, round, sign, the circular and hyperbolic functions and their inverses) and
the remainder (mod). A generated kernel reads
every operand in place through its broadcast strides; the same rules serve these ops inside fused elementwise
chains.
"""

from __future__ import annotations

from ...ir.graph import Node
from ...ir.ops.logic import COMPARISONS, LOGICAL_BINARY
from ...ir.regions import single_node_region
from .plan import LowerCtx
from .region_codegen import TRIGONOMETRIC
from .registry import lowers
from .rules_region_elementwise import lower_elementwise_region

GENERATED_MAPS = ("floor", "ceil", "round", "sign", *TRIGONOMETRIC, "mod")
"""Elementwise maps with no hand-written kernel: they run on generated region kernels."""


@lowers(*COMPARISONS, *LOGICAL_BINARY, "logical-not", "where", *GENERATED_MAPS)
def lower_generated(ctx: LowerCtx, node: Node) -> None:
    """One generated kernel for the node; a dtype no region kernel computes with is refused by name."""
    if not lower_elementwise_region(ctx, single_node_region(node)):
        types = ", ".join(f"%{v.name}: {v.type.dtype.name}" for v in node.inputs)
        raise ctx.fail(f"{node.op} on {types} has no kernel")
