"""Which f32 convolutions hand their results to each other in the blocked-channel layout (k_conv_blocked.py).

A groups-1, stride-1 f32 conv2d (alone, or anchoring a region whose epilogue has no residual and may end in a 2x2
max pool) with constant dense weights and a multiple of VW output channels runs `conv_blocked` when every reader
of its result takes the blocked layout: a `global-avgpool`, or such a convolution reading it as its activation
with equal padding on all four sides (the result then carries that padding as its zero border, the halo), whose
own result is blocked in turn or read by no convolution (the trunk's end). A region that ends in a global average
pool always runs it (its result is the images' means, which the kernel computes; its product stays inside). A
CNN's trunk then stays blocked from its first convolution to its global pooling (or its flatten, through one copy
to NCHW), and no layer copies its input into padded planes (but the first, from the NCHW input) or transposes its
output. The IR still sees NCHW: a blocked value's NCHW slot is made (`blocked_to_nchw`) only when another kernel
asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...ir.graph import Node, Value
from ...ir.regions import region_anchor, region_body
from . import k_microkernel
from .epilogue import Epilogue, empty_epilogue, epilogue_from_region
from .plan import LowerCtx


@dataclass(frozen=True)
class BlockedValue:
    """Where a value lives in the blocked layout: a flat buffer slot (with room for reads past its end), its
    [N, C / VW, H + 2 halo, W + 2 halo, VW] view slot, and the halo."""

    flat: int
    view: int
    halo: int


def conv_and_epilogue(node: Node) -> tuple[Node, Epilogue] | None:
    """(conv2d, epilogue) of a conv2d node or of a region anchored by one that lowers as one kernel; else None."""
    if node.op == "conv2d":
        return node, empty_epilogue(node)
    if node.op != "fused" or (anchor := region_anchor(region_body(node))) is None or anchor.op != "conv2d":
        return None
    bound, epi, leftover = epilogue_from_region(node)
    return None if leftover else (bound, epi)


def _fits(ctx: LowerCtx, conv: Node, epi: Epilogue) -> bool:
    """Whether conv_blocked computes this convolution with this epilogue."""
    a = conv.attrs
    x, w = conv.inputs[0], conv.inputs[1]
    out = conv.outputs[0].type
    return (k_microkernel.AVAILABLE and out.dtype.name == "f32" and x.type.dtype.name == "f32"
            and a["groups"] == 1 and tuple(a["strides"]) == (1, 1) and w.is_constant and w.type.sparsity is None
            and (len(conv.inputs) < 3 or conv.inputs[2].is_constant)
            and out.shape[1] % k_microkernel.VW == 0 and epi.residual is None and epi.out_perm is None
            and (not epi.pool_2x2 or (out.shape[2] % 2 == 0 and out.shape[3] % 2 == 0)) and out.numel > 0)


def _reads_as_input(reader: Node, v: Value) -> bool:
    """Whether `reader` (a conv2d or conv region) reads `v` only as its convolution's activation."""
    if reader.op == "conv2d":
        return reader.inputs[0] is v and all(i is not v for i in reader.inputs[1:])
    body = region_body(reader)
    anchor = region_anchor(body)
    params = {id(p) for p, arg in zip(body.inputs, reader.inputs) if arg is v}
    uses = [(eq, i) for eq in body.nodes for i, x in enumerate(eq.inputs) if id(x) in params]
    return bool(uses) and all(eq is anchor and i == 0 for eq, i in uses)


def blocked_halo(ctx: LowerCtx, node: Node) -> int | None:
    """The halo of the blocked result that conv2d (or conv region) `node` writes, or None when it runs otherwise:
    it runs blocked when it fits and either every reader takes its result blocked (`result_halo`) or its input is
    held blocked already (the trunk ends here: its result, without a halo, is copied to NCHW for its readers)."""
    found = conv_and_epilogue(node)
    if not ctx.blocked_layout or found is None or not _fits(ctx, *found):
        return None
    if found[1].mean:  # its result is the images' means: the blocked product stays inside the kernel
        return 0
    halo = result_halo(ctx, node.outputs[0])
    if halo is None and id(found[0].inputs[0]) in ctx.blocked:
        return 0
    return halo


def _takes_blocked_input(ctx: LowerCtx, reader: Node, found: tuple[Node, Epilogue]) -> bool:
    """Whether conv `reader` fits and runs blocked once its input is: its result is blocked in turn, or no
    convolution reads it (the trunk ends, one copy to NCHW; a convolution that does not fit reading it, as a
    ResNet's residual block, would need a copy per block)."""
    if not _fits(ctx, *found):
        return False
    out = reader.outputs[0]
    return result_halo(ctx, out) is not None or all(conv_and_epilogue(r) is None for r in ctx.readers(out))


def result_halo(ctx: LowerCtx, v: Value) -> int | None:
    """The halo `v` carries blocked when every reader takes it so (a global-avgpool, or a convolution that fits
    reading it as its activation, equally padded on all four sides, that `_takes_blocked_input`: the halo is that
    padding); else None."""
    if not ctx.blocked_layout:
        return None
    if id(v) not in ctx.blocked_plans:
        ctx.blocked_plans[id(v)] = None  # a DAG has no cycles: this only stops re-entry
        ctx.blocked_plans[id(v)] = _result_halo(ctx, v)
    return ctx.blocked_plans[id(v)]


def _result_halo(ctx: LowerCtx, v: Value) -> int | None:
    readers = ctx.readers(v)
    if v.type.rank != 4 or v.type.dtype.name != "f32" or id(v) in ctx.out_ids or not readers:
        return None
    halos = set()
    for r in readers:
        if r.op == "global-avgpool" and r.inputs[0] is v:
            continue
        found = conv_and_epilogue(r) if r.op in ("conv2d", "fused") else None
        if found is None or not _reads_as_input(r, v) or not _takes_blocked_input(ctx, r, found):
            return None
        pads = set(found[0].attrs["pads"])
        if len(pads) != 1:
            return None
        halos |= pads
    if len(halos) > 1:
        return None
    return halos.pop() if halos else 0
