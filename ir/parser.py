"""Parse the text form (see `text.print_graph`) back into a Graph."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import numpy as np

from .dtypes import dtype_from_name
from .graph import Graph, Node, Value
from .ops import OPS
from .types import QuantInfo, SparsityInfo, TensorType

MAX_DIM = 2**63 - 1
"""The largest dimension the text form accepts (a signed 64-bit size)."""


class ParseError(ValueError):
    """The text is not a valid graph; the message gives line and column."""


_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+|\#[^\n]*)
  | (?P<arrow>->)
  | (?P<value>[%@](?:[A-Za-z0-9_.\-]+|"(?:[^"\\\n]|\\.)*"))
  | (?P<number>-?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|inf\b|nan\b))
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.\-]*)
  | (?P<punct>[()\[\]{}<>,=:])
    """,
    re.VERBOSE,
)


class _Tokens:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise self._error(pos, f"unexpected character {text[pos]!r}")
            if m.lastgroup == "value":
                self.toks.append(("value", self._value_name(m.group(), pos), pos))
            elif m.lastgroup != "ws":
                self.toks.append((m.lastgroup or "", m.group(), pos))
            pos = m.end()
        self.i = 0

    def _value_name(self, tok: str, pos: int) -> str:
        """`%name` / `@name` with a quoted name decoded, so both spellings of a name are one token."""
        if tok[1] != '"':
            return tok
        try:
            return tok[0] + json.loads(tok[1:])
        except ValueError as e:
            raise self._error(pos, f"bad quoted name {tok}: {e}") from None

    def _error(self, pos: int, msg: str) -> ParseError:
        line = self.text.count("\n", 0, pos) + 1
        col = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        lines = self.text.splitlines()
        src = lines[line - 1] if line <= len(lines) else ""
        return ParseError(f"line {line}, column {col}: {msg}\n  {src}\n  {' ' * (col - 1)}^")

    def error(self, msg: str) -> ParseError:
        pos = self.toks[self.i][2] if self.i < len(self.toks) else len(self.text)
        return self._error(pos, msg)

    def peek(self, k: int = 0) -> tuple[str, str]:
        j = self.i + k
        return self.toks[j][:2] if j < len(self.toks) else ("eof", "")

    def next(self) -> tuple[str, str]:
        tok = self.peek()
        if tok[0] == "eof":
            raise self.error("unexpected end of text")
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        kind, tok = self.peek()
        if tok != text:
            raise self.error(f"expected {text!r}, found {tok or 'end of text'!r}")
        self.i += 1

    def expect_kind(self, kind: str) -> str:
        k, tok = self.peek()
        if k != kind:
            raise self.error(f"expected {kind}, found {tok or 'end of text'!r}")
        self.i += 1
        return tok

    def accept(self, text: str) -> bool:
        if self.peek()[1] == text:
            self.i += 1
            return True
        return False


def _number(tok: str) -> int | float:
    if re.fullmatch(r"-?\d+", tok):
        return int(tok)
    return float(tok)


def _parse_value(t: _Tokens) -> Any:
    kind, tok = t.peek()
    if tok == "[":
        t.next()
        items = []
        while not t.accept("]"):
            items.append(_parse_value(t))
            if not t.accept(","):
                t.expect("]")
                break
        return items
    t.next()
    if kind == "number":
        return _number(tok)
    if kind == "string":
        try:
            return bytes(tok[1:-1], "utf-8").decode("unicode_escape")
        except UnicodeDecodeError as e:
            t.i -= 1
            raise t.error(f"bad string {tok}: {e.reason}") from None
    if kind == "ident":
        if tok in ("true", "false"):
            return tok == "true"
        if tok == "null":
            return None
        if tok in ("inf", "nan"):
            return float(tok)
        return tok
    raise t.error(f"expected a value, found {tok!r}")


