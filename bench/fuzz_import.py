"""Fuzz the two importers: mutate ONNX models and printed graphs, import them, count outcomes by error type.

    python -m tensorsmith.bench.fuzz_import --cases 2000 --seed 0

An ONNX case passes when `from_onnx` returns a graph or raises `OnnxImportError`; a text case passes
when `parse` returns a graph or raises `ParseError` whose message starts with the line and column.
Anything else (another exception type, a case over its time limit) is a finding, printed in full.
"""

from __future__ import annotations

import argparse
import random
import re
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..ir.graph import Graph
from ..ir.onnx_context import OnnxImportError
from ..ir.onnx_import import from_onnx
from ..ir.parser import ParseError, parse
from ..ir.text import print_graph
from .models.onnx_light import LIGHT_MODELS, light_dir
from .options import positive_float, positive_int, reject_unknown, split_csv

ONNX_ERRORS: tuple[type[Exception], ...] = (OnnxImportError,)
"""The only exception types `from_onnx` may raise on a malformed model."""
TEXT_ERRORS: tuple[type[Exception], ...] = (ParseError,)
"""The only exception types `parse` may raise on malformed text."""
POSITION = re.compile(r"line \d+, column \d+: ")
"""How every parse error begins."""
FUZZ_MAX_BYTES = 64 << 20
"""Per-tensor byte limit of the fuzzed imports (mutated dims must be refused, not allocated)."""
OK, TIMEOUT = "ok", "timeout"
HUGE = (2**31, 2**40, 2**62, 2**63 - 1)
ODD_INTS = (-(2**40), -3, -1, 0, 1, 2, 3, 7, 2**40)
ELEM_TYPES = tuple(onnx.TensorProto.DataType.values()) + (99,)


class CaseTimeout(Exception):
    """A fuzz case ran past its time limit."""


@dataclass
class Outcome:
    """What one mutated input did: `kind` is "ok", "timeout" or the exception's type name."""

    source: str
    mutation: str
    kind: str
    message: str
    seconds: float
    allowed: bool
    where: str = ""  # the innermost frame of an exception that is not allowed


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise CaseTimeout in the body after `seconds` of wall time (SIGALRM: main thread, Unix only)."""
    def expire(signum: int, frame: object) -> None:
        raise CaseTimeout(f"over {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---- base inputs ---------------------------------------------------------------------------
def onnx_test_dir() -> Path:
    """The onnx package's backend test data (light models, pytorch-converted and -operator cases)."""
    return light_dir().parent


def base_models(light: tuple[str, ...] = ("squeezenet",), pytorch_every: int = 1) -> list[tuple[str, onnx.ModelProto]]:
    """The models to mutate: light models by name and every `pytorch_every`-th pytorch-* case that imports."""
    models = [(f"light_{n}", onnx.load(str(light_dir() / f"light_{n}.onnx"))) for n in light]
    paths = sorted(onnx_test_dir().glob("pytorch-*/*/model.onnx"))[::pytorch_every]
    for p in paths:
        m = onnx.load(str(p))
        try:
            from_onnx(m)
        except OnnxImportError:
            continue  # unsupported operators: its mutations would only test the prescan
        models.append((p.parent.name, m))
    return models


def base_texts(models: list[tuple[str, onnx.ModelProto]], limit: int = 40) -> list[tuple[str, str]]:
    """Printed graphs to mutate: the imported models whose text form is small (constants in full)."""
    texts = []
    for name, m in models:
        g: Graph = from_onnx(m)
        text = print_graph(g)
        if len(text) <= 20000:
            texts.append((name, text))
    return texts[:limit]


# ---- ONNX mutations ------------------------------------------------------------------------
Mutator = Callable[[onnx.ModelProto, random.Random], "onnx.ModelProto | bytes"]


def _bit_flip(m: onnx.ModelProto, rng: random.Random) -> bytes:
    b = bytearray(m.SerializeToString())
    for _ in range(rng.randint(1, 8)):
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def _truncate(m: onnx.ModelProto, rng: random.Random) -> bytes:
    b = m.SerializeToString()
    return b[:rng.randrange(len(b))]


