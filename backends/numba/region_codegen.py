"""Source generation for elementwise regions: the body's equations become scalar statements in one loop.

`region_equations(body)` checks a body and lists its live equations; `region_source(...)` writes the
Python source of one kernel that reads every parameter through its own offsets and strides, computes
the body as scalars (per-op statement templates, `FLOAT_RULES` / `INT_RULES` / `CAST_RULES`) and
stores the result once. The loop runs over the output seen as [rows, length], `rows` the product of
the outer (collapsed) axes and `length` the innermost one, split into chunks of `CHUNK` columns; work
items are (row, chunk), the parallel twin spreads them over threads. Per parameter, the inner axis is
contiguous (read as a slice, so LLVM vectorizes), broadcast (read once per work item) or strided.
Equations whose operands are all broadcast along the inner axis are computed once per work item.

A body of exactly rounded ops (add, sub, mul, div, sqrt, max/min, clip, ...) compiles without fast-math
flags: its additions and products round like the reference's separate ops, so it matches bit for bit.
A body with an approximated op (APPROXIMATE_RULES) compiles with FMA contraction only: the helpers'
polynomials use FMAs as in the one-op kernels (30% faster on GELU), and a product feeding a sum may
round once instead of twice, within the tolerance such a body has anyway; nothing is reassociated.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from ...ir.dtypes import DTYPES
from ...ir.graph import Graph, Node, Value
from ...ir.ops.elementwise import float_to_int_bounds, integer_clip_bounds

CHUNK = 4096
"""Columns per work item of a generated kernel."""

KERNEL_NAME = "KERNEL"
"""Placeholder for the kernel's name in a source before its hash is known."""

SCALAR_TYPES = {"f32": "np.float32", "i64": "np.int64", "i32": "np.int32", "i8": "np.int8", "u8": "np.uint8",
                "bool": "np.bool_"}
"""IR dtypes a generated kernel computes with, and the numpy scalar type that rounds or wraps to each."""

ARITH_DTYPES = frozenset({"f32", "i64", "i32", "i8", "u8"})
"""Dtypes arithmetic ops run on (bool is only cast)."""

