"""The epilogue of a matrix kernel as data: stages applied to each output tile while it is in cache.

An `Epilogue` is a list of `Stage`s (per-channel add / mul / div by a vector, a residual add, an
activation, a clip), the residual value if any, for a batched matmul the permutation of the layout the
product is written into, and for a convolution whether it max-pools each finished tile in 2x2 windows.
`epilogue_from_region(node)` builds one from a `fused` matrix region (see ir/regions.py): it translates
the body's epilogue equations into stages and returns those it cannot express as a leftover suffix. The
construction knows nothing of the kernel that consumes it; kernels read `codes()`, `vectors()` and
`params()` (see k_epilogue.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from ...ir.graph import Graph, Node, Value
from ...ir.ops.nn import is_plain_2x2_pool
from ...ir.regions import CONV_OPS, INTEGER_MATRIX_OPS, region_anchor, region_body


class StageKind(IntEnum):
    """What one epilogue stage does to each element of the tile."""

    ADD = 0
    """+= the channel's vector entry."""
    MUL = 1
    """*= the channel's vector entry."""
    DIV = 2
    """/= the channel's vector entry."""
    RESIDUAL = 3
    """+= the residual tensor's element (same shape as the product)."""
    RELU = 4
    GELU = 5
    GELU_TANH = 6
    SIGMOID = 7
    TANH = 8
    CLIP = 9
    """min(max(x, lo), hi) with (lo, hi) the stage's two parameters."""


VECTOR_KINDS = frozenset({StageKind.ADD, StageKind.MUL, StageKind.DIV})
"""Stages that read one per-channel vector each (in stage order)."""
STAGE_LABELS = {StageKind.ADD: "add", StageKind.MUL: "mul", StageKind.DIV: "div", StageKind.RESIDUAL: "residual",
                StageKind.RELU: "relu", StageKind.GELU: "gelu", StageKind.GELU_TANH: "gelu_tanh",
                StageKind.SIGMOID: "sigmoid", StageKind.TANH: "tanh", StageKind.CLIP: "clip"}
"""Kernel-label names of the stage kinds."""
ACTIVATIONS = {"relu": StageKind.RELU, "sigmoid": StageKind.SIGMOID, "tanh": StageKind.TANH}
"""Unary ops that are one parameterless stage (gelu and clip are translated with their attributes)."""
PARAMS_PER_STAGE = 2
"""Scalar parameters every stage has room for (clip's bounds)."""


class EpilogueArrays(NamedTuple):
    """An epilogue as the kernels take it: stage codes, vector rows, parameters and the residual rows."""

    stages: np.ndarray
    vecs: np.ndarray
    params: np.ndarray
    res: np.ndarray


def epilogue_arrays(n: int, stages: np.ndarray | None = None, vecs: np.ndarray | None = None,
                    params: np.ndarray | None = None, res: np.ndarray | None = None) -> EpilogueArrays:
    """The given epilogue arrays of an output with `n` channels, stand-ins (no stages, zeros) for those left out."""
    stages = np.zeros(0, np.int64) if stages is None else stages
    if params is None:
        params = np.zeros((max(stages.shape[0], 1), PARAMS_PER_STAGE), np.float32)
    return EpilogueArrays(stages, np.zeros((1, max(n, 1)), np.float32) if vecs is None else vecs, params,
                          np.zeros((1, 1), np.float32) if res is None else res)


@dataclass(frozen=True)
class Stage:
    """One epilogue step: its kind, its per-channel vector (ADD/MUL/DIV) and its scalar parameters (CLIP)."""

    kind: StageKind
    vec: np.ndarray | None = None
    params: tuple[float, ...] = ()


