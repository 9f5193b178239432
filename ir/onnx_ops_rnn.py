"""ONNX's recurrent layers (RNN, GRU, LSTM) unrolled over their (static) sequence into IR ops.

Per direction, the input projection of every step is one `linear` over the whole sequence (X W^T + Wb + Rb);
each step then adds its recurrent product (H R^T, a `linear` on the constant R) and applies the gate equations of
ONNX's definition: RNN H = f(x + h), GRU (gates z, r, h; `linear_before_reset` either way), LSTM (gates i, o, f, c;
peepholes P, `input_forget`). `activations` (with their alpha / beta), `clip` (of every gate's input), `direction`
(forward, reverse, bidirectional), `layout` (0: [seq, batch, ...], 1: [batch, seq, ...]), initial states, and
`sequence_lens` (constant or at run time: past a batch row's length its state is kept and its output is zero, a
reverse pass starting at its last valid step) follow the operator. W, R, B and P are constants (a `linear` per
product, its weight packed once) or run-time values (a `matmul` per product); the sequence length is the graph's
static one. Outputs Y [seq, dirs, batch, hidden] (layout 1: [batch, seq, dirs, hidden]), Y_h and, for LSTM, Y_c
[dirs, batch, hidden] ([batch, dirs, hidden]).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .onnx_context import Handle, NodeContext, UnsupportedError, converter, describe, np_dtype, shape_of
from .onnx_ops_shape import slice_handle

Activation = Callable[[NodeContext, Handle, float, float], Handle]
"""An activation's IR ops on x with its alpha and beta (each 0.0 where the activation takes none)."""


def _f32(v: float) -> np.ndarray:
    return np.asarray(v, np.float32)


def _affine(ctx: NodeContext, x: Handle, alpha: float, beta: float) -> Handle:
    return ctx.op("add", ctx.op("mul", x, _f32(alpha)), _f32(beta))


def _leaky_relu(ctx: NodeContext, x: Handle, alpha: float, beta: float) -> Handle:
    return ctx.op("where", ctx.op("greater-equal", x, _f32(0.0)), x, ctx.op("mul", x, _f32(alpha)))


def _scaled_tanh(ctx: NodeContext, x: Handle, alpha: float, beta: float) -> Handle:
    return ctx.op("mul", ctx.op("tanh", ctx.op("mul", x, _f32(beta))), _f32(alpha))


def _softsign(ctx: NodeContext, x: Handle, alpha: float, beta: float) -> Handle:
    return ctx.op("div", x, ctx.op("add", ctx.op("abs", x), _f32(1.0)))


ACTIVATIONS: dict[str, tuple[Activation, float | None, float | None]] = {
    "sigmoid": (lambda ctx, x, a, b: ctx.op("sigmoid", x), None, None),
    "tanh": (lambda ctx, x, a, b: ctx.op("tanh", x), None, None),
    "relu": (lambda ctx, x, a, b: ctx.op("relu", x), None, None),
    "affine": (_affine, 1.0, 0.0),
    "leakyrelu": (_leaky_relu, 0.01, None),
    "hardsigmoid": (lambda ctx, x, a, b: ctx.op("clip", _affine(ctx, x, a, b), min=0.0, max=1.0), 0.2, 0.5),
    "scaledtanh": (_scaled_tanh, 1.0, 1.0),
    "softsign": (_softsign, None, None),
}
"""ONNX's recurrent activation name (lower case) -> (IR ops of it, default alpha, default beta)."""


@dataclass(frozen=True)
class Cell:
    """One recurrent layer kind: its gate count and its default activations."""

    gates: int
    activations: tuple[str, ...]


CELLS = {"RNN": Cell(1, ("Tanh",)), "GRU": Cell(3, ("Sigmoid", "Tanh")), "LSTM": Cell(4, ("Sigmoid", "Tanh", "Tanh"))}


