"""fuse: fusion decided once, in the IR: products with their epilogue, and elementwise chains, become regions.

Three steps, each driven by rules as data:
1. recognition: `FUSION_PATTERNS` (decomposed LayerNorm, GELU, attention as exported from PyTorch and
   TensorFlow, plus any pattern a user registers) rewrite subgraphs into the ops with a faster kernel;
2. epilogues: from each linear / matmul / conv2d, the chain of single-user equations that one of
   `EPILOGUE_RULES` accepts joins it in a `fused` region (applied per output tile by the kernel);
3. elementwise chains: connected elementwise equations whose intermediate values have one reader
   become one region, compiled into one loop.
Reference semantics are unchanged (the body runs the same equations), so the pass is exact.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import groupby

from ..ir.graph import Graph, Node
from ..ir.ops import OPS
from ..ir.regions import INTEGER_MATRIX_OPS, MATRIX_OPS, make_region
from . import fuse_attention  # noqa: F401  (registers the attention pattern)
from .base import Pass, PassContext, PassResult, register_pass
from .fuse_epilogue import EPILOGUE_RULES, TAIL_RULES, Candidate, EpilogueRule
from .fuse_layout import LAYOUT_CLEANUP
from .fuse_patterns import FUSION_PATTERNS
from .rewrite import apply_rules, format_hits


@dataclass
class Chain:
    """A matrix anchor and the epilogue equations it absorbed (with the rule that took each)."""

    anchor: Node
    nodes: list[Node]
    rules: list[str]

    @property
    def label(self) -> str:
        """e.g. 'linear+bias+gelu' (a run of one rule is written once with its count: 'affine*3')."""
        parts = [self.anchor.op]
        for rule, run in groupby(self.rules):
            n = len(list(run))
            parts.append(rule if n == 1 else f"{rule}*{n}")
        return "+".join(parts)


def _anchor_ok(node: Node) -> bool:
    """A product whose f32 result can take an epilogue: f32 throughout, or an integer product dequantizing
    to f32 (its integer operands are read by the kernel, its bias is f32)."""
    if node.op not in MATRIX_OPS or len(node.outputs) != 1 or node.outputs[0].type.rank == 0:
        return False
    if node.op in INTEGER_MATRIX_OPS:
        return node.outputs[0].type.dtype.name == "f32"
    return all(v.type.dtype.name == "f32" for v in [*node.inputs, *node.outputs])


def _rule_for(cand: Candidate, rules: tuple[EpilogueRule, ...]) -> tuple[EpilogueRule | None, str]:
    """The first rule that accepts the candidate, or (None, the most specific reason none did)."""
    reason = f"{cand.node.op} is not an epilogue op"
    for rule in rules:
        if cand.node.op not in rule.ops:
            continue
        why = rule.check(cand)
        if why is None:
            return rule, ""
        reason = why
    return None, reason


def _grow(anchor: Node, users: dict[int, list[Node]], outputs: set[int], taken: set[int],
          misses: list[str], rules: tuple[EpilogueRule, ...]) -> Chain:
    """The longest epilogue chain from `anchor`, recording why it stopped when an epilogue op was next."""
    chain = Chain(anchor, [anchor], [])
    cur = anchor.outputs[0]
    while True:
        readers = users.get(id(cur), [])
        epilogue_ops = {op for r in rules for op in r.ops}
        near = [u for u in readers if u.op in epilogue_ops and id(u) not in taken]
        if not readers:
            break
        if id(cur) in outputs or len(readers) != 1:
            if near:
                why = "is a graph output" if id(cur) in outputs else f"has {len(readers)} readers"
                misses.append(f"{near[0].op} %{near[0].name} after %{anchor.name} not fused: %{cur.name} {why}")
            break
        node = readers[0]
        if id(node) in taken or sum(1 for v in node.inputs if v is cur) != 1 or len(node.outputs) != 1:
            break
        ends_in_tail = bool(chain.rules) and chain.rules[-1] in TAIL_RULES
        cand = Candidate(node, cur, anchor, "residual" in chain.rules, ends_in_tail)
        rule, why = _rule_for(cand, rules)
        if rule is None:
            if node.op in epilogue_ops:
                misses.append(f"{node.op} %{node.name} after %{anchor.name} not fused: {why}")
            break
        chain.nodes.append(node)
        chain.rules.append(node.op if rule.name == "activation" else rule.name)
        cur = node.outputs[0]
    return chain


def fuse_epilogues(graph: Graph, rules: tuple[EpilogueRule, ...] = EPILOGUE_RULES) -> tuple[Counter[str], list[str]]:
    """Turn every matrix product and its epilogue chain (equations `rules` accept) into a region; returns counts by
    label and near misses."""
    users = graph.users()
    outputs = {id(v) for v in graph.outputs}
    taken: set[int] = set()
    counts: Counter[str] = Counter()
    misses: list[str] = []
    chains = []
    for node in list(graph.nodes):
        if _anchor_ok(node) and id(node) not in taken:
            chain = _grow(node, users, outputs, taken, misses, rules)
            if len(chain.nodes) > 1:
                taken.update(id(n) for n in chain.nodes)
                chains.append(chain)
    for chain in chains:
        make_region(graph, chain.nodes, chain.label.replace("+", "_").replace("*", "x"))
        counts[chain.label] += 1
    return counts, misses


def _elementwise(node: Node) -> bool:
    d = OPS.get(node.op)
    return (d is not None and d.elementwise and len(node.outputs) == 1
            and all(v.type.dtype.name not in ("f16", "bf16") for v in [*node.inputs, *node.outputs]))


def fuse_elementwise(graph: Graph) -> Counter[str]:
    """Merge connected elementwise equations whose inner values have one reader; returns counts by size."""
    users = graph.users()
    outputs = {id(v) for v in graph.outputs}
    group_of: dict[int, list[Node]] = {}
    for node in graph.nodes:
        if not _elementwise(node):
            continue
        members = [node]
        for v in {id(v): v for v in node.inputs}.values():
            p = v.producer
            if (p is not None and id(p) in group_of and group_of[id(p)][-1] is p and id(v) not in outputs
                    and len(users.get(id(v), [])) == 1):
                members = group_of[id(p)] + [m for m in members if m not in group_of[id(p)]]
        members = sorted({id(m): m for m in members}.values(), key=graph.nodes.index)
        members.remove(node)
        members.append(node)  # the tail stays last
        for m in members:
            group_of[id(m)] = members
    groups = {id(g): g for g in group_of.values() if len(g) > 1}
    counts: Counter[str] = Counter()
    for g in groups.values():
        make_region(graph, g, "elementwise_" + g[-1].name.replace(".", "_"))
        counts[f"elementwise({len(g)})"] += 1
    return counts


@register_pass
class Fuse(Pass):
    """Recognizes decomposed LayerNorm / GELU, then fuses epilogues and elementwise chains into regions.

    Regions run the same equations, so outputs are unchanged bit for bit; a recognized pattern is
    replaced by an op that rounds differently (the stated bound covers it).
    """

    name = "fuse"
    exact = False
    tolerance = (1e-4, 1e-5)
    patterns: bool = True
    epilogues: bool = True
    pool: bool = True
    """A convolution's following 2x2 max pool joins its region (false: the pool stays its own node, to compare)."""
    mean: bool = True
    """A convolution's following global average pool joins its region (false: it stays its own node)."""
    elementwise: bool = True

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        """Rewrite recognized patterns, then build the regions; the report counts each kind and lists near misses."""
        lines = []
        recognized = apply_rules(graph, FUSION_PATTERNS) if self.patterns and len(FUSION_PATTERNS) else Counter()
        if recognized:
            lines.append(f"recognized: {format_hits(recognized)}")
            cleaned = apply_rules(graph, LAYOUT_CLEANUP)  # a replacement's layout ops meet the exporter's
            if cleaned:
                lines.append(f"layout cleanup: {format_hits(cleaned)}")
        left_out = {name for name, on in (("pool", self.pool), ("mean", self.mean)) if not on}
        rules = tuple(r for r in EPILOGUE_RULES if r.name not in left_out)
        counts, misses = fuse_epilogues(graph, rules) if self.epilogues else (Counter(), [])
        if self.elementwise:
            counts += fuse_elementwise(graph)
        total = sum(counts.values())
        lines.insert(0, f"fused {total} region(s)" + (": " + format_hits(counts) if counts else ""))
        if misses:
            lines.append(f"not fused ({len(misses)}):")
            lines += [f"  {m}" for m in misses[:20]]
            if len(misses) > 20:
                lines.append(f"  ... and {len(misses) - 20} more")
        summary = lines[0] + (f"; recognized {format_hits(recognized)}" if recognized else "")
        stats = {"regions": total, "recognized": sum(recognized.values()), "not_fused": len(misses)}
        return PassResult(graph, total + sum(recognized.values()) > 0, "\n".join(lines), stats, summary)

