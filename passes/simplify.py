"""simplify: algebraic identities as rewrite rules (x*1, x+0, transpose of transpose, ...)."""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Value
from .base import Pass, PassContext, PassResult, register_pass
from .rewrite import Const, Rewriter, RuleSet, Var, apply_rules, format_hits, op, rules


def _all(value: float):  # type: ignore[no-untyped-def]
    return lambda a: a.size > 0 and bool(np.all(a == value))


def _keep_if_same_type(x: Value, root_type: object) -> Value | None:
    return x if x.type.shape == root_type.shape and x.type.dtype == root_type.dtype else None  # type: ignore[attr-defined]


def _identity_of(x_name: str, op_name: str):  # type: ignore[no-untyped-def]
    """fn returning `x` when the result has x's type (broadcasting could change the shape)."""

    def fn(rw: Rewriter, **caps: Value) -> Value | None:
        return _keep_if_same_type(caps[x_name], rw.root.outputs[0].type)

    fn.__name__ = f"drop_{op_name}"
    return fn


def _compose_transposes(rw: Rewriter, x: Value, inner: Value) -> Value:
    p1 = inner.producer.attrs["perm"]  # type: ignore[union-attr]
    p2 = rw.root.attrs["perm"]
    perm = tuple(p1[i] for i in p2)
    if perm == tuple(range(len(perm))):
        return x
    return rw.emit("transpose", x, perm=perm)


def _drop_identity_transpose(rw: Rewriter, x: Value) -> Value | None:
    perm = rw.root.attrs["perm"]
    return x if tuple(perm) == tuple(range(len(perm))) else None


def _merge_reshapes(rw: Rewriter, x: Value) -> Value:
    shape = rw.root.outputs[0].type.shape
    return x if x.type.shape == shape else rw.emit("reshape", x, shape=shape)


def _drop_same_shape(rw: Rewriter, x: Value) -> Value | None:
    return x if x.type.shape == rw.root.outputs[0].type.shape else None


def _drop_full_slice(rw: Rewriter, x: Value) -> Value | None:
    return x if x.type.shape == rw.root.outputs[0].type.shape and all(
        s == 1 for s in rw.root.attrs["steps"]) else None


def _drop_same_cast(rw: Rewriter, x: Value) -> Value | None:
    return x if x.type.dtype == rw.root.outputs[0].type.dtype else None


def _same(rw: Rewriter, x: Value) -> Value:
    return x


ONE, ZERO = _all(1), _all(0)

SIMPLIFY_RULES: RuleSet = rules(
    ("mul-by-one", op("mul", Var("x"), Const("c", ONE)), _identity_of("x", "mul")),
    ("one-times", op("mul", Const("c", ONE), Var("x")), _identity_of("x", "mul")),
    ("add-zero", op("add", Var("x"), Const("c", ZERO)), _identity_of("x", "add")),
    ("zero-plus", op("add", Const("c", ZERO), Var("x")), _identity_of("x", "add")),
    ("sub-zero", op("sub", Var("x"), Const("c", ZERO)), _identity_of("x", "sub")),
    ("div-by-one", op("div", Var("x"), Const("c", ONE)), _identity_of("x", "div")),
    ("pow-one", op("pow", Var("x"), Const("c", ONE)), _identity_of("x", "pow")),
    ("transpose-transpose", op("transpose", op("transpose", Var("x"), capture="inner")), _compose_transposes),
    ("identity-transpose", op("transpose", Var("x")), _drop_identity_transpose),
    ("reshape-reshape", op("reshape", op("reshape", Var("x"))), _merge_reshapes),
    ("reshape-of-flatten", op("reshape", op("flatten", Var("x"))), _merge_reshapes),
    ("noop-reshape", op("reshape", Var("x")), _drop_same_shape),
    ("noop-flatten", op("flatten", Var("x")), _drop_same_shape),
    ("full-slice", op("slice", Var("x")), _drop_full_slice),
    ("noop-cast", op("cast", Var("x")), _drop_same_cast),
    ("neg-neg", op("neg", op("neg", Var("x"))), _same),
    ("identity", op("identity", Var("x")), _same),
    ("inference-dropout", op("dropout", Var("x")), _same),
)


@register_pass
class Simplify(Pass):
    """Applies the algebraic identities in SIMPLIFY_RULES until none matches."""

    name = "simplify"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        """Rewrite to a fixed point and report hits per rule."""
        hits = apply_rules(graph, SIMPLIFY_RULES)
        return PassResult(graph, bool(hits), format_hits(hits), {"rewrites": sum(hits.values())})
