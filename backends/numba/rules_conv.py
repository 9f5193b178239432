"""Lowering of conv2d, alone or with its epilogue: shifted GEMMs on the micro-kernel, im2col + BLAS, or loops."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from ...ir.graph import Node, Value
from ...ir.ops.nn import conv_out
from ..cost.sparse_kernels import DENSE, KernelChoice
from . import image_split as cut
from . import k_microkernel
from .blocked import BlockedValue, blocked_halo
from .epilogue import Epilogue, empty_epilogue
from .geometry import B_IN_PLACE, B_MERGED, B_PACKED, SH, SW, window_geometry
from .jit import cdiv
from .k_conv import conv_direct, conv_gemm
from .k_conv_blocked import (
    BLOCKED_SLACK,
    blocked_shape,
    blocked_tables,
    blocked_to_nchw,
    conv_blocked,
    panel_width,
    plane_image_floats,
    row_scratch_floats,
    tile_epilogue,
)
from .k_conv_pixels import (
    MAX_POOL_BLOCK_PIXELS,
    conv_pixels,
    merged_row_offsets,
    pixel_ext_floats,
    pool_block_pixels,
    pooled_blocks,
    reads_in_place,
    store_block_pixels,
)
from .k_conv_shift import KC_CONV, conv_shift, ext_floats, pack_conv_weights, padded_image_floats
from .k_phase_planes import conv_depthwise, plane_scratch
from .matrix_lowering import FLOPS_PER_UNIT, constant_data, epilogue_args, kernel_label, own_bias, residual_arg
from .plan import Lit, LowerCtx
from .registry import lowers
from .rules_elementwise import emit_binary
from .rules_shape import Index
from .rules_sparse import layer_choice, lower_sparse_conv, record_choice
from .ukernel_epilogue_ir import EPI_NONE


def conv_tiles(n: int, co: int, p: int, threads: int, parallel: bool) -> tuple[int, int]:
    """(pixel block, channel block) of the parallel convolution: about two work items per thread."""
    if not parallel or threads <= 1:
        return max(p, 1), max(co, 1)
    target = 2 * threads
    gp = min(max(1, p // 64), max(1, cdiv(target, n)))
    pb = cdiv(p, gp)
    gc = max(1, target // (n * cdiv(p, pb)))
    return max(pb, 1), max(cdiv(co, gc), 1)


MAX_TILE_PIXELS = 1024
"""Most (wide) output pixels per work item of conv_shift once it has more than one row: C tile in L2."""


def _splits(total: int, first: int) -> Iterator[tuple[int, int]]:
    """(groups, block size) for each way of cutting `total` into equal blocks, from `first` groups up.

    A block size is given once, with the number of groups it really makes (ceil(total / block)).
    """
    for groups in range(max(first, 1), total + 1):
        block = cdiv(total, groups)
        if groups == 1 or cdiv(total, block) == groups:
            yield groups, block


def shift_tiles(n: int, co: int, ho: int, wq: int, threads: int, parallel: bool, pack: bool) -> tuple[int, int]:
    """(output rows, output channels) per work item of conv_shift, minimizing the busiest thread's micro-tiles.

    A work item of rb rows and cb channels computes ceil(rb*wq / NR) x ceil(cb / MR) micro-tiles per
    K step (whole micro-tiles: a ragged edge costs a full one), plus one B panel pack per pixel panel
    when `pack`; items go round-robin to `threads`. Ties go to fewer items.
    """
    mr, nr = k_microkernel.MR, k_microkernel.NR
    panels = cdiv(co, mr)
    cb_max = min(panels, 22)
    if not parallel or threads <= 1:
        threads = 1
    best = (1 << 62, 1 << 62, max(ho, 1), cb_max)  # (busiest thread's micro-tiles, items, rb, cb in panels)
    gr_min = max(1, min(ho, cdiv(ho * wq, MAX_TILE_PIXELS)))
    for gr, rb in _splits(max(ho, 1), gr_min):
        for gc, cbp in _splits(panels, cdiv(panels, cb_max)):
            items = n * gr * gc
            cost = cdiv(items, threads) * cdiv(rb * wq, nr) * (cbp + int(pack))
            key = (cost, items, rb, cbp)
            if key[:2] < best[:2]:
                best = key
            if items >= 4 * threads:
                break
    return best[2], best[3] * mr


def pixel_tiles(pixels: int, co: int, threads: int, parallel: bool) -> tuple[int, int]:
    """(output pixels, output channels) per work item of conv_pixels, minimizing the busiest thread's micro-tiles.

    Pixel blocks are whole NR panels of the pixels of all images in a row, at most MAX_TILE_PIXELS;
    each panel is packed once per channel block. Ties go to fewer items.
    """
    mr, nr = k_microkernel.MR, k_microkernel.NR
    panels, pix_panels = cdiv(co, mr), max(cdiv(pixels, nr), 1)
    cb_max = min(panels, 22)
    threads = threads if parallel and threads > 1 else 1
    best = (1 << 62, 1 << 62, pix_panels, cb_max)  # (busiest thread's micro-tiles, items, pixel panels, cb panels)
    for gp, pbp in _splits(pix_panels, cdiv(pix_panels, MAX_TILE_PIXELS // nr)):
        for gc, cbp in _splits(panels, cdiv(panels, cb_max)):
            items = gp * gc
            key = (cdiv(items, threads) * pbp * (cbp + 1), items, pbp, cbp)
            if key[:2] < best[:2]:
                best = key
            if items >= 4 * threads:
                break
    return best[2] * nr, best[3] * mr


def _emit_conv_pixels(ctx: LowerCtx, node: Node, src: int, w: np.ndarray, o3: int, out_hw: tuple[int, int],
                      epi: Epilogue, res: int, work: int, phases: tuple[int, int, int, int]) -> None:
    """A convolution with few input channels: im2col per B panel over real output pixels, on the micro-kernel."""
    nb, ci = ctx.slots[src].shape[:2]
    co, _, kh, kw = w.shape
    ho, wo = out_hw
    sh, sw, hq, wq = phases
    in_place = reads_in_place(wo)
    # besides the flops: phase planes and the epilogue's copy touch every pixel once, packed B panels
    # every (tap, channel, pixel); with few channels (K of 27 for an RGB 3x3) these dominate
    work += nb * (ci * sh * sw * hq * wq + co * ho * wo + (0 if in_place else kh * kw * ci * ho * wo))
    par = ctx.parallel(work)
    pb, cb = pixel_tiles(nb * ho * wo, co, ctx.threads, par)
    sb = store_block_pixels(pb, cb)
    if epi.pool_2x2:  # blocks of whole pairs of output rows
        pb, sb = pooled_blocks(pb, sb, wo, nb * ho * wo)
    items = cdiv(nb * ho * wo, pb) * cdiv(co, cb)
    f32 = np.dtype(np.float32)
    packed = ctx.const(pack_conv_weights(np.ascontiguousarray(w, np.float32), merged=True), f"{node.name}.packed")
    xpad = ctx.buffer((nb * padded_image_floats(ci, sh, sw, hq, wq),), f32, f"{node.name}.phases")
    ext = ctx.buffer((pixel_ext_floats(items, cb, sb),), f32, f"{node.name}.tiles")
    bpan = ctx.buffer((1 if in_place else items * KC_CONV * k_microkernel.NR,), f32, f"{node.name}.panel")
    rows = ctx.const(merged_row_offsets(ci, kh, kw, (sh, sw), tuple(node.attrs["dilations"]), hq, wq),
                     f"{node.name}.rows")
    codes, vecs, params = epilogue_args(ctx, epi)
    geo = window_geometry(node, wo, b_panels=B_IN_PLACE if in_place else B_PACKED, pool_2x2=epi.pool_2x2)
    ctx.emit(kernel_label("conv_uk_pixels" if in_place else "conv_uk_im2col", epi), conv_pixels, src, packed, o3,
             xpad, ext, bpan, rows, Lit(geo), Lit(hq), Lit(wq), Lit(pb), Lit(cb), Lit(sb), codes, vecs, params, res,
             writes=(o3, xpad, ext, bpan), work=work)


def _emit_conv_shift(ctx: LowerCtx, node: Node, src: int, w: np.ndarray, o3: int, out_hw: tuple[int, int],
                     epi: Epilogue, res: int, work: int, pointwise: bool) -> None:
    """A convolution as shifted GEMMs on the micro-kernel (weights packed now)."""
    a = node.attrs
    nb, ci, h, w_in = ctx.slots[src].shape
    co = w.shape[0]
    ho, wo = out_hw
    pt, pl, pb, pr = a["pads"]
    sh, sw = (1, 1) if pointwise else a["strides"]
    hq, wq = (h, w_in) if pointwise else (cdiv(h + pt + pb, sh), cdiv(w_in + pl + pr, sw))
    # few input channels per tap merge the taps into one K (a K of Ci alone would waste the micro-kernel);
    # many output channels reuse each B panel, worth packing
    mode = (B_IN_PLACE if pointwise else B_MERGED if ci < MERGED_TAPS_BELOW_CHANNELS
            else B_PACKED if co >= 192 else B_IN_PLACE)
    if mode == B_MERGED:
        _emit_conv_pixels(ctx, node, src, w, o3, out_hw, epi, res, work, (sh, sw, hq, wq))
        return
    kh, kw = w.shape[2], w.shape[3]
    # besides the flops: phase planes and the epilogue's copy touch every pixel once, packed B panels
    # every (tap, channel, wide pixel)
    if not pointwise:
        work += nb * (ci * sh * sw * hq * wq + co * ho * wo + (kh * kw * ci * ho * wq if mode == B_PACKED else 0))
    par = ctx.parallel(work)
    rb, cb = shift_tiles(nb, co, ho, wq, ctx.threads, par, mode == B_PACKED)
    if epi.pool_2x2:  # whole pairs of output rows per tile
        rb = min(ho, rb + rb % 2)
    items = nb * cdiv(ho, rb) * cdiv(co, cb)
    f32 = np.dtype(np.float32)
    packed = ctx.const(pack_conv_weights(np.ascontiguousarray(w, np.float32), merged=False),
                       f"{node.name}.packed")
    if pointwise:  # the kernel reads the input in place of phase planes
        xpad, ext = ctx.buffer((1,), f32, f"{node.name}.no_phases"), ctx.flat_of(o3)
    else:
        xpad = ctx.buffer((nb * padded_image_floats(ci, sh, sw, hq, wq),), f32, f"{node.name}.phases")
        ext = ctx.buffer((ext_floats(items, rb, wq, cb),), f32, f"{node.name}.wide")
    ctmp = ctx.buffer((items * k_microkernel.NR * (k_microkernel.MR + KC_CONV),), f32, f"{node.name}.tile")
    codes, vecs, params = epilogue_args(ctx, epi)
    geo = window_geometry(node, wo, pointwise, mode, pool_2x2=epi.pool_2x2)
    if pointwise:  # a strided 1x1 convolution reads its subsampled input at stride 1
        geo[SH] = geo[SW] = 1
    offsets = ctx.buffer((items * KC_CONV,), np.dtype(np.int64), f"{node.name}.rows")
    ctx.emit(kernel_label("conv_uk", epi), conv_shift, src, packed, o3, xpad, ext, ctmp, offsets, Lit(geo), Lit(hq),
             Lit(wq), Lit(rb), Lit(cb), codes, vecs, params, res, writes=(o3, xpad, ext, ctmp, offsets), work=work)


def _emit_depthwise(ctx: LowerCtx, node: Node, src: int, w_data: np.ndarray, o3: int, ho: int, epi: Epilogue,
                    res: int) -> None:
    """A depthwise conv2d (one input channel per group, any number of output channels each) on
    k_phase_planes.conv_depthwise."""
    nb, co = ctx.slots[o3].shape[:2]
    geo = window_geometry(node, ctx.slots[o3].shape[2] // max(ho, 1))
    wt = ctx.const(np.ascontiguousarray(w_data.reshape(co, -1), np.float32), f"{node.inputs[1].name}.taps")
    per_channel = plane_scratch(geo, ho)
    scratch = ctx.buffer((nb * co, per_channel), np.dtype(np.float32), f"{node.name}.phases")
    # elements touched, not flops: each tap is a run over the whole wide output plane
    work = nb * co * (per_channel + w_data[0].size * (per_channel - ctx.slots[o3].shape[2]))
    codes, vecs, params = epilogue_args(ctx, epi)
    ctx.emit(kernel_label("conv_depthwise", epi), conv_depthwise, src, wt, o3, Lit(geo), scratch, codes, vecs, params,
             res, writes=(o3, scratch), work=work)


def _conv_path(ctx: LowerCtx, node: Node, w_data: np.ndarray | None, choice: KernelChoice | None) -> str:
    """Which kernel lower_conv runs `node` on: 'sparse', 'pixels' (conv_pixels: taps merged into one K, few input
    channels), 'shift' (conv_shift), 'depthwise', 'gemm' (im2col + BLAS) or 'direct'."""
    co, cg, kh, kw = node.inputs[1].type.shape
    groups, ci = node.attrs["groups"], node.inputs[0].type.shape[1]
    is_float = node.outputs[0].type.dtype.name == "f32"
    if choice is not None and choice.kernel != DENSE:
        return "sparse"
    if is_float and groups == 1 and w_data is not None and k_microkernel.AVAILABLE:
        one_by_one = kh == kw == 1 and not any(node.attrs["pads"])
        return "pixels" if not one_by_one and ci < MERGED_TAPS_BELOW_CHANNELS else "shift"
    if is_float and cg == 1 and groups > 1 and w_data is not None:
        return "depthwise"
    return "gemm" if is_float and (groups == 1 or cg >= 4) else "direct"


MERGED_TAPS_BELOW_CHANNELS = 64
"""Convolutions with fewer input channels than this merge their (tap, channel) pairs into one K (conv_pixels)."""


def _weights(ctx: LowerCtx, node: Node) -> tuple[np.ndarray | None, KernelChoice | None]:
    """The convolution's weight when known at compile time, and its sparse kernel choice when it is a constant."""
    wv = node.inputs[1]
    w_data = constant_data(ctx, wv)  # a constant, or a weight dequantized at compile time
    choice = layer_choice(node, w_data.reshape(wv.type.shape[0], -1)) if wv.is_constant else None
    return w_data, choice


