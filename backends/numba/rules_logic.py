"""Lowering of the comparisons, logical ops and `where` (ir/ops/logic.py): each a one-equation elementwise region.

The generated region kernels (region_codegen.LOGIC_RULES) read every operand in place through its broadcast
strides and write the bool (or, for where, the selected) result; the same rules serve these ops inside fused
elementwise chains.
"""

from __future__ import annotations

from ...ir.graph import Node
from ...ir.ops.logic import COMPARISONS, LOGICAL_BINARY
from ...ir.regions import single_node_region
from .plan import LowerCtx
from .registry import lowers
from .rules_region_elementwise import lower_elementwise_region


@lowers(*COMPARISONS, *LOGICAL_BINARY, "logical-not", "where")
def lower_logic(ctx: LowerCtx, node: Node) -> None:
    """One generated kernel for the node; a dtype no region kernel computes with is refused by name."""
    if not lower_elementwise_region(ctx, single_node_region(node)):
        types = ", ".join(f"%{v.name}: {v.type.dtype.name}" for v in node.inputs)
        raise ctx.fail(f"{node.op} on {types} has no kernel")