def _parse_type(t: _Tokens) -> TensorType:
    name = t.expect_kind("ident")
    try:
        dt = dtype_from_name(name)
    except ValueError as e:
        t.i -= 1
        raise t.error(str(e)) from None
    t.expect("[")
    shape: list[int] = []
    while not t.accept("]"):
        dim = t.expect_kind("number")
        if not dim.isdigit() or int(dim) > MAX_DIM:
            t.i -= 1
            raise t.error(f"a dimension must be an integer in [0, {MAX_DIM}], found {dim!r}")
        shape.append(int(dim))
        if not t.accept(","):
            t.expect("]")
            break
    quant = sparsity = None
    while t.peek()[1] == "<":
        t.next()
        tag = t.expect_kind("ident")
        fields: dict[str, Any] = {}
        while not t.accept(">"):
            key = t.expect_kind("ident")
            t.expect("=")
            fields[key] = _parse_value(t)
        try:
            if tag == "quant":
                quant = QuantInfo(
                    tuple(float(x) for x in fields["scale"]),
                    tuple(int(x) for x in fields["zero_point"]),
                    int(fields.get("bits", 8)),
                    fields.get("axis"),
                    fields.get("group_size"),
                )
            elif tag == "sparse":
                block = fields.get("block")
                sparsity = SparsityInfo(
                    fields["pattern"], float(fields["density"]),
                    tuple(block) if block is not None else None, fields.get("n"), fields.get("m"),
                    bool(fields.get("padded", False)),
                )
            else:
                raise t.error(f"unknown type annotation <{tag} ...>; known: quant, sparse")
        except (KeyError, ValueError, TypeError) as e:
            if isinstance(e, ParseError):
                raise
            raise t.error(f"bad <{tag}> annotation: {e}") from None
    return TensorType(tuple(shape), dt, quant, sparsity)


def parse(text: str) -> Graph:
    """Parse one graph in the text form; constants must be printed in full (not elided)."""
    t = _Tokens(text)
    graph, env, placeholders, first_use = _parse_graph(t)
    while t.peek()[0] != "eof":
        t.expect("const")
        cname = t.expect_kind("value")
        cpos = t.toks[t.i - 1][2]
        if not cname.startswith("@"):
            raise t.error("constants are written @name")
        t.expect(":")
        ty = _parse_type(t)
        t.expect("=")
        data = _parse_constant_data(t, cname, ty)
        if cname in env:
            raise t._error(cpos, f"constant {cname} is defined twice")
        v = placeholders.pop(cname, None) or Value(cname[1:], ty)
        v.type = ty
        v.data = data
        data.flags.writeable = False
        env[cname] = v
    if placeholders:
        missing = ", ".join(sorted(placeholders))
        raise t._error(min(first_use[k] for k in placeholders),
                       f"graph {graph.name}: {missing} used but never defined")
    return graph


def _parse_region_body(t: _Tokens) -> Graph:
    """A nested `graph name(...) -> type { ... }` (a fused region's body): no constants of its own."""
    graph, _, placeholders, first_use = _parse_graph(t)
    if placeholders:
        missing = ", ".join(sorted(placeholders))
        raise t._error(min(first_use[k] for k in placeholders),
                       f"region body {graph.name}: {missing} used but never defined (a body reads only its "
                       "parameters; pass constants to the fused node as inputs)")
    return graph