# Statement templates: {o} the result, {a} / {b} the operands, {T} the result's scalar type,
# {lo} / {hi} clip bounds (named constants of the module). Operands are always plain names.
COMMON_RULES: dict[str, tuple[str, ...]] = {
    "add": ("{o} = {T}({a} + {b})",),
    "sub": ("{o} = {T}({a} - {b})",),
    "mul": ("{o} = {T}({a} * {b})",),
    "pow": ("{o} = {T}({a} ** {b})",),
    "maximum": ("{o} = {a} if ({a} > {b} or {a} != {a}) else {b}",),
    "minimum": ("{o} = {a} if ({a} < {b} or {a} != {a}) else {b}",),
    "neg": ("{o} = {T}(-{a})",),
    "abs": ("{o} = {T}(abs({a}))",),
    "identity": ("{o} = {a}",),
    "dropout": ("{o} = {a}",),
    "clip": ("{o} = {lo} if {a} < {lo} else {a}", "{o} = {T}({hi} if {o} > {hi} else {o})"),
}
FLOAT_RULES: dict[str, tuple[str, ...]] = {
    **COMMON_RULES,
    "div": ("{o} = {T}({a} / {b})",),
    "relu": ("{o} = frelu({a})",),
    "gelu": ("{o} = fgelu({a})",),
    "gelu_tanh": ("{o} = fgelu_tanh({a})",),
    "sigmoid": ("{o} = fsigmoid({a})",),
    "tanh": ("{o} = ftanh({a})",),
    "erf": ("{o} = ferf({a})",),
    "sqrt": ("{o} = {T}(np.sqrt({a}))",),
    "exp": ("{o} = fexp({a})",),
    "log": ("{o} = {T}(np.log({a}))",),
    "floor": ("{o} = {T}(np.floor({a}))",),
    "ceil": ("{o} = {T}(np.ceil({a}))",),
    "round": ("{o} = {T}(np.rint({a}))",),
    "sin": ("{o} = {T}(np.sin(np.float64({a})))",),
    "cos": ("{o} = {T}(np.cos(np.float64({a})))",),
    "tan": ("{o} = {T}(np.tan(np.float64({a})))",),
    "asin": ("{o} = {T}(np.arcsin(np.float64({a})))",),
    "acos": ("{o} = {T}(np.arccos(np.float64({a})))",),
    "atan": ("{o} = {T}(np.arctan(np.float64({a})))",),
    "sinh": ("{o} = {T}(np.sinh(np.float64({a})))",),
    "cosh": ("{o} = {T}(np.cosh(np.float64({a})))",),
    "asinh": ("{o} = {T}(np.arcsinh(np.float64({a})))",),
    "acosh": ("{o} = {T}(np.arccosh(np.float64({a})))",),
    "atanh": ("{o} = {T}(np.arctanh(np.float64({a})))",),
    "mod": ("{o} = {T}(np.mod({a}, {b}))",),
    "fmod": ("{o} = {T}(np.fmod({a}, {b}))",),
    "sign": ("{o} = {T}(1) if {a} > 0 else ({T}(-1) if {a} < 0 else ({a} if {a} != {a} else {T}(0)))",),
}
"""f32 ops: the same math helpers (mathfn.py) as the one-op kernels."""
INT_RULES: dict[str, tuple[str, ...]] = {
    **COMMON_RULES,
    "div": ("{o} = {T}(ir_div({a}, {b}))",),
    "relu": ("{o} = {a} if {a} > 0 else {T}({a} - {a})",),
    "sign": ("{o} = {T}(1) if {a} > 0 else ({T}(-1) if {a} < 0 else {T}(0))",),
    "mod": ("{o} = {T}(0) if {b} == 0 else {T}({a} % {b})",),
    "fmod": ("{o} = {T}(0) if {b} == 0 else {T}({a} % {b})",
             "{o} = {T}({o} - {b}) if {o} != 0 and ({o} < 0) != ({a} < 0) else {o}"),
}
"""Integer ops: numpy's wrapping arithmetic, division truncating toward zero (0 for a zero divisor)."""
CAST_RULES: dict[str, tuple[str, ...]] = {
    "bool": ("{o} = {a} != 0",),
    "numeric": ("{o} = {T}({a})",),
    "saturate": ("{o} = {T}({a}) if {a} >= {lo} and {a} < {hi} else "
                 "({T}({lo_i}) if {a} < {lo} else ({T}({hi_i}) if {a} >= {hi} else {T}(0)))",),
}
"""cast by target dtype: != 0 to bool; float to integer truncated and saturated (NaN to 0, bounds from
`float_to_int_bounds`); other conversions as numpy's astype."""
LOGIC_RULES: dict[str, tuple[str, ...]] = {
    "equal": ("{o} = {a} == {b}",),
    "less": ("{o} = {a} < {b}",),
    "less-equal": ("{o} = {a} <= {b}",),
    "greater": ("{o} = {a} > {b}",),
    "greater-equal": ("{o} = {a} >= {b}",),
    "logical-and": ("{o} = {a} and {b}",),
    "logical-or": ("{o} = {a} or {b}",),
    "logical-xor": ("{o} = {a} != {b}",),
    "logical-not": ("{o} = not {a}",),
    "where": ("{o} = {b} if {a} else {c}",),
}
"""Comparisons (IEEE: NaN compares false), logical ops on bool and where, on any dtype the kernels compute with."""

TRIGONOMETRIC = ("sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh")
"""The circular and hyperbolic functions and their inverses: libm's, in float64, rounded once."""

WORK_PER_ELEMENT = {"gelu": 8, "gelu_tanh": 8, "sigmoid": 8, "tanh": 8, "erf": 8, "sqrt": 8, "exp": 8, "log": 8,
                    "pow": 8, **dict.fromkeys(TRIGONOMETRIC, 8)}
"""Work units per output element of costly ops (others count 1), as the one-op kernels estimate them."""

APPROXIMATE_RULES = frozenset({"gelu", "gelu_tanh", "sigmoid", "tanh", "erf", "exp", "log", "pow", *TRIGONOMETRIC})
"""Rules whose f32 result is not the correctly rounded one (polynomial helpers, libm)."""

HELPER_NAMES = ("fexp", "ferf", "fgelu", "fgelu_tanh", "frelu", "fsigmoid", "ftanh")
HELPER_FILES = ("mathfn.py", "k_elementwise.py", "jit.py")
"""Modules the generated kernels inline code from: their contents are part of every kernel's cache key."""


class InnerStep(Enum):
    """How a parameter moves along the innermost output axis."""

    BROADCAST = "broadcast"
    CONTIGUOUS = "contiguous"
    STRIDED = "strided"


class UnsupportedBody(ValueError):
    """A body a generated kernel cannot compute (the caller lowers it equation by equation)."""


@dataclass(frozen=True)
class Equation:
    """One live body equation: the rule key, operand and result names, result dtype, clip bounds."""

    rule: str
    dtype: str
    operands: tuple[str, ...]
    result: str
    bounds: tuple[float | int, ...] | None = None
    """clip: (lo, hi) in the result type; a saturating cast: (lo, hi_excl) as floats, then (min, max)."""


