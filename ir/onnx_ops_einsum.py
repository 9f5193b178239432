"""ONNX Einsum as transposes, reshapes, reduce-sums and batched matmuls (the usual lowering of contractions to GEMMs).

Operands are folded left to right. A label that only one operand carries and that neither the output nor a later
operand needs is summed out first (reduce-sum). A pair then becomes one batched matmul: labels in both operands
and still needed are the batch, labels in both and no longer needed are contracted, the rest are the rows or the
columns; each operand is transposed to [batch, rows or columns, contracted] and reshaped to three axes. The
result is transposed to the output's label order. Ellipses become anonymous labels. A label repeated within one
operand takes that operand's diagonal first (a gather of the flattened repeated axes). Refused with the reason:
batch labels of different sizes (broadcasting), non-float inputs.
"""

from __future__ import annotations

import math

import numpy as np

from .onnx_context import Handle, NodeContext, UnsupportedError, converter, describe, np_dtype, shape_of


def _terms(equation: str, ranks: list[int]) -> tuple[list[str], str]:
    """The input label strings and the output's, each ellipsis spelled out as labels no equation can use."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    inputs = lhs.split(",")
    if len(inputs) != len(ranks):
        raise ValueError(f"equation {equation!r} names {len(inputs)} operands, the node has {len(ranks)}")
    spare = [chr(c) for c in range(0x100, 0x100 + 26)]  # labels no equation uses: one per ellipsis axis
    widest = 0
    for term, rank in zip(inputs, ranks):
        if "..." in term:
            widest = max(widest, rank - (len(term) - 3))
    ell = "".join(spare[:widest])
    out_terms = []
    for term, rank in zip(inputs, ranks):
        if "..." in term:
            n = rank - (len(term) - 3)
            term = term.replace("...", ell[widest - n:])
        if len(term) != rank:
            raise ValueError(f"einsum term {term!r} has {len(term)} labels for an operand of rank {rank}")
        out_terms.append(term)
    if not arrow:  # implicit output: the labels used once, alphabetically, after the ellipsis
        counts = {c: sum(t.count(c) for t in out_terms) for c in set("".join(out_terms))}
        rhs = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    else:
        rhs = rhs.replace("...", ell)
    return out_terms, rhs


def _diagonal(ctx: NodeContext, x: Handle, term: str, equation: str) -> tuple[Handle, str]:
    """x with each label that its term repeats taken along the diagonal: the repeated axes moved last, flattened,
    and the flat positions i * (1 + d + ... + d^(k-1)) gathered, one axis of that label in their place."""
    while len(set(term)) != len(term):
        c = next(label for label in term if term.count(label) > 1)
        dims = {shape_of(x)[i] for i, label in enumerate(term) if label == c}
        if len(dims) != 1:
            raise ValueError(f"Einsum {equation!r}: label {c!r} repeats with sizes {sorted(dims)}")
        d, k = dims.pop(), term.count(c)
        rest = "".join(label for label in term if label != c)
        order = [i for i, label in enumerate(term) if label != c] + [i for i, label in enumerate(term) if label == c]
        moved = x if order == list(range(len(term))) else ctx.op("transpose", x, perm=order)
        flat = ctx.reshape(moved, tuple(shape_of(moved)[:len(rest)]) + (d ** k,))
        step = sum(d ** j for j in range(k))
        x = ctx.op("gather", flat, np.arange(d, dtype=np.int64) * step, axis=len(rest))
        term = rest + c
    return x, term


def _sum_out(ctx: NodeContext, x: Handle, term: str, keep: set[str]) -> tuple[Handle, str]:
    """x with the labels not in `keep` summed out."""
    axes = [i for i, c in enumerate(term) if c not in keep]
    if not axes:
        return x, term
    return ctx.op("reduce-sum", x, axes=axes, keepdims=False), "".join(c for c in term if c in keep)


def _permute(ctx: NodeContext, x: Handle, term: str, order: str) -> Handle:
    perm = [term.index(c) for c in order]
    return x if perm == list(range(len(perm))) else ctx.op("transpose", x, perm=perm)


def _contract(ctx: NodeContext, a: Handle, ta: str, b: Handle, tb: str, needed: set[str],
              sizes: dict[str, int]) -> tuple[Handle, str]:
    """a (labels ta) times b (labels tb), keeping the labels in `needed`: one batched matmul."""
    batch = [c for c in ta if c in tb and c in needed]
    contracted = [c for c in ta if c in tb and c not in needed]
    rows = [c for c in ta if c not in tb]
    cols = [c for c in tb if c not in ta]
    size = lambda labels: math.prod(sizes[c] for c in labels)  # noqa: E731
    nb, m, k, n = size(batch), size(rows), size(contracted), size(cols)
    a3 = ctx.reshape(_permute(ctx, a, ta, "".join(batch + rows + contracted)), (nb, m, k))
    b3 = ctx.reshape(_permute(ctx, b, tb, "".join(batch + contracted + cols)), (nb, k, n))
    y = ctx.op("matmul", a3, b3)
    term = "".join(batch + rows + cols)
    return ctx.reshape(y, [sizes[c] for c in term]), term


@converter("Einsum")
def _einsum(ctx: NodeContext) -> list[Handle | None]:
    ops = [ctx.need(i, f"input {i}") for i in range(len(ctx.node.input))]
    for h in ops:
        if np_dtype(h).kind != "f" and np_dtype(h).name != "bfloat16":
            raise UnsupportedError(f"Einsum of {describe(h)}: floating point only")
    equation = str(ctx.attr("equation"))
    terms, out = _terms(equation, [len(shape_of(h)) for h in ops])
    sizes: dict[str, int] = {}
    for i, (h, term) in enumerate(zip(ops, terms)):
        ops[i], terms[i] = _diagonal(ctx, h, term, equation)
    for h, term in zip(ops, terms):
        for c, d in zip(term, shape_of(h)):
            if sizes.setdefault(c, d) != d:
                raise UnsupportedError(f"Einsum {equation!r}: a label has sizes {sizes[c]} and {d} (broadcasting)")
    acc, acc_term = None, ""
    for i, (h, term) in enumerate(zip(ops, terms)):
        later = set(out).union(*terms[i + 1:])
        h, term = _sum_out(ctx, h, term, later | set(acc_term))
        if acc is None:
            acc, acc_term = h, term
            continue
        acc, acc_term = _sum_out(ctx, acc, acc_term, later | set(term))
        acc, acc_term = _contract(ctx, acc, acc_term, h, term, later, sizes)
    assert acc is not None
    acc, acc_term = _sum_out(ctx, acc, acc_term, set(out))
    return [_permute(ctx, acc, acc_term, out)]