def _set_dim(m: onnx.ModelProto, rng: random.Random, values: tuple[int, ...]) -> onnx.ModelProto:
    """One dimension of a graph input or an initializer, or one value of an int64 initializer, set to `values`."""
    g = m.graph
    inits = {t.name for t in g.initializer}
    dims = [vi.type.tensor_type.shape.dim for vi in g.input if vi.name not in inits]
    dims = [d for d in dims if len(d)]
    shaped = [t for t in g.initializer if len(t.dims)]
    ints = [t for t in g.initializer if t.data_type == onnx.TensorProto.INT64 and 0 < np.prod(t.dims) <= 8]
    where = rng.choice([w for w, have in (("input", dims), ("initializer", shaped), ("ints", ints)) if have] or [""])
    if where == "input":
        d = rng.choice(dims)
        d[rng.randrange(len(d))].dim_value = rng.choice(values)
    elif where == "ints":  # a shape-like int64 initializer (Reshape/ConstantOfShape/Expand shape, ...)
        t = rng.choice(ints)
        arr = numpy_helper.to_array(t).copy()
        arr.reshape(-1)[rng.randrange(arr.size)] = rng.choice(values)
        t.CopyFrom(numpy_helper.from_array(arr, t.name))
    elif where == "initializer":
        t = rng.choice(shaped)
        t.dims[rng.randrange(len(t.dims))] = rng.choice(values)
    return m


def _dims(m: onnx.ModelProto, rng: random.Random) -> onnx.ModelProto:
    return _set_dim(m, rng, ODD_INTS)


def _huge_dims(m: onnx.ModelProto, rng: random.Random) -> onnx.ModelProto:
    return _set_dim(m, rng, HUGE)


def _dtype(m: onnx.ModelProto, rng: random.Random) -> onnx.ModelProto:
    g = m.graph
    if rng.random() < 0.5 and g.input:
        rng.choice(list(g.input)).type.tensor_type.elem_type = rng.choice(ELEM_TYPES)
    elif g.initializer:
        rng.choice(list(g.initializer)).data_type = rng.choice(ELEM_TYPES)
    return m


def _names(m: onnx.ModelProto) -> list[str]:
    g = m.graph
    return ([vi.name for vi in g.input] + [t.name for t in g.initializer]
            + [o for n in g.node for o in n.output])


def _dangling(m: onnx.ModelProto, rng: random.Random) -> onnx.ModelProto:
    g = m.graph
    choice = rng.randrange(3)
    if choice == 0 and g.node:
        node = rng.choice(list(g.node))
        if node.input:
            node.input[rng.randrange(len(node.input))] = f"missing_{rng.randrange(100)}"
    elif choice == 1 and g.output:
        rng.choice(list(g.output)).name = f"missing_{rng.randrange(100)}"
    elif g.node:
        del g.node[rng.randrange(len(g.node))]
    return m


def _duplicate(m: onnx.ModelProto, rng: random.Random) -> onnx.ModelProto:
    g = m.graph
    names = _names(m)
    choice = rng.randrange(4)
    if choice == 0 and g.node:
        node = rng.choice(list(g.node))
        node.output[rng.randrange(len(node.output))] = rng.choice(names)
    elif choice == 1 and g.input:
        g.input.append(rng.choice(list(g.input)))
    elif choice == 2 and g.output:
        g.output.append(rng.choice(list(g.output)))
    elif g.initializer:
        g.initializer.append(rng.choice(list(g.initializer)))
    return m


def _cycle(m: onnx.ModelProto, rng: random.Random) -> onnx.ModelProto:
    """A node reads the output of a later node (a cycle when that node depends on it), or nodes are swapped."""
    g = m.graph
    if not g.node:
        return m
    i = rng.randrange(len(g.node))
    j = rng.randrange(i, len(g.node))
    if (rng.random() < 0.5 or i == j) and g.node[i].input:  # i == j: the node reads its own output
        g.node[i].input[0] = g.node[j].output[0]
    else:
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(g.node[i])
        b.CopyFrom(g.node[j])
        g.node[i].CopyFrom(b)
        g.node[j].CopyFrom(a)
    return m


def _attr_type(m: onnx.ModelProto, rng: random.Random) -> onnx.ModelProto:
    """An attribute keeps its name but gets a value of another type (or an inconsistent type tag)."""
    nodes = [n for n in m.graph.node if n.attribute]
    if not nodes:
        return m
    a = rng.choice(list(rng.choice(nodes).attribute))
    kind = rng.randrange(5)
    name = a.name
    a.Clear()
    a.name = name
    A = onnx.AttributeProto
    if kind == 0:
        a.type, a.f = A.FLOAT, 1.5
    elif kind == 1:
        a.type, a.s = A.STRING, b"\xff\xfenot-a-number"
    elif kind == 2:
        a.type = A.INTS
        a.ints.extend(rng.sample(ODD_INTS, 3))
    elif kind == 3:
        a.type = A.TENSOR
        a.t.CopyFrom(numpy_helper.from_array(np.array([1.0, 2.0], np.float64)))
    else:
        a.type, a.i = rng.choice([A.FLOATS, A.GRAPH, A.STRINGS, A.SPARSE_TENSOR]), rng.choice(ODD_INTS)
    return m


