"""Lowering of the integer ops onto the int8 GEMM kernels (int8_gemm.py), alone or anchoring a fused region.

`quantize-dynamic` runs `quantize_rows` / `quantize_tensor`. `qlinear` / `qmatmul` run `gemm_dequant` with the
weights packed now, at compile time, for the plan's int8 path (`LowerCtx.int8_path`); a fused region's f32
epilogue runs per output tile after dequantization. `qconv2d` builds a u8 im2col matrix (padding reads the
zero point), runs the same GEMM with one row per output pixel, and transposes the result to NCHW.
"""

from __future__ import annotations

import math

import numpy as np

from ...ir.graph import Node, Value
from ...ir.ops.integer import WEIGHT_BITS, weight_zero_points
from ..cost.sparse_kernels import BSR, KernelChoice
from .bsr_int8 import SPARSE_PATH, bsr_int8_from_dense, bsr_int8_schedule, sparse_int8_kernel
from .channels_last import read_channels_last, result_channels_last
from .cpu_features import INT8_PATH_FEATURES
from .epilogue import Epilogue, empty_epilogue
from .geometry import DH, DW, GEOMETRY_SIZE, KH, KW, PL, PT, SH, SW, W_OUT
from .int8_gemm import (
    NO_QUANT_OUT,
    NO_WEIGHT_ZERO_POINT,
    int8_kernels,
    int8_tiles,
    pack_int8_weights,
    padded_k,
    scratch_size,
)
from .int8_quantize import quantize_rows, quantize_tensor
from .int8_ukernel import WEIGHT_RANGE
from .k_integer import (
    SIGN_FLIP,
    activations_u8,
    im2col_channel_major_u8,
    im2col_nhwc_u8,
    pad_nhwc_u8,
    padded_nhwc_u8,
    pixels_to_nchw,
    qadd,
    row_sums_u8,
    shift_zero_points,
)
from .k_phase_planes import MAX_EXACT_TAPS, MAX_EXACT_TAPS_SHIFTED, plane_scratch, qconv_depthwise
from .matrix_lowering import FLOPS_PER_UNIT, constant_data, epilogue_args, kernel_label, residual_arg
from .plan import Lit, LowerCtx
from .registry import lowers
from .rules_shape import Index, Transpose
from .rules_sparse import int8_layer_choice, record_choice
from .tiling import split_rows

QUANTIZED_VALUES_PER_UNIT = {"row": 2, "tensor": 4}
"""Values of dynamic quantization per work unit, by granularity: about 0.2 ns a value on one core (128 x 768 in
21 us, AMX host), and each parallel region costs 1-1.5 us to start. Per row is one region (two threads pay from
about 32k values: 32 x 768 in 6.3 -> 4.8 us); per tensor two, a range pass and then the quantization (from about
64k values: 64 x 768 level, 128 x 768 in 20.6 -> 13.7 us, 16 x 768 in 3.0 -> 5.6 us)."""
INT8_SPEEDUP = {"amx": 8, "avx512vnni": 4, "avxvnni": 4, "avx512bw": 2, "avx2": 2}
"""About how many times faster than the fp32 GEMM each int8 path multiplies (its flops are that much less work):
measured 5-11x on the AMX path, aimed at 3x on VNNI and 2x on AVX2 hosts."""
TRANSPOSE_WORK = 2
"""Work units per element of a layout change (a read and a scattered write)."""
RUN_WORK = 16
"""Work units of one im2col run besides its bytes (a masked vector copy of a tap row: about 10 ns on one core,
measured on the zoo CNN's first convolution, 3 runs of 9 bytes per pixel)."""


def _first(a: np.ndarray) -> np.ndarray:
    return a[:1]