def _activations(ctx: NodeContext, cell: Cell, dirs: int) -> list[list[Callable[[Handle], Handle]]]:
    """Per direction, the layer's activation functions (the node's or the defaults), as callables on handles."""
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in ctx.attr("activations", [])]
    per = len(cell.activations)
    if not names:
        names = list(cell.activations) * dirs
    if len(names) != per * dirs:
        raise ValueError(f"{len(names)} activations for {dirs} direction(s) of {per}: {names}")
    alphas = list(ctx.attr("activation_alpha", []))
    betas = list(ctx.attr("activation_beta", []))
    out: list[list[Callable[[Handle], Handle]]] = []
    for d in range(dirs):
        fns: list[Callable[[Handle], Handle]] = []
        for name in names[d * per:(d + 1) * per]:  # alphas / betas taken in order by those that have them
            if name.lower() not in ACTIVATIONS:
                raise UnsupportedError(f"activation {name!r} (supported: {', '.join(sorted(ACTIVATIONS))})")
            fn, a0, b0 = ACTIVATIONS[name.lower()]
            a = (float(alphas.pop(0)) if alphas else a0) if a0 is not None else 0.0
            b = (float(betas.pop(0)) if betas else b0) if b0 is not None else 0.0
            fns.append(lambda x, fn=fn, a=a, b=b: fn(ctx, x, a, b))
        out.append(fns)
    return out


def _product(ctx: NodeContext, x: Handle, w: Handle, bias: Handle | None = None) -> Handle:
    """x @ w^T (+ bias): a `linear` on a constant w, else a `matmul` with w transposed."""
    if isinstance(w, np.ndarray):
        return ctx.op("linear", x, w) if bias is None else ctx.op("linear", x, w, bias)
    y = ctx.op("matmul", x, ctx.transpose(w, [1, 0]))
    return y if bias is None else ctx.op("add", y, bias)


def _rows(ctx: NodeContext, x: Handle, r0: int, r1: int) -> Handle:
    """x[r0:r1] (along axis 0)."""
    return slice_handle(ctx, x, [r0], [r1], [0], [1])


def _gate(ctx: NodeContext, x: Handle, k: int, hidden: int) -> Handle:
    """Gate k's hidden columns of the gates' pre-activations x [batch, gates * hidden]."""
    return slice_handle(ctx, x, [k * hidden], [(k + 1) * hidden], [1], [1])


def _step_mask(ctx: NodeContext, lens: Handle | None, t: int, batch: int, seq: int) -> Handle | None:
    """[batch, 1] bool: which batch rows still run at step t (None: all of them)."""
    if lens is None:
        return None
    if isinstance(lens, np.ndarray):
        if np.all(lens >= seq):
            return None
        return (lens.astype(np.int64) > t).reshape(batch, 1)
    return ctx.op("greater", ctx.reshape(ctx.op("cast", lens, dtype="i64"), [batch, 1]), np.asarray(t, np.int64))


def _keep(ctx: NodeContext, mask: Handle | None, new: Handle, old: Handle) -> Handle:
    return new if mask is None else ctx.op("where", mask, new, old)


@dataclass
class Direction:
    """One direction's parameters: W [G*h, in], R [G*h, h], Wb and Rb [G*h], LSTM's peepholes [3*h] (None: none);
    constants or run-time values."""

    w: Handle
    r: Handle
    wb: Handle
    rb: Handle
    p: Handle | None


def _param(ctx: NodeContext, i: int, what: str, want: tuple[int, ...]) -> Handle:
    h = ctx.need(i, what)
    if np_dtype(h) != np.float32 or shape_of(h) != want:
        raise ValueError(f"{what} {describe(h)} must be f32{list(want)}")
    return h


def _directions(ctx: NodeContext, op: str, dirs: int, hidden: int, n_in: int) -> list[Direction]:
    g = CELLS[op].gates
    w = _param(ctx, 1, "W", (dirs, g * hidden, n_in))
    r = _param(ctx, 2, "R", (dirs, g * hidden, hidden))
    b = _param(ctx, 3, "B", (dirs, 2 * g * hidden)) if ctx.input(3) is not None else \
        np.zeros((dirs, 2 * g * hidden), np.float32)
    p = _param(ctx, 7, "P", (dirs, 3 * hidden)) if op == "LSTM" and ctx.input(7) is not None else None
    out = []
    for d in range(dirs):
        def one(x: Handle, n: int, d: int = d) -> Handle:
            return ctx.reshape(_rows(ctx, x, d, d + 1), list(shape_of(x)[1:]) if n < 0 else [n])
        bd = one(b, 2 * g * hidden)
        out.append(Direction(one(w, -1), one(r, -1), slice_handle(ctx, bd, [0], [g * hidden], [0], [1]),
                             slice_handle(ctx, bd, [g * hidden], [2 * g * hidden], [0], [1]),
                             None if p is None else one(p, 3 * hidden)))
    return out