def _attr_value(m: onnx.ModelProto, rng: random.Random) -> onnx.ModelProto:
    """An integer attribute (axis, group, kernel_shape, perm, ...) set to an odd value."""
    A = onnx.AttributeProto
    attrs = [a for n in m.graph.node for a in n.attribute if a.type in (A.INT, A.INTS)]
    if attrs:
        a = rng.choice(attrs)
        if a.type == A.INT:
            a.i = rng.choice(ODD_INTS + HUGE[:2])
        elif len(a.ints):
            a.ints[rng.randrange(len(a.ints))] = rng.choice(ODD_INTS + HUGE[:2])
    return m


def _arity(m: onnx.ModelProto, rng: random.Random) -> onnx.ModelProto:
    """A node loses its last input, gains one, or becomes another operator."""
    if not m.graph.node:
        return m
    node = rng.choice(list(m.graph.node))
    choice = rng.randrange(3)
    if choice == 0 and node.input:
        del node.input[-1]
    elif choice == 1:
        node.input.append(rng.choice(_names(m)))
    else:
        node.op_type = rng.choice(["Relu", "Add", "Conv", "Reshape", "Gemm", "Concat", "Softmax", "MaxPool"])
    return m


def _outputs(m: onnx.ModelProto, rng: random.Random) -> onnx.ModelProto:
    """A graph output becomes (or is joined by) an input, an initializer or an intermediate tensor."""
    g = m.graph
    vi = onnx.helper.make_tensor_value_info(rng.choice(_names(m)), rng.choice(ELEM_TYPES[:-1]), None)
    if g.output and rng.random() < 0.5:
        g.output[rng.randrange(len(g.output))].CopyFrom(vi)
    else:
        g.output.append(vi)
    return m


def _opset(m: onnx.ModelProto, rng: random.Random) -> onnx.ModelProto:
    for imp in m.opset_import:
        imp.version = rng.choice([0, 1, 5, 7, 11, 13, 17, 22, 99])
    return m


ONNX_MUTATIONS: dict[str, Mutator] = {
    "bit-flip": _bit_flip, "truncate": _truncate, "dims": _dims, "huge-dims": _huge_dims, "dtype": _dtype,
    "dangling": _dangling, "duplicate": _duplicate, "cycle": _cycle, "attr-type": _attr_type,
    "attr-value": _attr_value, "arity": _arity, "outputs": _outputs, "opset": _opset,
}
"""Mutation name -> function of (a copy of the model, rng) -> mutated model or serialized bytes."""


def _classify(source: str, mutation: str, run: Callable[[], object], limit: float,
              allowed: tuple[type[Exception], ...], check: Callable[[Exception], bool]) -> Outcome:
    t0 = time.perf_counter()
    try:
        with time_limit(limit):
            run()
        kind, msg, ok = OK, "", True
    except CaseTimeout as e:
        kind, msg, ok = TIMEOUT, str(e), False
    except Exception as e:  # noqa: BLE001 - every outcome is recorded and judged
        kind, msg, ok = type(e).__name__, str(e), isinstance(e, allowed) and check(e)
        if not ok:
            frame = traceback.extract_tb(e.__traceback__)[-1]
            return Outcome(source, mutation, kind, msg, time.perf_counter() - t0, ok,
                           f"{frame.filename}:{frame.lineno}")
    return Outcome(source, mutation, kind, msg, time.perf_counter() - t0, ok)


def onnx_cases(models: list[tuple[str, onnx.ModelProto]], n: int, seed: int, limit: float = 5.0,
               max_bytes: int = FUZZ_MAX_BYTES) -> list[Outcome]:
    """`n` seeded cases: mutation i % len(ONNX_MUTATIONS) applied to a random model, imported under `limit` s."""
    rng = random.Random(seed)
    names = list(ONNX_MUTATIONS)
    out = []
    for i in range(n):
        source, base = rng.choice(models)
        mutation = names[i % len(names)]
        m = onnx.ModelProto()
        m.CopyFrom(base)
        mutated = ONNX_MUTATIONS[mutation](m, rng)
        out.append(_classify(source, mutation, lambda m=mutated: from_onnx(m, max_bytes=max_bytes), limit,
                             ONNX_ERRORS, lambda e: True))
    return out


# ---- text mutations ------------------------------------------------------------------------
SIGNIFICANT = '%@{}[]()<>,=:"#\\\n -.0123456789abcxyzf'
TextMutator = Callable[[str, random.Random], str]


def _delete_char(t: str, rng: random.Random) -> str:
    k = rng.randrange(len(t))
    return t[:k] + t[k + 1:]