def rule_key(node: Node) -> str:
    """The rule of `node` in the tables (gelu's tanh form is its own rule; cast rules key on the target)."""
    if node.op == "gelu" and node.attrs.get("approximate", "none") == "tanh":
        return "gelu_tanh"
    if node.op == "mod":
        return "fmod" if node.attrs["fmod"] else "mod"
    if node.op == "cast":
        if node.attrs["dtype"] == "bool":
            return "bool"
        to_int = not node.outputs[0].type.dtype.is_float
        return "saturate" if to_int and node.inputs[0].type.dtype.is_float else "numeric"
    return node.op


def rules_for(node: Node) -> dict[str, tuple[str, ...]]:
    """The template table of `node`'s op at its dtype."""
    if node.op == "cast":
        return CAST_RULES
    if node.op in LOGIC_RULES:
        return LOGIC_RULES
    return FLOAT_RULES if node.outputs[0].type.dtype.name == "f32" else INT_RULES


def clip_bounds(node: Node, dtype: str) -> tuple[float | int, float | int]:
    """clip's (min, max) in the compute type: f32 values, or integers clamped to the dtype's range."""
    lo, hi = node.attrs.get("min", -math.inf), node.attrs.get("max", math.inf)
    if dtype == "f32":
        return float(np.float32(lo)), float(np.float32(hi))
    return integer_clip_bounds(lo, hi, np.iinfo(DTYPES[dtype].np_dtype))


def live_nodes(body: Graph) -> list[Node]:
    """The body's equations the output depends on, in order."""
    need = {id(body.outputs[0])}
    live: list[Node] = []
    for node in reversed(body.nodes):
        if any(id(v) in need for v in node.outputs):
            live.append(node)
            need.update(id(v) for v in node.inputs)
    return live[::-1]


def region_equations(body: Graph) -> list[Equation]:
    """The live equations of `body` with operand names p<i> (parameters) and t<k>; raises UnsupportedBody."""
    names: dict[int, str] = {}
    for i, p in enumerate(body.inputs):
        _check_dtype(p, f"parameter %{p.name}")
        names[id(p)] = f"p{i}"
    out: list[Equation] = []
    for k, node in enumerate(live_nodes(body)):
        if len(node.outputs) != 1:
            raise UnsupportedBody(f"%{node.outputs[0].name} ({node.op}) has {len(node.outputs)} outputs")
        v = node.outputs[0]
        _check_dtype(v, f"%{v.name} ({node.op})")
        dtype = v.type.dtype.name
        key, table = rule_key(node), rules_for(node)
        if key not in table:
            raise UnsupportedBody(f"%{v.name}: no scalar rule for {node.op} on {dtype}")
        if node.op != "cast" and node.op not in LOGIC_RULES and \
                (dtype not in ARITH_DTYPES or any(x.type.dtype.name != dtype for x in node.inputs)):
            raise UnsupportedBody(f"%{v.name}: {node.op} on {[x.type.dtype.name for x in node.inputs]}")
        if any(id(x) not in names for x in node.inputs):
            raise UnsupportedBody(f"%{v.name} ({node.op}) reads a value the body does not define")
        bounds = clip_bounds(node, dtype) if node.op == "clip" else \
            float_to_int_bounds(np.iinfo(DTYPES[dtype].np_dtype)) if key == "saturate" else None
        names[id(v)] = f"t{k}"
        out.append(Equation(key, dtype, tuple(names[id(x)] for x in node.inputs), f"t{k}", bounds))
    if id(body.outputs[0]) not in names:
        raise UnsupportedBody(f"the output %{body.outputs[0].name} is not computed from the parameters")
    return out


def _check_dtype(v: Value, what: str) -> None:
    if v.type.dtype.name not in SCALAR_TYPES:
        raise UnsupportedBody(f"{what} has dtype {v.type.dtype.name}, which the kernels do not compute with")


def region_work(equations: list[Equation], numel: int) -> int:
    """The work estimate of a region kernel over `numel` output elements (picks the parallel twin)."""
    return numel * max(1, sum(WORK_PER_ELEMENT.get(e.rule, 1) for e in equations))


def region_fastmath(equations: list[Equation]) -> frozenset[str] | bool:
    """The kernel's fast-math flags: FMA contraction when an op is approximated anyway, else none."""
    return frozenset({"contract"}) if any(e.rule in APPROXIMATE_RULES for e in equations) else False


def _literal(value: float | int, dtype: str) -> str:
    if dtype == "f64":
        return f"np.float64({float(value)!r})"
    if dtype == "f32":
        return "np.float32(np.inf)" if value == math.inf else "np.float32(-np.inf)" if value == -math.inf \
            else f"np.float32({float(value)!r})"
    return f"np.int64({int(value)})"


def _result(body: Graph, equations: list[Equation]) -> str:
    out = body.outputs[0]
    for i, p in enumerate(body.inputs):
        if p is out:
            return f"p{i}"
    return equations[-1].result