def _initial(ctx: NodeContext, i: int, what: str, dirs: int, batch: int, hidden: int, layout: int) -> list[Handle]:
    """Per direction, the initial state [batch, hidden] (zeros when absent)."""
    h = ctx.input(i)
    if h is None:
        return [np.zeros((batch, hidden), np.float32)] * dirs
    want = (batch, dirs, hidden) if layout else (dirs, batch, hidden)
    if shape_of(h) != want:
        raise ValueError(f"{what} {describe(h)} must be {list(want)}")
    if layout:
        h = ctx.transpose(h, [1, 0, 2])
    return [ctx.reshape(slice_handle(ctx, h, [d], [d + 1], [0], [1]), [batch, hidden]) for d in range(dirs)]


def _peephole(ctx: NodeContext, pre: Handle, p: Handle | None, k: int, c: Handle, hidden: int) -> Handle:
    """pre + P_k * c: LSTM's peephole k (0: i, 1: o, 2: f) on the cell state c; pre when there is no P."""
    if p is None:
        return pre
    return ctx.op("add", pre, ctx.op("mul", slice_handle(ctx, p, [k * hidden], [(k + 1) * hidden], [0], [1]), c))


def _run_direction(ctx: NodeContext, op: str, xs: Handle, dp: Direction, fns: list[Callable[[Handle], Handle]],
                   h0: Handle, c0: Handle | None, lens: Handle | None, reverse: bool,
                   dims: tuple[int, int, int]) -> tuple[list[Handle], Handle, Handle | None]:
    """One direction over the sequence: (outputs per step in sequence order, last H, last C)."""
    seq, batch, hidden = dims
    clip = ctx.attr("clip", None)
    lin_before_reset = op == "GRU" and int(ctx.attr("linear_before_reset", 0))
    g = CELLS[op].gates
    if op == "GRU":  # Rb of the h gate stays apart: inside the reset product or added after it
        rb_h = slice_handle(ctx, dp.rb, [2 * hidden], [3 * hidden], [0], [1])
        bias = ctx.op("add", dp.wb, ctx.op("concat", slice_handle(ctx, dp.rb, [0], [2 * hidden], [0], [1]),
                                           np.zeros(hidden, np.float32), axis=0))
        r_zr, r_h = _rows(ctx, dp.r, 0, 2 * hidden), _rows(ctx, dp.r, 2 * hidden, 3 * hidden)
    else:
        bias = ctx.op("add", dp.wb, dp.rb)
    proj = ctx.reshape(_product(ctx, ctx.reshape(xs, [seq * batch, shape_of(xs)[2]]), dp.w, bias),
                       [seq, batch, g * hidden])

    def clipped(v: Handle) -> Handle:
        return v if clip is None else ctx.op("clip", v, min=-float(clip), max=float(clip))

    h, c = h0, c0
    ys: list[Handle] = [np.zeros(0)] * seq
    for t in (range(seq - 1, -1, -1) if reverse else range(seq)):
        x_t = ctx.reshape(slice_handle(ctx, proj, [t], [t + 1], [0], [1]), [batch, g * hidden])
        mask = _step_mask(ctx, lens, t, batch, seq)
        if op == "RNN":
            h_new = fns[0](clipped(ctx.op("add", x_t, _product(ctx, h, dp.r))))
        elif op == "GRU":
            zr = ctx.op("add", slice_handle(ctx, x_t, [0], [2 * hidden], [1], [1]), _product(ctx, h, r_zr))
            z, r = fns[0](clipped(_gate(ctx, zr, 0, hidden))), fns[0](clipped(_gate(ctx, zr, 1, hidden)))
            if lin_before_reset:
                rec = ctx.op("mul", r, _product(ctx, h, r_h, rb_h))
            else:
                rec = _product(ctx, ctx.op("mul", r, h), r_h, rb_h)
            cand = fns[1](clipped(ctx.op("add", _gate(ctx, x_t, 2, hidden), rec)))
            h_new = ctx.op("add", ctx.op("mul", ctx.op("sub", _f32(1.0), z), cand), ctx.op("mul", z, h))
        else:
            gates = ctx.op("add", x_t, _product(ctx, h, dp.r))
            i_pre, o_pre, f_pre, c_pre = (_gate(ctx, gates, k, hidden) for k in range(4))
            i = fns[0](clipped(_peephole(ctx, i_pre, dp.p, 0, c, hidden)))
            f = ctx.op("sub", _f32(1.0), i) if int(ctx.attr("input_forget", 0)) else \
                fns[0](clipped(_peephole(ctx, f_pre, dp.p, 2, c, hidden)))
            c_new = ctx.op("add", ctx.op("mul", f, c), ctx.op("mul", i, fns[1](clipped(c_pre))))
            o = fns[0](clipped(_peephole(ctx, o_pre, dp.p, 1, c_new, hidden)))
            h_new = ctx.op("mul", o, fns[2](c_new))
            c = _keep(ctx, mask, c_new, c)
        ys[t] = h_new if mask is None else ctx.op("where", mask, h_new, np.zeros((batch, hidden), np.float32))
        h = _keep(ctx, mask, h_new, h)
    return ys, h, c