def _insert_char(t: str, rng: random.Random) -> str:
    k = rng.randrange(len(t) + 1)
    return t[:k] + rng.choice(SIGNIFICANT + "\x00é€") + t[k:]


def _lines(t: str, rng: random.Random) -> str:
    lines = t.split("\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    choice = rng.randrange(3)
    if choice == 0:
        lines[i], lines[j] = lines[j], lines[i]
    elif choice == 1:
        lines.insert(j, lines[i])
    else:
        del lines[i]
    return "\n".join(lines)


def _swap_token(t: str, rng: random.Random) -> str:
    toks = re.findall(r"[%@][\w.\-]+|\"[^\"]*\"|[A-Za-z_][\w.\-]*|-?\d+(?:\.\d*)?(?:e-?\d+)?|\S", t)
    spans = [m.span() for m in re.finditer(r"[%@][\w.\-]+|[A-Za-z_][\w.\-]*|-?\d+(?:\.\d*)?(?:e-?\d+)?", t)]
    if not spans:
        return t
    a, b = rng.choice(spans)
    return t[:a] + rng.choice(toks + ["99999999999999999999", "-1", "1e400", "nan", "i4", "quant", '"\\x"']) + t[b:]


def _truncate_text(t: str, rng: random.Random) -> str:
    return t[:rng.randrange(len(t))]


TEXT_MUTATIONS: dict[str, TextMutator] = {
    "delete-char": _delete_char, "insert-char": _insert_char, "lines": _lines, "swap-token": _swap_token,
    "truncate": _truncate_text,
}
"""Mutation name -> function of (printed graph, rng) -> mutated text."""


def text_cases(texts: list[tuple[str, str]], n: int, seed: int, limit: float = 5.0) -> list[Outcome]:
    """`n` seeded cases: mutation i % len(TEXT_MUTATIONS) applied to a random printed graph, then parsed."""
    rng = random.Random(seed)
    names = list(TEXT_MUTATIONS)
    out = []
    for i in range(n):
        source, base = rng.choice(texts)
        mutation = names[i % len(names)]
        text = TEXT_MUTATIONS[mutation](base, rng)
        out.append(_classify(source, mutation, lambda t=text: parse(t), limit, TEXT_ERRORS,
                             lambda e: POSITION.match(str(e)) is not None))
    return out


def counts(outcomes: list[Outcome]) -> dict[str, Counter]:
    """Outcome kinds per mutation, plus a "total" row."""
    table: dict[str, Counter] = {"total": Counter()}
    for o in outcomes:
        table.setdefault(o.mutation, Counter())[o.kind] += 1
        table["total"][o.kind] += 1
    return table


def report(title: str, outcomes: list[Outcome]) -> str:
    """A plain-text table of outcome counts by mutation, then every case that is not allowed."""
    lines = [f"{title}: {len(outcomes)} cases, {sum(o.seconds for o in outcomes):.1f} s, "
             f"slowest {max((o.seconds for o in outcomes), default=0):.2f} s"]
    for mutation, c in counts(outcomes).items():
        lines.append(f"  {mutation:<12} " + ", ".join(f"{k} {v}" for k, v in c.most_common()))
    bad = [o for o in outcomes if not o.allowed]
    lines.append(f"  not allowed: {len(bad)}")
    for o in bad[:20]:
        lines.append(f"    {o.source} / {o.mutation}: {o.kind}: {o.message[:300]} (at {o.where})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the ONNX and text fuzzers and print counts by error type; exit status 1 on any finding."""
    ap = argparse.ArgumentParser(prog="python -m tensorsmith.bench.fuzz_import", description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=positive_int, default=2000, help="ONNX cases (and as many text cases)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=positive_float, default=10.0, help="seconds per case")
    ap.add_argument("--light", default="squeezenet,shufflenet,inception_v1,resnet50",
                    help=f"light models to mutate (comma separated; known: {', '.join(LIGHT_MODELS)})")
    args = ap.parse_args(argv)
    light = split_csv(args.light)
    reject_unknown(ap, "--light", light, LIGHT_MODELS, "light model")
    models = base_models(tuple(light))
    print(f"{len(models)} base models ({sum(1 for s, _ in models if s.startswith('light_'))} light)")
    onnx_out = onnx_cases(models, args.cases, args.seed, args.limit)
    print(report("ONNX import", onnx_out))
    text_out = text_cases(base_texts(models), args.cases, args.seed, args.limit)
    print(report("text parse", text_out))
    return 0 if all(o.allowed for o in onnx_out + text_out) else 1


if __name__ == "__main__":
    sys.exit(main())