@dataclass
class Epilogue:
    """The stages a matrix kernel applies per output tile, over `channels` channels.

    `residual` is the graph value a RESIDUAL stage adds (shaped like the product); `out_perm`, for a
    batched matmul, the permutation (last axis kept last) of the layout its result is written in;
    `pool_2x2`, for a conv2d, that the result after the stages is max-pooled in 2x2 windows at stride 2
    (the region ends in such a maxpool2d); `mean`, for a conv2d, that the result after the stages is averaged
    over each image's pixels (the region ends in a global-avgpool); `equations` the body equations the epilogue
    stands for.
    """

    channels: int
    stages: list[Stage] = field(default_factory=list)
    residual: Value | None = None
    out_perm: tuple[int, ...] | None = None
    pool_2x2: bool = False
    mean: bool = False
    equations: list[Node] = field(default_factory=list)

    def codes(self) -> np.ndarray:
        """The stage kinds as int64 codes (what the kernels branch on)."""
        return np.array([int(s.kind) for s in self.stages], np.int64)

    def vectors(self) -> np.ndarray:
        """The per-channel vectors of the vector stages, one float32 row each (one zero row when none)."""
        vecs = [s.vec for s in self.stages if s.kind in VECTOR_KINDS]
        if not vecs:
            return np.zeros((1, max(self.channels, 1)), np.float32)
        return np.ascontiguousarray(np.stack(vecs), np.float32)

    def params(self) -> np.ndarray:
        """The stages' scalar parameters as float32 [stages, PARAMS_PER_STAGE] (one zero row when none)."""
        out = np.zeros((max(len(self.stages), 1), PARAMS_PER_STAGE), np.float32)
        for i, s in enumerate(self.stages):
            out[i, :len(s.params)] = s.params
        return out

    def label(self) -> str:
        """'add+gelu'-style name of the stages (and a final transpose or pool); '' when empty."""
        parts = [STAGE_LABELS[s.kind] for s in self.stages] + (["transpose"] if self.out_perm is not None else [])
        return "+".join(parts + (["maxpool2x2"] if self.pool_2x2 else []) + (["mean"] if self.mean else []))

    def without_pool(self) -> Epilogue:
        """This epilogue without its pool tail (the stages write the unpooled product)."""
        return replace(self, pool_2x2=False, equations=self.equations[:-1] if self.pool_2x2 else self.equations)

    def without_mean(self) -> Epilogue:
        """This epilogue without its global-average tail (the stages write the product)."""
        return replace(self, mean=False, equations=self.equations[:-1] if self.mean else self.equations)

    def with_bias(self, bias: np.ndarray) -> Epilogue:
        """This epilogue with a per-channel bias added first (a linear's or conv's own bias)."""
        vec = np.ascontiguousarray(np.asarray(bias, np.float32).reshape(self.channels))
        return replace(self, stages=[Stage(StageKind.ADD, vec)] + self.stages)

    def split_at_residual(self) -> tuple[Epilogue, Epilogue]:
        """(the stages before the residual add, the residual add and the stages after it); all stages and an
        empty tail without a residual."""
        kinds = [s.kind for s in self.stages]
        cut = kinds.index(StageKind.RESIDUAL) if StageKind.RESIDUAL in kinds else len(kinds)
        return (replace(self, stages=self.stages[:cut], residual=None),
                replace(self, stages=self.stages[cut:], equations=[]))

    def channel_slice(self, c0: int, c1: int) -> Epilogue:
        """This epilogue over channels c0..c1 only (a grouped convolution's group): vectors sliced; no residual."""
        if self.residual is not None:
            raise ValueError("an epilogue with a residual cannot be cut into channel slices")
        stages = [replace(s, vec=np.ascontiguousarray(s.vec[c0:c1])) if s.vec is not None else s for s in self.stages]
        return replace(self, channels=c1 - c0, stages=stages)


def channel_axis(anchor: Node) -> int:
    """The axis of the anchor's output that the epilogue's vectors run along."""
    return 1 if anchor.op in CONV_OPS else anchor.outputs[0].type.rank - 1


def is_gemm_like(node: Node) -> bool:
    """True when a linear/matmul lowers to one 2-D GEMM (its weight/B operand is 2-D)."""
    return node.op in ("linear", "qlinear", "qmatmul") or (node.op == "matmul" and node.inputs[1].type.rank == 2
                                   and node.inputs[0].type.rank >= 2)