def region_source(body: Graph, equations: list[Equation], inner: list[InnerStep], label: str) -> str:
    """Python source of the kernel for `equations` with parameters moving as `inner` along the inner axis.

    The kernel is named KERNEL_NAME and takes (p0..pn, out, outer, offs, strides, steps, length): the
    parameters' flat arrays, the flat output, the extents of the outer axes, each parameter's element
    offset and strides over the outer axes [param, axis], its stride along the inner axis, and the
    inner axis's length.
    """
    consts: list[str] = []
    statements: list[tuple[str, set[str]]] = []  # (line, names it reads)
    for e in equations:
        fields = {"o": e.result, "T": SCALAR_TYPES[e.dtype]}
        fields.update(zip("abc", e.operands))
        if e.bounds is not None:
            for key, value in zip(("lo", "hi", "lo_i", "hi_i"), e.bounds):
                fields[key] = f"K{len(consts)}"
                kind = "f64" if e.rule == "saturate" and key in ("lo", "hi") else e.dtype
                consts.append(f"K{len(consts)} = {_literal(value, kind)}")
        table = CAST_RULES if e.rule in CAST_RULES else LOGIC_RULES if e.rule in LOGIC_RULES else \
            FLOAT_RULES if e.dtype == "f32" else INT_RULES
        for template in table[e.rule]:
            statements.append((template.format(**fields), set(e.operands)))
    varying = {f"p{i}" for i, s in enumerate(inner) if s is not InnerStep.BROADCAST}
    hoisted, looped = [], []
    for line, reads in statements:
        target = line.split(" = ", 1)[0]
        if reads & varying:
            varying.add(target)
            looped.append(line)
        else:
            hoisted.append(line)
    params = [f"p{i}" for i in range(len(inner))]
    used = [i for i in range(len(inner)) if f"p{i}" in {x for e in equations for x in e.operands}
            or f"p{i}" == _result(body, equations)]
    head = [
        f'"""Elementwise region kernel generated by tensorsmith: {label} (do not edit)."""',
        f"# helpers: {helpers_fingerprint()}",
        "import numpy as np",
        "from numba import prange",
        "",
        "from tensorsmith.backends.numba.jit import twin",
        "from tensorsmith.backends.numba.k_elementwise import ir_div  # noqa: F401",
        f"from tensorsmith.backends.numba.mathfn import {', '.join(HELPER_NAMES)}  # noqa: F401",
        "",
        f"CHUNK = {CHUNK}",
        *consts,
        "",
        "",
        f"@twin(fastmath={region_fastmath(equations)!r})",
        f"def {KERNEL_NAME}({', '.join(a + '_arr' for a in params)}, out, outer, offs, strides, steps, length):",
        f'    """out = {label}, over the output seen as [prod(outer), length]."""',
        "    nouter = outer.shape[0]",
        "    rows = 1",
        "    for d in range(nouter):",
        "        rows *= outer[d]",
        "    nchunk = (length + CHUNK - 1) // CHUNK",
    ]
    body_lines = [
        "    for item in prange(rows * nchunk):",
        "        r = item // nchunk",
        "        j0 = (item % nchunk) * CHUNK",
        "        j1 = min(length, j0 + CHUNK)",
        *[f"        b{i} = offs[{i}]" for i in used],
        "        q = r",
        "        for d in range(nouter - 1, -1, -1):",
        "            e = outer[d]",
        "            idx = q % e",
        "            q //= e",
        *[f"            b{i} += idx * strides[{i}, d]" for i in used],
        "        o = out[r * length + j0:r * length + j1]",
    ]
    loads = []
    for i in used:
        step = inner[i]
        if step is InnerStep.BROADCAST:
            body_lines.append(f"        p{i} = p{i}_arr[b{i}]")
        elif step is InnerStep.CONTIGUOUS:
            body_lines.append(f"        v{i} = p{i}_arr[b{i} + j0:b{i} + j1]")
            loads.append(f"p{i} = v{i}[j]")
        else:
            head.append(f"    s{i} = steps[{i}]")
            loads.append(f"p{i} = p{i}_arr[b{i} + (j0 + j) * s{i}]")
    body_lines += [f"        {line}" for line in hoisted]
    body_lines.append("        for j in range(j1 - j0):")
    body_lines += [f"            {line}" for line in loads + looped]
    body_lines.append(f"            o[j] = {_result(body, equations)}")
    return "\n".join(head + body_lines) + "\n"


_FINGERPRINT: list[str] = []


def helpers_fingerprint() -> str:
    """A hash of the helper modules the kernels inline (editing one gives every kernel a new cache key)."""
    if not _FINGERPRINT:
        h = hashlib.sha256()
        for name in HELPER_FILES:
            h.update((Path(__file__).parent / name).read_bytes())
        _FINGERPRINT.append(h.hexdigest()[:16])
    return _FINGERPRINT[0]