@converter("RNN", "GRU", "LSTM")
def _recurrent(ctx: NodeContext) -> list[Handle | None]:
    op = ctx.node.op_type
    x = ctx.need(0, "X")
    if np_dtype(x) != np.float32 or len(shape_of(x)) != 3:
        raise UnsupportedError(f"{op} of {describe(x)}: a 3-D float32 input only")
    layout = int(ctx.attr("layout", 0))
    xs = ctx.transpose(x, [1, 0, 2]) if layout else x
    seq, batch, n_in = shape_of(xs)
    direction = ctx.attr("direction", "forward")
    direction = direction.decode() if isinstance(direction, bytes) else str(direction)
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ValueError(f"direction {direction!r} (forward, reverse or bidirectional)")
    dirs = 2 if direction == "bidirectional" else 1
    r_shape = shape_of(ctx.need(2, "R"))
    hidden = int(ctx.attr("hidden_size", r_shape[-1]))
    params = _directions(ctx, op, dirs, hidden, n_in)
    fns = _activations(ctx, CELLS[op], dirs)
    lens = ctx.input(4)
    if lens is not None and shape_of(lens) != (batch,):
        raise ValueError(f"sequence_lens {describe(lens)} must be [{batch}]")
    h0 = _initial(ctx, 5, "initial_h", dirs, batch, hidden, layout)
    c0 = _initial(ctx, 6, "initial_c", dirs, batch, hidden, layout) if op == "LSTM" else [None] * dirs
    ys, hs, cs = [], [], []
    for d in range(dirs):
        y, h, c = _run_direction(ctx, op, xs, params[d], fns[d], h0[d], c0[d], lens,
                                 direction == "reverse" or d == 1, (seq, batch, hidden))
        ys.append(ctx.op("concat", *[ctx.reshape(v, [1, 1, batch, hidden]) for v in y], axis=0) if seq > 1
                  else ctx.reshape(y[0], [1, 1, batch, hidden]))
        hs.append(ctx.reshape(h, [1, batch, hidden]))
        cs.append(None if c is None else ctx.reshape(c, [1, batch, hidden]))
    y_all = ys[0] if dirs == 1 else ctx.op("concat", *ys, axis=1)
    y_h = hs[0] if dirs == 1 else ctx.op("concat", *hs, axis=0)
    if layout:
        y_all, y_h = ctx.transpose(y_all, [2, 0, 1, 3]), ctx.transpose(y_h, [1, 0, 2])
    outs: list[Handle | None] = [y_all, y_h]
    if op == "LSTM":
        cells = [h for h in cs if h is not None]
        y_c = cells[0] if dirs == 1 else ctx.op("concat", *cells, axis=0)
        outs.append(ctx.transpose(y_c, [1, 0, 2]) if layout else y_c)
    return outs