def _parse_graph(t: _Tokens) -> tuple[Graph, dict[str, Value], dict[str, Value], dict[str, int]]:
    """`graph name(inputs) -> types { equations; return ... }`: the graph, its names, and unresolved references."""
    t.expect("graph")
    name = t.expect_kind("ident")
    env: dict[str, Value] = {}
    inputs: list[Value] = []
    t.expect("(")
    while not t.accept(")"):
        vname = t.expect_kind("value")
        if not vname.startswith("%"):
            raise t.error("graph inputs are written %name")
        t.expect(":")
        v = Value(vname[1:], _parse_type(t))
        env[vname] = v
        inputs.append(v)
        if not t.accept(","):
            t.expect(")")
            break
    t.expect("->")
    if t.accept("("):
        while not t.accept(")"):
            _parse_type(t)
            t.accept(",")
    else:
        _parse_type(t)
    t.expect("{")
    nodes: list[Node] = []
    placeholders: dict[str, Value] = {}
    first_use: dict[str, int] = {}

    def ref(tok: str) -> Value:
        if tok in env:
            return env[tok]
        # forward or constant reference: resolved once the whole text is read
        if tok not in placeholders:
            placeholders[tok] = Value(tok[1:], TensorType((), dtype_from_name("f32")))
            first_use[tok] = t.toks[t.i - 1][2]
        return placeholders[tok]

    outputs: list[Value] = []
    while True:
        if t.accept("return"):
            outputs.append(ref(t.expect_kind("value")))
            while t.accept(","):
                outputs.append(ref(t.expect_kind("value")))
            t.expect("}")
            break
        outs = [t.expect_kind("value")]
        out_pos = [t.toks[t.i - 1][2]]
        while t.accept(","):
            outs.append(t.expect_kind("value"))
            out_pos.append(t.toks[t.i - 1][2])
        t.expect("=")
        op = t.expect_kind("ident")
        op_pos = t.toks[t.i - 1][2]
        if op not in OPS:
            t.i -= 1
            raise t.error(f"unknown op {op!r}")
        t.expect("(")
        args: list[Value] = []
        while not t.accept(")"):
            args.append(ref(t.expect_kind("value")))
            if not t.accept(","):
                t.expect(")")
                break
        attrs: dict[str, Any] = {}
        if t.accept("{"):
            while not t.accept("}"):
                key = t.expect_kind("ident")
                t.expect("=")
                attrs[key] = _parse_region_body(t) if t.peek()[1] == "graph" else _parse_value(t)
                if not t.accept(","):
                    t.expect("}")
                    break
        t.expect(":")
        types = [_parse_type(t)]
        while t.accept(","):
            types.append(_parse_type(t))
        if len(types) != len(outs):
            raise t.error(f"{len(outs)} results but {len(types)} types")
        try:
            attrs = OPS[op].normalize_attrs(attrs)
        except Exception as e:  # noqa: BLE001 - re-raised with a position
            raise t._error(op_pos, f"{outs[0]} = {op}: {e}") from None
        values = []
        for o, ty, pos in zip(outs, types, out_pos):
            if o in env:
                raise t._error(pos, f"value {o} is defined twice")
            v = placeholders.pop(o, None) or Value(o[1:], ty)
            v.type = ty
            env[o] = v
            values.append(v)
        nodes.append(Node(op, args, attrs, values))
    return Graph(name, inputs, outputs, nodes), env, placeholders, first_use


def _checked_ints(vals: list[Any], ty: TensorType) -> list[int]:
    """`vals` as integers in the range of `ty.dtype`; ValueError names the first bad one."""
    d = ty.dtype
    lo, hi = (0, 1) if d.name == "bool" else (
        (-(2 ** (d.bits - 1)), 2 ** (d.bits - 1) - 1) if d.is_signed else (0, 2**d.bits - 1))
    for x in vals:
        if isinstance(x, bool) or not isinstance(x, int):
            raise ValueError(f"{x!r} is not an integer")
        if not lo <= x <= hi:
            raise ValueError(f"{x} is out of range [{lo}, {hi}] for {d.name}")
    return vals


def _parse_constant_data(t: _Tokens, cname: str, ty: TensorType) -> np.ndarray:
    kind, tok = t.peek()
    np_dt = ty.dtype.np_dtype
    start = t.toks[t.i][2] if t.i < len(t.toks) else len(t.text)
    if tok == "[":
        vals = _parse_value(t)
        if len(vals) != ty.numel:
            raise t._error(start, f"constant {cname}: {len(vals)} values for type with {ty.numel} elements")
        try:
            if ty.dtype.is_float:
                arr = np.array([float(x) for x in vals], dtype=np.float64).astype(np_dt)
            else:
                arr = np.array(_checked_ints(vals, ty), dtype=np.int64).astype(np_dt)
        except (TypeError, ValueError) as e:
            raise t._error(start, f"constant {cname}: {e}") from None
        return arr.reshape(ty.shape)
    if tok == "blob":
        t.next()
        text = t.expect_kind("string")[1:-1]
        try:
            arr = np.frombuffer(base64.b64decode(text, validate=True), dtype=np_dt.newbyteorder("<")).astype(np_dt)
        except ValueError as e:
            raise t._error(start, f"constant {cname}: bad blob: {e}") from None
        if arr.size != ty.numel:
            raise t._error(start, f"constant {cname}: blob holds {arr.size} elements, type needs {ty.numel}")
        return arr.reshape(ty.shape).copy()
    if tok == "elided":
        raise t.error(
            f"constant {cname} was printed elided; print with graph.to_text() to keep its data"
        )
    raise t.error(f"constant {cname}: expected [values] or blob\"...\"")