def accepts_epilogue(anchor: Node) -> bool:
    """Whether the kernels can apply an epilogue to this product: f32 throughout, a constant bias if any,
    matmul operands of rank >= 2 (the channel is then the product's last axis); an integer product when it
    dequantizes to f32."""
    if anchor.op in INTEGER_MATRIX_OPS:
        return anchor.outputs[0].type.dtype.name == "f32" and anchor.outputs[0].type.rank > 0
    values = list(anchor.inputs) + list(anchor.outputs)
    if any(v.type.dtype.name != "f32" for v in values) or anchor.outputs[0].type.rank == 0:
        return False
    if anchor.op in ("linear", "conv2d") and len(anchor.inputs) > 2 and not anchor.inputs[2].is_constant:
        return False
    return anchor.op != "matmul" or min(v.type.rank for v in anchor.inputs) >= 2


def empty_epilogue(anchor: Node) -> Epilogue:
    """The epilogue of a product lowered alone (no stages)."""
    out = anchor.outputs[0].type
    return Epilogue(out.shape[channel_axis(anchor)] if out.rank else 1)


def per_channel(arr: np.ndarray, out_shape: tuple[int, ...], axis: int) -> np.ndarray | None:
    """`arr` as a float32 vector over the channel axis if it broadcasts only along that axis."""
    c = out_shape[axis]
    if arr.ndim > len(out_shape):
        return None
    if arr.size == 1:
        return np.full(c, arr.reshape(-1)[0], np.float32)
    shape = (1,) * (len(out_shape) - arr.ndim) + arr.shape
    if any(d != 1 for i, d in enumerate(shape) if i != axis) or shape[axis] != c:
        return None
    return np.ascontiguousarray(arr.reshape(c), dtype=np.float32)


@dataclass
class _Chain:
    """What translating one equation needs: the anchor, the region's parameter bindings, the stages so far."""

    anchor: Node
    outer: dict[int, Value]
    epilogue: Epilogue

    def constant(self, v: Value) -> np.ndarray | None:
        """The data of `v` if it is a parameter bound to a constant."""
        arg = self.outer.get(id(v))
        return None if arg is None or not arg.is_constant else np.asarray(arg.data)


def _binary_stages(eq: Node, cur: Value, chain: _Chain) -> list[Stage] | None:
    a, b = eq.inputs
    other, cur_first = (b, True) if a is cur else (a, False)
    out_shape = chain.anchor.outputs[0].type.shape
    data = chain.constant(other)
    if data is None:
        if (eq.op == "add" and chain.epilogue.residual is None and id(other) in chain.outer
                and other.type.shape == out_shape):
            chain.epilogue.residual = chain.outer[id(other)]
            return [Stage(StageKind.RESIDUAL)]
        return None
    vec = per_channel(data, out_shape, channel_axis(chain.anchor))
    if vec is None:
        return None
    if eq.op == "sub":
        if cur_first:
            return [Stage(StageKind.ADD, -vec)]
        return [Stage(StageKind.MUL, np.full_like(vec, -1.0)), Stage(StageKind.ADD, vec)]
    if eq.op == "div" and not cur_first:
        return None
    return [Stage({"add": StageKind.ADD, "mul": StageKind.MUL, "div": StageKind.DIV}[eq.op], vec)]


def _batchnorm_stages(eq: Node, cur: Value, chain: _Chain) -> list[Stage] | None:
    if eq.inputs[0] is not cur or channel_axis(chain.anchor) != 1:
        return None
    consts = [chain.constant(v) for v in eq.inputs[1:]]
    if any(c is None for c in consts):
        return None
    scale, bias, mean, var = (np.asarray(c, np.float64).reshape(-1) for c in consts)  # type: ignore[arg-type]
    s = scale / np.sqrt(var + eq.attrs["epsilon"])
    return [Stage(StageKind.MUL, s.astype(np.float32)), Stage(StageKind.ADD, (bias - mean * s).astype(np.float32))]


def _stages_for(eq: Node, cur: Value, chain: _Chain) -> list[Stage] | None:
    """The stages equivalent to equation `eq` reading the running result `cur`, or None."""
    if eq.op in ACTIVATIONS:
        return [Stage(ACTIVATIONS[eq.op])]
    if eq.op == "gelu":
        return [Stage(StageKind.GELU_TANH if eq.attrs.get("approximate") == "tanh" else StageKind.GELU)]
    if eq.op == "clip":
        return [Stage(StageKind.CLIP, params=(float(eq.attrs.get("min", -np.inf)),
                                              float(eq.attrs.get("max", np.inf))))]
    if eq.op in ("add", "sub", "mul", "div"):
        return _binary_stages(eq, cur, chain)
    if eq.op == "batchnorm":
        return _batchnorm_stages(eq, cur, chain)
    return None


