"""fold-constants: evaluate nodes whose inputs are all constants, at compile time."""

from __future__ import annotations

from ..ir.graph import Graph, Node, Value
from .base import Pass, PassContext, PassResult, register_pass


def widens_constant_storage(n: Node) -> bool:
    """True for a dequantize of a constant, or a cast of a constant to a wider float: the
    constant is stored narrow on purpose (by quantize), and folding would store it wide again."""
    if n.op == "dequantize":
        return True
    if n.op == "cast":
        src, dst = n.inputs[0].type.dtype, n.outputs[0].type.dtype
        return src.is_float and dst.is_float and dst.bits > src.bits
    return False


@register_pass
class FoldConstants(Pass):
    """Replaces each node with only constant inputs by a constant holding its result.

    Results larger than `max_bytes` that are also larger than the node's inputs (such as a
    broadcast that only expands data) are left unfolded, and the report says so. Nodes that
    widen low-precision constant storage (dequantize of a constant, cast of a constant to a
    wider float) are kept, so that folding never undoes weight quantization.
    """

    name = "fold-constants"
    max_bytes: int = 16 * 1024 * 1024

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        """Fold constant subgraphs with the reference semantics of each op."""
        from ..backends.reference import evaluate_node  # the golden numpy semantics

        folded, skipped, kept = 0, [], []
        for n in list(graph.nodes):
            if not n.inputs or not all(v.is_constant for v in n.inputs):
                continue
            if widens_constant_storage(n):
                kept.append(f"%{n.name}")
                continue
            out_bytes = sum(v.type.nbytes for v in n.outputs)
            in_bytes = sum(v.type.nbytes for v in n.inputs)
            if out_bytes > self.max_bytes and out_bytes > in_bytes:
                skipped.append(f"%{n.name} ({n.op}: {out_bytes} bytes > max_bytes)")
                continue
            results = evaluate_node(n, [v.data for v in n.inputs])  # type: ignore[misc]
            for old, arr in zip(n.outputs, results):
                const = Value(old.name, old.type, arr.copy())
                graph.replace_all_uses(old, const)
            folded += 1
        graph.remove_dead_nodes()
        report = f"folded {folded} node(s)"
        if skipped:
            report += f"; skipped {len(skipped)}: " + ", ".join(skipped[:5])
        if kept:
            report += (f"; kept {len(kept)} node(s) that widen low-precision constant storage "
                       "(dequantize, or cast to a wider float): " + ", ".join(kept[:5]))
        return PassResult(graph, folded > 0, report, {"folded": folded, "skipped": len(skipped), "kept": len(kept)})