def pools_in_kernel(ctx: LowerCtx, node: Node) -> bool:
    """Whether the kernel of conv2d `node` can max-pool its tiles in 2x2 windows (a region's pool tail), for an even
    output height and width: conv_pixels does where its pooled C tile (two output rows per image) stays small,
    conv_shift unless the convolution is 1x1 (written straight into the output)."""
    _, _, ho, wo = node.outputs[0].type.shape
    if ho % 2 or wo % 2 or not (len(node.inputs) < 3 or node.inputs[2].is_constant):
        return False
    path = _conv_path(ctx, node, *_weights(ctx, node))
    one_by_one = node.inputs[1].type.shape[2:] == (1, 1) and not any(node.attrs["pads"])
    return ((path == "pixels" and pool_block_pixels(wo) <= MAX_POOL_BLOCK_PIXELS)
            or (path == "shift" and not one_by_one))


def lower_conv(ctx: LowerCtx, node: Node, epi: Epilogue, out_value: Value, halo: int | None = None) -> None:
    """conv2d with epilogue `epi` writing `out_value` (pooled when `epi.pool_2x2`, see pools_in_kernel): in the
    blocked-channel layout with a border of `halo` zero pixels when given (blocked.blocked_halo), else shifted
    GEMMs on the micro-kernel (f32, groups 1, constant weights), channel blocks laid out channels-last (f32
    depthwise, constant weights), tiled im2col + BLAS per group (f32, at least 4 input channels per group) or
    direct loops."""
    x, wv = node.inputs[0], node.inputs[1]
    epi, bias_value = own_bias(node, epi)
    if halo is not None:
        assert bias_value is None  # blocked_halo takes only constant biases
        _emit_conv_blocked(ctx, node, epi, out_value, halo)
        return
    a = node.attrs
    nb, ci, h, w_in = x.type.shape
    co, cg, kh, kw = wv.type.shape
    ho = conv_out(h, kh, a["strides"][0], a["pads"][0], a["pads"][2], a["dilations"][0])
    wo = conv_out(w_in, kw, a["strides"][1], a["pads"][1], a["pads"][3], a["dilations"][1])
    p = ho * wo
    out = ctx.out(out_value)
    if out_value.type.numel == 0:
        return
    w_data, choice = _weights(ctx, node)
    path = _conv_path(ctx, node, w_data, choice)
    if epi.pool_2x2 and not pools_in_kernel(ctx, node):
        raise ctx.fail("this convolution's kernel does not pool its tiles (check pools_in_kernel first)")
    o3 = ctx.reshaped(out, (nb, co, p // 4 if epi.pool_2x2 else p))
    res = residual_arg(ctx, epi, (nb, co, p))
    is_float = out_value.type.dtype.name == "f32"
    if epi.stages and not is_float:
        raise ctx.fail("epilogues need f32")
    work = 2 * nb * co * p * cg * kh * kw // FLOPS_PER_UNIT
    one_by_one = kh == kw == 1 and not any(a["pads"])
    src = ctx.arg(x)
    groups = a["groups"]
    first = len(ctx.steps)
    if path == "sparse":
        lower_sparse_conv(ctx, node, choice, src, o3, (ho, wo), epi)
    elif path in ("pixels", "shift"):
        assert w_data is not None
        if one_by_one and tuple(a["strides"]) != (1, 1):  # reads every s-th pixel: copy those, then pointwise
            sh, sw = a["strides"]
            sub = ctx.view(src, Index((slice(None), slice(None), slice(0, sh * (ho - 1) + 1, sh),
                                       slice(0, sw * (wo - 1) + 1, sw))), f"{node.name}.subsample")
            src = ctx.arg(sub)
        _emit_conv_shift(ctx, node, src, w_data, o3, (ho, wo), epi, res, work, one_by_one)
    elif path == "depthwise":
        assert w_data is not None
        _emit_depthwise(ctx, node, src, w_data, o3, ho, epi, res)
    elif path == "gemm":
        codes, vecs, params = epilogue_args(ctx, epi)
        rows = cg * kh * kw
        wm = (ctx.const(w_data.reshape(co, rows), f"{wv.name}.mat") if w_data is not None
              else ctx.reshaped(ctx.arg(wv), (co, rows)))
        pointwise = one_by_one and tuple(a["strides"]) == (1, 1)
        par = ctx.parallel(work, needs_blas=True)
        pb, cb = conv_tiles(nb * groups, co // groups, p, ctx.threads, par)
        items = nb * groups * cdiv(p, pb) * cdiv(co // groups, cb)
        scratch = ctx.buffer((0 if pointwise else items * rows * pb,), np.dtype(np.float32), f"{node.name}.cols")
        ctx.emit(kernel_label("conv_gemm", epi), conv_gemm, src, wm, o3, scratch,
                 Lit(window_geometry(node, wo, pointwise)), Lit(groups), Lit(pb), Lit(cb), codes, vecs, params, res,
                 writes=(out, scratch), work=work, needs_blas=True)
    else:
        codes, vecs, params = epilogue_args(ctx, epi)
        wslot = ctx.writable_const(wv) if wv.is_constant else ctx.arg(wv)
        zero = np.zeros(1, out_value.type.dtype.np_dtype)[0]
        ctx.emit(kernel_label("conv_direct", epi), conv_direct, src, wslot, o3, Lit(window_geometry(node, wo)),
                 Lit(a["groups"]), Lit(zero), codes, vecs, params, res, writes=(out,), work=work)
    if choice is not None:
        record_choice(ctx, node, choice, first)
    if bias_value is not None:
        bshape = (1, co, 1, 1)
        emit_binary(ctx, "add", out, ctx.reshaped(ctx.arg(bias_value), bshape), out)


def blocked_tiles(units: int, rows: int, threads: int, parallel: bool, pool: bool) -> int:
    """Output rows per work item of conv_blocked, whose items are (image, panel of NR channels) units split into
    row blocks: whole images when the units share out evenly among the threads, else about two blocks per thread
    (even blocks when pooling)."""
    groups = 1
    if parallel and threads > 1 and (units < threads or units % threads):
        groups = min(rows, cdiv(2 * threads, units))
    rb = cdiv(rows, groups)
    return rb + rb % 2 if pool else rb


def _emit_conv_blocked(ctx: LowerCtx, node: Node, epi: Epilogue, out_value: Value, halo: int) -> None:
    """A stride-1 convolution writing the blocked-channel layout (conv_blocked) from a blocked input, read in place,
    or from an NCHW one copied into zero-padded planes; `out_value` is then held blocked (LowerCtx.blocked). With
    `epi.mean`, `out_value` is the images' channel means [N, Co, 1, 1], which the kernel writes: the blocked product
    is a buffer of this step alone."""
    x = node.inputs[0]
    w = constant_data(ctx, node.inputs[1])
    nb, ci, h, w_in = x.type.shape
    co, _, kh, kw = w.shape
    a = node.attrs
    pt, pl, pb, pr = a["pads"]
    ho = conv_out(h, kh, 1, pt, pb, a["dilations"][0])
    wo = conv_out(w_in, kw, 1, pl, pr, a["dilations"][1])
    f32 = np.dtype(np.float32)
    source = ctx.blocked.get(id(x))
    if source is not None:
        hq, wq = h + 2 * source.halo, w_in + 2 * source.halo
        x4, xpad = ctx.const(np.zeros((1, 1, 1, 1), f32), "no_nchw"), ctx.buffer((1,), f32, f"{node.name}.no_planes")
        xb = source.flat
    else:
        hq, wq = h + pt + pb, w_in + pl + pr
        x4 = ctx.arg(x)
        xpad = ctx.buffer((nb * plane_image_floats(ci, hq, wq),), f32, f"{node.name}.planes")
        xb = ctx.const(np.zeros(0, f32), "no_blocks")
    offs, packed = blocked_tables(np.ascontiguousarray(w, np.float32), tuple(a["dilations"]), source is not None,
                                  hq, wq)
    rows, cols = (ho // 2, wo // 2) if epi.pool_2x2 else (ho, wo)
    shape = blocked_shape(nb, co, rows, cols, halo)
    numel = math.prod(shape)
    name = f"{node.name}.product" if epi.mean else out_value.name
    flat = ctx.buffer((numel + BLOCKED_SLACK,), f32, f"{name}.blocked")
    view = ctx.reshaped(ctx.view(flat, Index((slice(0, numel),)), f"{name}.blocked.inside"), shape)
    work = 2 * nb * co * ho * wo * ci * kh * kw // FLOPS_PER_UNIT + nb * (ci * hq * wq + co * ho * wo)
    pw = panel_width(co)
    panels = cdiv(co, pw)
    rb = ho if epi.mean else blocked_tiles(nb * panels, ho, ctx.threads, ctx.parallel(work), epi.pool_2x2)
    if epi.mean:  # whole images per item: each averages its own channels
        means = ctx.out(out_value)
        means_arg, writes = ctx.reshaped(means, (nb, co)), (flat, xpad, means)
    else:
        means_arg = ctx.buffer((0, 1), f32, f"{node.name}.no_means")  # writable: the kernel is typed to write it
        writes = (flat, xpad, means_arg)
    items = nb * panels * cdiv(ho, rb)
    scratch_floats = row_scratch_floats(items, wo)  # items image by image: nb equal shares
    scratch = ctx.buffer((scratch_floats,), f32, f"{node.name}.rows")
    mode, table = tile_epilogue(epi.codes(), epi.vectors(), epi.params(), co)
    codes, vecs, params = epilogue_args(ctx, epi if mode == EPI_NONE else replace(epi, stages=[]))
    geo = window_geometry(node, wo, pool_2x2=epi.pool_2x2)
    ap = ctx.const(packed.reshape(-1), f"{node.name}.packed")
    # on a range of images: its NCHW input or blocked input, planes, product, scratch rows and means (cuts below)
    blocks_in = source is not None
    per_image = (cut.UNUSED if blocks_in else cut.LEADING, cut.UNUSED if blocks_in else cut.flat(
        plane_image_floats(ci, hq, wq)), cut.flat(cdiv(ci, k_microkernel.VW) * hq * wq * k_microkernel.VW,
                                                  BLOCKED_SLACK) if blocks_in else cut.UNUSED,
        cut.SHARED, cut.SHARED, cut.LEADING, cut.flat(scratch_floats // nb), *[cut.SHARED] * 11,
        cut.LEADING if epi.mean else cut.UNUSED)
    ctx.emit(kernel_label("conv_blocked", epi), conv_blocked, x4, xpad, xb, ap, ctx.const(offs, f"{node.name}.offsets"),
             view, scratch, Lit(geo), Lit(hq), Lit(wq), Lit(rb), Lit(halo), Lit(pw // k_microkernel.VW),
             ctx.const(table.reshape(-1), "epilogue"), Lit(mode), codes, vecs, params, means_arg,
             writes=(*writes, scratch), work=work, images=nb, cuts=per_image)
    if epi.mean:
        return
    held = BlockedValue(flat, view, halo)
    ctx.blocked[id(out_value)] = held
    ctx.defer(out_value, lambda: nchw_copy(ctx, out_value, held))


def nchw_copy(ctx: LowerCtx, v: Value, held: BlockedValue) -> int:
    """The NCHW slot of blocked value `v`, copied from its blocks (for a reader that does not take the blocked layout,
    or as a graph output: then a fresh array per run, as any output)."""
    out = ctx.out(v)
    ctx.emit("blocked_to_nchw", blocked_to_nchw, held.view, Lit(held.halo), out, writes=(out,), work=v.type.numel,
             images=v.type.shape[0], cuts=(cut.LEADING, cut.SHARED, cut.LEADING))
    return out


@lowers("conv2d")
def lower_conv_alone(ctx: LowerCtx, node: Node) -> None:
    """A conv2d on its own (its constant bias still runs in the kernel's epilogue)."""
    lower_conv(ctx, node, empty_epilogue(node), node.outputs[0], blocked_halo(ctx, node))