def _uses(body: Graph) -> dict[int, int]:
    counts: dict[int, int] = {}
    for v in [v for n in body.nodes for v in n.inputs] + list(body.outputs):
        counts[id(v)] = counts.get(id(v), 0) + 1
    return counts


def _is_layout_transpose(eq: Node, anchor: Node) -> bool:
    """A final transpose a batched matmul can write its product into (last axis kept last)."""
    rank = anchor.outputs[0].type.rank
    return (eq.op == "transpose" and anchor.op == "matmul" and not is_gemm_like(anchor)
            and tuple(eq.attrs["perm"])[-1] == rank - 1)


def _is_pool_tail(eq: Node, anchor: Node) -> bool:
    """A final 2x2 max pool a convolution can apply to its finished tiles."""
    return eq.op == "maxpool2d" and anchor.op == "conv2d" and is_plain_2x2_pool(eq)


def _is_mean_tail(eq: Node, anchor: Node) -> bool:
    """A final global average pool of a convolution's result."""
    return eq.op == "global-avgpool" and anchor.op == "conv2d"


def bound_anchor(anchor: Node, outer: dict[int, Value]) -> Node:
    """The anchor equation reading the region's input values (so `is_constant` / `data` tell what its body
    parameters are bound to) and writing the body's value; the body itself is left untouched."""
    bound = Node(anchor.op, [outer.get(id(v), v) for v in anchor.inputs], anchor.attrs, None, anchor.meta)
    bound.outputs = list(anchor.outputs)  # not through Node(): that would make it the body value's producer
    return bound


def epilogue_from_region(node: Node) -> tuple[Node, Epilogue, list[Node]]:
    """(anchor, epilogue, leftover equations) of a `fused` matrix region.

    The anchor is returned bound to the region's inputs (`bound_anchor`): its inputs are the fused
    node's input values (constant weights carry their data), its output the body's value.

    The epilogue covers the longest prefix of the equations after the anchor that the kernels can
    apply per tile (each reading the previous result, used nowhere else); the leftover suffix must be
    lowered on its own, reading the value the last covered equation produces. An anchor that does
    not `accepts_epilogue` gets an empty epilogue and every equation as leftover. The anchor's own
    constant bias is not part of the epilogue (the anchor's lowering adds it, see `Epilogue.with_bias`).
    """
    body = region_body(node)
    anchor = region_anchor(body)
    if anchor is None:
        raise ValueError(f"region %{node.name} has no matrix anchor (its first equation is {body.nodes[0].op})")
    out = anchor.outputs[0]
    outer = {id(p): a for p, a in zip(body.inputs, node.inputs)}
    bound = bound_anchor(anchor, outer)
    chain = _Chain(bound, outer, empty_epilogue(anchor))
    rest = list(body.nodes[1:])
    if not accepts_epilogue(bound):
        return bound, chain.epilogue, rest
    uses = _uses(body)
    cur, taken = out, 0
    for eq in rest:
        reads = sum(1 for v in eq.inputs if v is cur)
        if uses.get(id(cur), 0) != 1 or reads != 1 or eq.outputs[0].type.dtype.name != "f32":
            break
        if _is_layout_transpose(eq, bound):
            chain.epilogue.out_perm = tuple(eq.attrs["perm"])
            taken += 1
            break
        if _is_pool_tail(eq, bound):
            chain.epilogue.pool_2x2 = True
            taken += 1
            break
        if _is_mean_tail(eq, bound):
            chain.epilogue.mean = True
            taken += 1
            break
        stages = _stages_for(eq, cur, chain) if eq.outputs[0].type.shape == out.type.shape else None
        if stages is None:
            break
        chain.epilogue.stages += stages
        cur, taken = eq.outputs[0], taken + 1
    chain.epilogue.equations = [anchor] + rest[:taken]
    return bound, chain.epilogue, rest[taken:]