@lowers("quantize-dynamic")
def lower_quantize_dynamic(ctx: LowerCtx, node: Node) -> None:
    """quantize-dynamic: per row or per tensor on the rows of x [M, K] (per-tensor: all rows share one pair)."""
    x = node.inputs[0]
    q, scale, zp = node.outputs
    k = x.type.shape[-1]
    m = math.prod(x.type.shape[:-1])
    nhwc = ctx.channels_last.get(id(x)) if node.attrs["granularity"] == "tensor" else None
    if nhwc is not None and read_channels_last(ctx, q):  # one range and one rounding for all: any element order
        nb, c, h, w = x.type.shape
        m, k = nb * h * w, c
        x_rows = ctx.reshaped(nhwc, (m, k))
        q_nhwc = ctx.buffer((nb, h, w, c), np.dtype(np.uint8), f"{q.name}.nhwc")
        ctx.view(q_nhwc, Transpose((0, 3, 1, 2)), q.name, q)
        ctx.channels_last[id(q)] = q_nhwc
        q_slot = q_nhwc
    else:
        x_rows = ctx.reshaped(ctx.arg(x), (m, k))
        q_slot = ctx.out(q)
    if node.attrs["granularity"] == "row":
        s_slot, z_slot, kernel = ctx.out(scale), ctx.out(zp), quantize_rows
    else:
        s_slot = ctx.buffer((max(m, 1),), np.dtype(np.float32), f"{scale.name}.rows")
        z_slot = ctx.buffer((max(m, 1),), np.dtype(np.int32), f"{zp.name}.rows")
        kernel = quantize_tensor
    if m * k:
        ctx.emit(f"quantize_dynamic_{node.attrs['granularity']}", kernel, x_rows,
                 ctx.reshaped(q_slot, (m, k)), ctx.reshaped(s_slot, (m,)), ctx.reshaped(z_slot, (m,)),
                 writes=(q_slot, s_slot, z_slot), work=m * k // QUANTIZED_VALUES_PER_UNIT[node.attrs["granularity"]])
    if node.attrs["granularity"] == "tensor":
        ctx.view(s_slot, _first, scale.name, scale)
        ctx.view(z_slot, _first, zp.name, zp)


def _path(ctx: LowerCtx, node: Node) -> str:
    """The plan's int8 path, checked to compute this op's weight range exactly."""
    path = ctx.int8_path
    if path is None:
        raise ctx.fail(f"this host executes no int8 GEMM path ({', '.join(INT8_PATH_FEATURES)})")
    lo, hi = WEIGHT_BITS[node.attrs["weight_bits"]]
    plo, phi = WEIGHT_RANGE[path]
    if lo < plo or hi > phi:
        raise ctx.fail(f"weight_bits={node.attrs['weight_bits']} holds weights in [{lo}, {hi}], but int8 path "
                       f"{path!r} computes exactly only [{plo}, {phi}]: quantize with weight_bits=7 for this "
                       f"path (quantize{{weight_bits=7}}), or run on a host with avx512vnni or avxvnni")
    ctx.int8_used = True
    return path


def _activations(ctx: LowerCtx, x: int, zp: Value, rows: int, k: int) -> tuple[int, int]:
    """(u8 activations [rows, Kp], their zero points): s8 flipped to u8, K padded, contiguous as-is otherwise."""
    flip = ctx.slots[x].dtype == np.dtype(np.int8)
    kp = padded_k(k)
    x2 = ctx.reshaped(ctx.arg(x), (rows, k))
    if flip or kp != k:
        xu = ctx.buffer((rows, kp), np.dtype(np.uint8), f"{ctx.slots[x].name}.u8")
        ctx.emit("activations_u8", activations_u8, x2, xu, Lit(flip), writes=(xu,), work=rows * kp)
        x2 = xu
    z = ctx.arg(zp)
    if flip:
        zs = ctx.buffer(zp.type.shape, np.dtype(np.int32), f"{zp.name}.u8")
        ctx.emit("shift_zero_points", shift_zero_points, z, zs, Lit(SIGN_FLIP), writes=(zs,), work=zp.type.numel)
        z = zs
    return x2, z


def _requant_args(node: Node, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
    """The output scales and zero points of channels c0..c1 (empty for an f32 output)."""
    a = node.attrs
    if a["dtype"] == "f32":
        return np.zeros(0, np.float32), np.zeros(0, np.int32)
    n = node.outputs[0].type.shape[1 if node.op == "qconv2d" else -1]
    return (np.ascontiguousarray(np.broadcast_to(np.asarray(a["out_scale"], np.float32), (n,))[c0:c1]),
            np.ascontiguousarray(np.broadcast_to(np.asarray(a["out_zero_point"], np.int32), (n,))[c0:c1]))


def _channel_args(ctx: LowerCtx, node: Node, channels: tuple[int, int]) -> tuple[int, int]:
    """Slots of the weight scales and the bias (zeros when none) of output channels c0..c1."""
    c0, c1 = channels
    part = Index((slice(c0, c1),))
    ws = node.inputs[4]
    scales = ctx.arg(ws) if ws.type.shape == (c1 - c0,) else ctx.view(ctx.arg(ws), part, f"{ws.name}[{c0}:{c1}]")
    if len(node.inputs) <= 5:
        return scales, ctx.const(np.zeros(c1 - c0, np.float32), "zero_bias")
    b = node.inputs[5]
    return scales, ctx.arg(b) if b.type.shape == (c1 - c0,) else ctx.view(ctx.arg(b), part, f"{b.name}[{c0}:{c1}]")


def _weight_zero_point_args(ctx: LowerCtx, node: Node, xu: int, zp: int, k: int,
                            channels: tuple[int, int]) -> tuple[int, int]:
    """Slots of (row sums of xu's first k columns less the zero point, the weight zero points of channels c0..c1)
    for `dequant_block`: a row-sum step is emitted when the node has a weight zero point, else both are empty."""
    c0, c1 = channels
    n_all = node.outputs[0].type.shape[1 if node.op == "qconv2d" else -1]
    wzp = np.asarray(weight_zero_points(node.attrs, n_all)[c0:c1], np.int32)
    if not wzp.any():
        none = ctx.const(NO_WEIGHT_ZERO_POINT, "no_weight_zero_point")
        return none, none
    m = ctx.slots[xu].shape[0]
    rsum = ctx.buffer((m,), np.dtype(np.int32), f"{node.name}.row_sums")
    ctx.emit("row_sums_u8", row_sums_u8, xu, Lit(k), zp, rsum, writes=(rsum,), work=m * k)
    return rsum, ctx.const(wzp, f"{node.name}.weight_zero_point")


def emit_int8_gemm(ctx: LowerCtx, node: Node, xu: int, zp: int, w_nk: np.ndarray, out2: int,
                   epi: Epilogue, res: int, label: str, channels: tuple[int, int] | None = None,
                   choice: KernelChoice | None = None) -> None:
    """gemm_dequant of u8 activations xu [M, Kp] with s8 weights w_nk [N, K] packed now, writing out2 [M, N]
    (f32, or u8/s8 requantized through an f32 work buffer). `channels` (c0, c1): the node's output channels
    these N are (a grouped convolution's group; all of them by default); `epi` is over these channels. `choice`:
    the kernel decided already (a convolution decides on its weights in their pruned K order), else decided here."""
    path = _path(ctx, node)
    m, n, k = ctx.slots[out2].shape[0], w_nk.shape[0], w_nk.shape[1]
    c0, c1 = channels if channels is not None else (0, n)
    sx = node.inputs[1]
    w_q = np.ascontiguousarray(w_nk, np.int8)
    name = node.inputs[3].name if channels is None else f"{node.inputs[3].name}[{c0}:{c1}]"
    ws, bias = _channel_args(ctx, node, (c0, c1))
    choice = int8_layer_choice(node, w_q) if choice is None else choice
    # the products, at the path's speed, and the dequantization and epilogue of every output element
    work = max(1, m * n + int(2 * m * n * max(k, 1) * choice.density) // (FLOPS_PER_UNIT * INT8_SPEEDUP[path]))
    threads = ctx.threads if ctx.parallel(work) else 1
    s_out, zp_out = _requant_args(node, c0, c1)
    if node.attrs["dtype"] == "f32":
        y, q = out2, ctx.const(NO_QUANT_OUT, "no_quant_out")
    else:
        y, q = ctx.buffer((m, n), np.dtype(np.float32), f"{node.name}.f32"), out2
    codes, vecs, params = epilogue_args(ctx, epi)
    rsum, wzp = _weight_zero_point_args(ctx, node, xu, zp, k, (c0, c1))
    first_step = len(ctx.steps)
    if choice.kernel == BSR and choice.block is not None:
        bsr = bsr_int8_from_dense(w_q, choice.block, path, name=name)
        sched = bsr_int8_schedule(bsr, m, threads)
        scratch = ctx.buffer((sched.scratch,), np.dtype(np.int32), f"{node.name}.acc")
        ctx.emit(kernel_label(f"{label}_bsr{choice.block[0]}x{choice.block[1]}_{SPARSE_PATH[path]}", epi),
                 sparse_int8_kernel(path, bsr.tile).driver, xu, ctx.arg(sx), zp, ctx.const(bsr.gidx, f"{name}.gidx"),
                 ctx.const(bsr.pptr, f"{name}.pptr"), ctx.const(bsr.data, f"{name}.bsr_{SPARSE_PATH[path]}"),
                 ctx.const(bsr.colsum, f"{name}.colsum"), rsum, wzp, ws, bias, y,
                 ctx.const(sched.groups, f"{name}.groups"), Lit(sched.tm), scratch, codes, vecs, params, res, q,
                 ctx.const(s_out, "out_scale"), ctx.const(zp_out, "out_zero_point"), writes=(y, q, scratch), work=work)
    else:
        packed = pack_int8_weights(w_q, np.ones(n, np.float32), path)
        # by rows even where attention reads the result by heads: each thread then reads the rows it quantized
        # (4-7% faster on the int8 MiniLM and BERT-base layer than panels matching the heads)
        tm, tnp = int8_tiles(m, n, path, ctx.threads, threads > 1, split_rows(m, w_q.nbytes, ctx.weight_bytes, threads))
        scratch = ctx.buffer((scratch_size(m, n, path, tm, tnp),), np.dtype(np.int32), f"{node.name}.acc")
        ctx.emit(kernel_label(f"{label}_{path}", epi), int8_kernels(path).gemm_dequant, xu, ctx.arg(sx), zp,
                 ctx.const(packed.data, f"{name}.packed_{path}"), ctx.const(packed.colsum, f"{name}.colsum"),
                 rsum, wzp, ws, bias, y, Lit(tm), Lit(tnp), scratch, codes, vecs, params, res, q,
                 ctx.const(s_out, "out_scale"), ctx.const(zp_out, "out_zero_point"), writes=(y, q, scratch),
                 work=work)
    if node.inputs[3].type.sparsity is not None:
        record_choice(ctx, node, choice, first_step)


def _constant_weight(ctx: LowerCtx, node: Node) -> np.ndarray:
    w = node.inputs[3]
    data = constant_data(ctx, w)
    if data is None:
        raise ctx.fail(f"{node.op} needs a constant weight (packed at compile time); %{w.name} is computed")
    return data


def lower_qproduct(ctx: LowerCtx, node: Node, epi: Epilogue, out_value: Value) -> None:
    """qlinear / qmatmul with epilogue `epi` (f32 output only), writing `out_value`."""
    w = _constant_weight(ctx, node)
    w_nk = w if node.op == "qlinear" else w.T
    n, k = w_nk.shape
    x = node.inputs[0]
    m = math.prod(x.type.shape[:-1])
    out = ctx.out(out_value)
    if m * n == 0:
        return
    xu, zp = _activations(ctx, ctx.slot(x), node.inputs[2], m, k)
    res = residual_arg(ctx, epi, (m, n))
    emit_int8_gemm(ctx, node, xu, zp, w_nk, ctx.reshaped(out, (m, n)), epi, res, node.op)


def _geometry(node: Node, out_w: int) -> np.ndarray:
    a = node.attrs
    (kh, kw), (sh, sw), (pt, pl, _, _), (dh, dw) = node.inputs[3].type.shape[2:], a["strides"], a["pads"], \
        a["dilations"]
    geo = np.zeros(GEOMETRY_SIZE, np.int64)
    geo[[KH, KW, SH, SW, PT, PL, DH, DW, W_OUT]] = kh, kw, sh, sw, pt, pl, dh, dw, out_w
    return geo


def _lower_qconv_depthwise(ctx: LowerCtx, node: Node, epi: Epilogue, out_value: Value) -> None:
    """A depthwise qconv2d (one input channel per group) on k_phase_planes.qconv_depthwise, exact in f32."""
    w = _constant_weight(ctx, node)
    co, _, kh, kw = w.shape
    wzp = np.asarray(weight_zero_points(node.attrs, co), np.int32)
    limit = MAX_EXACT_TAPS_SHIFTED if wzp.any() else MAX_EXACT_TAPS
    if kh * kw > limit:
        raise ctx.fail(f"depthwise qconv2d with {kh}x{kw} taps: more than {limit} do not sum exactly in f32")
    taps = w.reshape(co, -1).astype(np.float32) - wzp.astype(np.float32)[:, None]
    nb, _, ho, wo = out_value.type.shape
    out = ctx.out(out_value)
    if out_value.type.numel == 0:
        return
    y3 = ctx.reshaped(out, (nb, co, ho * wo))
    geo = _geometry(node, wo)  # the kernel's size is the weight's, input 3
    per_channel = plane_scratch(geo, ho)
    scratch = ctx.buffer((nb * co, per_channel), np.dtype(np.float32), f"{node.name}.phases")
    if node.attrs["dtype"] == "f32":
        y, q = y3, ctx.const(np.zeros((1, 1, 1), np.uint8), "no_quant_out")
    else:
        y, q = ctx.buffer((nb, co, ho * wo), np.dtype(np.float32), f"{node.name}.f32"), y3
    s_out, zp_out = _requant_args(node, 0, co)
    lo, hi = (-128.0, 127.0) if node.attrs["dtype"] == "i8" else (0.0, 255.0)
    ws, bias = _channel_args(ctx, node, (0, co))
    codes, vecs, params = epilogue_args(ctx, epi)
    res = residual_arg(ctx, epi, (nb, co, ho * wo))
    work = nb * co * (per_channel + kh * kw * (per_channel - ho * wo))
    ctx.emit(kernel_label("qconv_depthwise", epi), qconv_depthwise, ctx.arg(node.inputs[0]), ctx.arg(node.inputs[1]),
             ctx.arg(node.inputs[2]), ctx.const(taps, f"{node.inputs[3].name}.taps"),
             ws, bias, y, q, Lit(geo), scratch, codes, vecs, params, res,
             ctx.const(s_out, "out_scale"), ctx.const(zp_out.astype(np.float32), "out_zero_point"),
             Lit(np.float32(lo)), Lit(np.float32(hi)), writes=(y, q, scratch), work=work)


def _reads_pixels_as_rows(node: Node) -> bool:
    """Whether each output pixel's K values are one run of the group-major NHWC copy: a 1x1 kernel, stride 1, no
    padding (the GEMM then reads that copy as its activation rows, with no im2col)."""
    a = node.attrs
    return node.inputs[3].type.shape[2:] == (1, 1) and tuple(a["strides"]) == (1, 1) and not any(a["pads"])


def _nhwc_rows(ctx: LowerCtx, node: Node, zp: int, flip: bool, cp: int, pointwise: bool) -> tuple[int | None, int]:
    """(the activation rows a pointwise groups-1 product reads in place, or None; else the slot of the group-major
    zero-point-padded NHWC copy [groups, N, Hq, Wq, Cp] that im2col reads), from a channels-last input when
    there is one (`channels_last.py`), else transposed from NCHW."""
    x, groups = node.inputs[0], node.attrs["groups"]
    nb, ci, h, w_in = x.type.shape
    pt, pl, pb, pr = node.attrs["pads"]
    hq, wq = h + pt + pb, w_in + pl + pr
    nhwc = ctx.channels_last.get(id(x)) if groups == 1 and not flip else None
    if nhwc is not None and pointwise and cp == ci:
        return ctx.reshaped(nhwc, (nb * h * w_in, ci)), -1
    xp = ctx.buffer((groups, nb, hq, wq, cp), np.dtype(np.uint8), f"{node.name}.nhwc")
    if nhwc is not None:
        ctx.emit("pad_nhwc_u8", pad_nhwc_u8, nhwc, zp, Lit(pt), Lit(pl), xp, writes=(xp,), work=nb * hq * wq * cp)
    else:
        ctx.emit("padded_nhwc_u8", padded_nhwc_u8, ctx.arg(x), zp, Lit(flip), Lit(pt), Lit(pl), xp, writes=(xp,),
                 work=TRANSPOSE_WORK * groups * nb * hq * wq * cp)
    return None, xp


def lower_qconv(ctx: LowerCtx, node: Node, epi: Epilogue, out_value: Value, result: Value | None = None) -> None:
    """qconv2d as a group-major u8 NHWC copy, then per group u8 im2col + the int8 GEMM, and one transpose of every
    group's pixels x channels to NCHW; `epi`'s stages run in the GEMM up to a residual add, which and whatever
    follows it run in the transpose. A depthwise qconv2d (one input channel per group) runs on phase planes
    instead. `result`: the graph value `out_value` becomes (`out_value` itself when None); when its readers take
    it channels last (`channels_last.result_channels_last`), groups 1 and no residual, the transpose is left out
    and `out_value` is bound to a transposed view of the pixels."""
    groups = node.attrs["groups"]
    if groups != 1 and node.inputs[3].type.shape[1] == 1:
        _lower_qconv_depthwise(ctx, node, epi, out_value)
        return
    residual_nhwc = ctx.channels_last.get(id(epi.residual)) if epi.residual is not None and groups == 1 else None
    if residual_nhwc is None:  # the GEMM writes pixels x channels: a residual (NCHW) joins the transpose
        epi, tail = epi.split_at_residual()
    else:  # a channels-last residual is pixels x channels too: the GEMM's epilogue adds it
        tail = empty_epilogue(node)
    w = _constant_weight(ctx, node)
    x = node.inputs[0]
    nb = x.type.shape[0]
    co, cg, kh, kw = w.shape
    cog = co // groups
    _, _, ho, wo = out_value.type.shape
    rows = nb * ho * wo
    if rows * co == 0:
        ctx.out(out_value)
        return
    flip = x.type.dtype.name == "i8"
    zp = ctx.arg(node.inputs[2])
    if flip:
        zs = ctx.buffer((1,), np.dtype(np.int32), f"{node.name}.zp_u8")
        ctx.emit("shift_zero_points", shift_zero_points, zp, zs, Lit(SIGN_FLIP), writes=(zs,), work=1)
        zp = zs
    pointwise = _reads_pixels_as_rows(node)
    cp = padded_k(cg) if pointwise else cg  # a pointwise product's rows are the copy's pixels, K padded in place
    kp = padded_k(kh * kw * cg)
    in_place, xp = _nhwc_rows(ctx, node, zp, flip, cp, pointwise)
    geo = ctx.const(_geometry(node, wo), "geometry")
    cols = None if pointwise else ctx.buffer((rows, kp), np.dtype(np.uint8), f"{node.name}.cols")
    pix = ctx.buffer((groups, rows, cog), out_value.type.dtype.np_dtype, f"{node.name}.pixels")
    if residual_nhwc is not None:
        gemm_residual = ctx.reshaped(residual_nhwc, (rows, co))
    else:
        gemm_residual = ctx.const(np.zeros((1, 1), np.float32), "no_residual")
    for g in range(groups):
        part = Index((slice(g, g + 1),))
        w_nk = w[g * cog:(g + 1) * cog].reshape(cog, kh * kw * cg)
        choice = None
        if in_place is not None:
            src = in_place
        else:
            xg = ctx.reshaped(ctx.view(xp, part, f"{node.name}.nhwc[{g}]") if groups > 1 else xp,
                              ctx.slots[xp].shape[1:])
            choice = int8_layer_choice(node, np.ascontiguousarray(w_nk, np.int8))
            if pointwise:
                src = ctx.reshaped(xg, (rows, cp))
            elif choice.kernel == BSR:
                # block-sparse weights keep their K order (channel, tap row, tap column): the blocks were pruned in it
                ctx.emit("im2col_channel_major_u8", im2col_channel_major_u8, xg, geo, cols, writes=(cols,),
                         work=rows * kp)
                src = cols
            else:  # K as (tap row, tap column, channel): each tap row is one run of bytes of the NHWC copy
                runs = kh * (1 if node.attrs["dilations"][1] == 1 else kw)
                ctx.emit("im2col_nhwc_u8", im2col_nhwc_u8, xg, geo, cols, writes=(cols,),
                         work=rows * (kp // 8 + runs * RUN_WORK))
                w_nk = w[g * cog:(g + 1) * cog].transpose(0, 2, 3, 1).reshape(cog, kh * kw * cg)
                src = cols
        pg = ctx.reshaped(ctx.view(pix, part, f"{node.name}.pixels[{g}]") if groups > 1 else pix, (rows, cog))
        channels = (g * cog, (g + 1) * cog)
        emit_int8_gemm(ctx, node, src, zp, w_nk, pg, epi.channel_slice(*channels) if groups > 1 else epi,
                       gemm_residual, "qconv2d", channels if groups > 1 else None, choice)
    if groups == 1 and not tail.stages and result_channels_last(ctx, result if result is not None else out_value):
        nhwc = ctx.reshaped(pix, (nb, ho, wo, co))
        ctx.view(nhwc, Transpose((0, 3, 1, 2)), out_value.name, out_value)
        ctx.channels_last[id(out_value)] = nhwc
        return
    out = ctx.out(out_value)
    tail_codes, tail_vecs, tail_params = epilogue_args(ctx, tail)
    res = residual_arg(ctx, tail, (nb, co, ho * wo))
    ctx.emit(kernel_label("pixels_to_nchw", tail), pixels_to_nchw, ctx.reshaped(pix, (groups, nb, ho * wo, cog)),
             ctx.reshaped(out, (nb, co, ho * wo)), tail_codes, tail_vecs, tail_params, res, writes=(out,),
             work=rows * co * (1 + len(tail.stages)))


@lowers("qlinear", "qmatmul")
def lower_qproduct_alone(ctx: LowerCtx, node: Node) -> None:
    """qlinear / qmatmul on their own."""
    lower_qproduct(ctx, node, empty_epilogue(node), node.outputs[0])


@lowers("qconv2d")
def lower_qconv_alone(ctx: LowerCtx, node: Node) -> None:
    """qconv2d on its own."""
    lower_qconv(ctx, node, empty_epilogue(node), node.outputs[0])


@lowers("qadd")
def lower_qadd(ctx: LowerCtx, node: Node) -> None:
    """qadd: one elementwise pass over both int8 tensors (dequantize, add, requantize)."""
    a, sa, za, b, sb, zb = node.inputs
    v = node.outputs[0]
    out = ctx.out(v)
    if v.type.numel == 0:
        return
    info = np.iinfo(v.type.dtype.np_dtype)
    flat = lambda slot: ctx.reshaped(slot, (v.type.numel,))  # noqa: E731
    ctx.emit("qadd", qadd, flat(ctx.arg(a)), ctx.arg(za), ctx.arg(sa), flat(ctx.arg(b)), ctx.arg(zb), ctx.arg(sb),
             Lit(float(node.attrs["out_scale"])), Lit(int(node.attrs["out_zero_point"])), Lit(int(info.min)),
             Lit(int(info.max)), flat(out), writes=(out,), work=v.type.numel)
