"""Recognition of decomposed forms: rewrite rules (pattern, replacement) that `fuse` runs first.

ONNX exports from PyTorch and TensorFlow spell LayerNorm and GELU as chains of small ops; these
rules turn them back into the `layernorm` and `gelu` ops, which have one kernel each (and become
epilogue stages). Patterns list each association order an exporter writes; `commutations` adds the
operand orders of add and mul. Users add their own with `@fusion_pattern(name, pattern)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..ir.graph import Value
from .rewrite import Const, Pattern, Rewriter, Rule, Var, commutations, op

FUSION_PATTERNS: list[Rule] = []
"""The rules `fuse` applies before it builds regions, in registration order."""

Replacement = Callable[..., Value | None]


def fusion_pattern(name: str, *patterns: Pattern) -> Callable[[Replacement], Replacement]:
    """Decorator: register `fn(rewriter, **captures) -> Value | None` for `patterns` (operand orders added)."""

    def deco(fn: Replacement) -> Replacement:
        if any(r.name == name for r in FUSION_PATTERNS):
            raise ValueError(f"fusion pattern {name!r} is already registered")
        seen: set[Pattern] = set()
        for p in patterns:
            for variant in commutations(p):
                if variant not in seen:
                    seen.add(variant)
                    FUSION_PATTERNS.append(Rule(name, variant, fn))
        return fn

    return deco


def scalar(value: float | None = None, rel: float = 1e-3) -> Callable[[np.ndarray], bool]:
    """A constant-array test: one element (any value when `value` is None, else within `rel` of it)."""

    def test(a: np.ndarray) -> bool:
        if a.size != 1 or a.dtype.kind != "f":
            return False
        return value is None or math.isclose(float(a.reshape(-1)[0]), value, rel_tol=rel)

    return test


def _times_half(x: Pattern, cdf: Pattern) -> list[Pattern]:
    """x * 0.5 * cdf in the three associations exporters write."""
    half = Const("half", scalar(0.5))
    return [op("mul", op("mul", x, cdf), half), op("mul", op("mul", x, half), cdf), op("mul", x, op("mul", cdf, half))]


def _same_shape(x: Value, rw: Rewriter) -> bool:
    return x.type.shape == rw.root.outputs[0].type.shape and x.type.dtype.name == "f32"


_X = Var("x")
_ERF_ARG = (op("div", _X, Const("s", scalar(math.sqrt(2)))), op("mul", _X, Const("s", scalar(1 / math.sqrt(2)))))
_ERF_CDF = [op("add", op("erf", arg), Const("one", scalar(1.0))) for arg in _ERF_ARG]


@fusion_pattern("gelu-erf", *[p for cdf in _ERF_CDF for p in _times_half(_X, cdf)])
def gelu_erf(rw: Rewriter, x: Value, **_: Value) -> Value | None:
    """0.5 * x * (1 + erf(x / sqrt(2))) -> gelu(x)."""
    return rw.emit("gelu", x) if _same_shape(x, rw) else None


_CUBES = (op("pow", _X, Const("three", scalar(3.0))), op("mul", op("mul", _X, _X), _X),
          op("mul", _X, op("mul", _X, _X)))
_TANH_CDF = [op("add", op("tanh", op("mul", op("add", _X, op("mul", cube, Const("c", scalar(0.044715)))),
                                      Const("k", scalar(math.sqrt(2 / math.pi))))), Const("one", scalar(1.0)))
             for cube in _CUBES]


@fusion_pattern("gelu-tanh", *[p for cdf in _TANH_CDF for p in _times_half(_X, cdf)])
def gelu_tanh(rw: Rewriter, x: Value, **_: Value) -> Value | None:
    """0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) -> gelu(x, approximate=tanh)."""
    return rw.emit("gelu", x, approximate="tanh") if _same_shape(x, rw) else None


_MEAN = op("reduce-mean", _X, capture="mean")
_CENTERED = op("sub", _X, _MEAN, capture="d")
_VAR = [op("reduce-mean", sq, capture="var") for sq in
        (op("pow", _CENTERED, Const("two", scalar(2.0))), op("mul", _CENTERED, _CENTERED))]
_STD = [op("sqrt", op("add", var, Const("eps", scalar()))) for var in _VAR]
_NORMED = [op("div", _CENTERED, std) for std in _STD]
_GAMMA, _BETA = Const("gamma"), Const("beta")


def _trailing_axes(node_value: Value, rank: int) -> tuple[int, ...] | None:
    """The reduce-mean's axes as a run that ends at the last axis (keepdims), else None."""
    node = node_value.producer
    assert node is not None
    if not node.attrs["keepdims"]:
        return None
    axes = tuple(sorted(a % rank for a in node.attrs["axes"])) or tuple(range(rank))
    return axes if axes == tuple(range(axes[0], rank)) else None


def _affine(rw: Rewriter, v: Value | None, tail: tuple[int, ...], fill: float, role: str) -> Value | None:
    """`v` (broadcasting over the normalized axes) as a constant of shape `tail`; `fill` when absent."""
    name = f"{rw.root.name}.{role}"
    if v is None:
        return rw.const(np.full(tail, fill, np.float32), name)
    assert v.data is not None
    full = (1,) * max(0, len(tail) - v.data.ndim) + v.data.shape
    if len(full) > len(tail) or any(d not in (1, t) for d, t in zip(full[len(full) - len(tail):], tail)):
        return None
    return rw.const(np.broadcast_to(v.data.reshape(full[len(full) - len(tail):]), tail).astype(np.float32), name)


def _affine_follows(rw: Rewriter, ops: tuple[str, ...]) -> bool:
    """Whether the matched value's only reader is one of `ops` with a constant operand (a longer match waits there)."""
    root = rw.root.outputs[0]
    readers = [n for n in rw.graph.nodes if any(v is root for v in n.inputs)]
    return (len(readers) == 1 and readers[0].op in ops and rw.uses_of(root) == 1
            and any(v.is_constant for v in readers[0].inputs))


@fusion_pattern("layernorm", *_NORMED, *[op("mul", n, _GAMMA) for n in _NORMED],
                *[op("add", op("mul", n, _GAMMA), _BETA) for n in _NORMED], *[op("add", n, _BETA) for n in _NORMED])
def layernorm(rw: Rewriter, x: Value, mean: Value, var: Value, eps: Value, gamma: Value | None = None,
              beta: Value | None = None, **_: Value) -> Value | None:
    """(x - mean) / sqrt(var + eps) [* gamma] [+ beta] over trailing axes -> layernorm(x, gamma, beta)."""
    rank = x.type.rank
    axes = _trailing_axes(mean, rank)
    if not _same_shape(x, rw) or axes is None or axes != _trailing_axes(var, rank):
        return None
    if beta is None and _affine_follows(rw, ("add",) if gamma is not None else ("mul", "add")):
        return None
    tail = x.type.shape[axes[0]:]
    scale, shift = _affine(rw, gamma, tail, 1.0, "scale"), _affine(rw, beta, tail, 0.0, "bias")
    if scale is None or shift is None:
        return None
    assert eps.data is not None
    epsilon = float(str(eps.data.reshape(-1)[0]))  # the shortest decimal of the stored float32
    return rw.emit("layernorm", x, scale, shift, axis=axes[0], epsilon=epsilon)


__all__ = ["FUSION_PATTERNS", "fusion_pattern", "scalar"]
