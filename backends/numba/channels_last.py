"""Which values the int8 convolutions hand to each other channels last (NHWC), skipping two layout changes.

A groups-1 `qconv2d` computes [pixels, channels], NHWC, and transposes it to the IR's NCHW; the next one copies
its u8 input back to NHWC. When every reader of a convolution's result is a per-tensor `quantize-dynamic`
(whose range and rounding ignore element order) feeding only groups-1 qconv2d activations, or such a qconv2d
region adding it as its residual, or a max-pool whose result qualifies in turn (`maxpool_nhwc` pools channels
last), or, for a requantized u8 result, such qconv2d directly, the result stays NHWC: its slot is a transposed
view of the NHWC buffer (`LowerCtx.channels_last`), which those readers take as is (a channels-last residual
is added in the GEMM's epilogue, per [pixels, channels] tile) and any other reader would materialize. A
ResNet's or a VGG's trunk then stays NHWC from its first convolution to its global pooling.
"""

from __future__ import annotations

from ...ir.graph import Node, Value
from ...ir.regions import region_anchor, region_body
from .epilogue import epilogue_from_region
from .plan import LowerCtx


def _reads_as_activation(reader: Node, v: Value) -> bool:
    """Whether `reader` reads `v` only as the u8 activation of a groups-1 qconv2d (alone or anchoring a region)."""
    if reader.op == "qconv2d":
        return reader.attrs["groups"] == 1 and reader.inputs[0] is v and all(i is not v for i in reader.inputs[1:])
    if reader.op != "fused":
        return False
    body = region_body(reader)
    anchor = region_anchor(body)
    if anchor is None or anchor.op != "qconv2d" or anchor.attrs["groups"] != 1:
        return False
    params = {id(p) for p, a in zip(body.inputs, reader.inputs) if a is v}
    uses = [(eq, i) for eq in body.nodes for i, x in enumerate(eq.inputs) if id(x) in params]
    return bool(uses) and all(eq is anchor and i == 0 for eq, i in uses)


def _reads_as_residual(reader: Node, v: Value) -> bool:
    """Whether `reader` is a region whose groups-1 qconv2d adds `v` as its epilogue's residual (and reads it no
    other way): the GEMM adds a channels-last residual per [pixels, channels] tile."""
    if reader.op != "fused" or (anchor := region_anchor(region_body(reader))) is None or anchor.op != "qconv2d":
        return False
    bound, epi, leftover = epilogue_from_region(reader)
    return (bound.attrs["groups"] == 1 and epi.residual is v and not leftover
            and sum(a is v for a in reader.inputs) == 1 and all(a is not v for a in bound.inputs))


def read_channels_last(ctx: LowerCtx, v: Value) -> bool:
    """Whether every reader of u8 value `v` takes it as a groups-1 qconv2d activation (and it is no graph output)."""
    readers = ctx.readers(v)
    return (v.type.rank == 4 and v.type.dtype.name == "u8" and id(v) not in ctx.out_ids and bool(readers)
            and all(_reads_as_activation(r, v) for r in readers))


def result_channels_last(ctx: LowerCtx, v: Value) -> bool:
    """Whether a convolution's result `v` may stay NHWC: its readers are per-tensor quantize-dynamic nodes whose
    u8 output `read_channels_last` accepts, qconv2d regions adding it as their residual, or max-pools whose result
    may stay NHWC in turn (f32 `v`); or themselves such convolutions (u8 `v`)."""
    if v.type.dtype.name == "u8":
        return read_channels_last(ctx, v)
    readers = ctx.readers(v)
    return (v.type.rank == 4 and v.type.dtype.name == "f32" and id(v) not in ctx.out_ids and bool(readers)
            and all((r.op == "quantize-dynamic" and r.attrs["granularity"] == "tensor" and r.inputs[0] is v
                     and read_channels_last(ctx, r.outputs[0])) or _reads_as_residual(r, v)
                    or (r.op == "maxpool2d" and r.inputs[0] is v and result_channels_last(ctx, r.outputs[0]))
                    for r in readers))
