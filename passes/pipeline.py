"""Pipelines as strings (`"dce,prune{sparsity=0.9,pattern=block}"`) and the pass driver."""

from __future__ import annotations

import dataclasses
import time
import typing
from collections.abc import Sequence
from typing import Any, Literal

from ..ir.graph import Graph
from .base import PASSES, Pass, PassContext, PassRecord
from .instruments import Instrument, VerifyEach
from .report_table import summarize


class PipelineError(ValueError):
    """A pipeline string names an unknown pass or gives a bad option."""


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside braces."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise PipelineError(f"unbalanced '}}' in pipeline {text!r}")
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise PipelineError(f"unbalanced '{{' in pipeline {text!r}")
    parts.append("".join(cur))
    return parts


def _convert(cls: type[Pass], fname: str, ftype: Any, raw: str) -> Any:
    origin = typing.get_origin(ftype)
    args = typing.get_args(ftype)
    where = f"pass {cls.name!r} option {fname}={raw!r}"
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        non_none = [a for a in args if a is not type(None)]
        if raw.lower() in ("none", "null") and len(non_none) < len(args):
            return None
        return _convert(cls, fname, non_none[0], raw)
    if origin is Literal:
        for choice in args:
            if str(choice) == raw:
                return choice
        raise PipelineError(f"{where}: must be one of {', '.join(map(str, args))}")
    if ftype is bool:
        if raw.lower() in ("true", "1", "yes", "on"):
            return True
        if raw.lower() in ("false", "0", "no", "off"):
            return False
        raise PipelineError(f"{where}: must be true or false")
    if ftype in (int, float):
        try:
            return ftype(raw)
        except ValueError:
            raise PipelineError(f"{where}: must be {ftype.__name__}") from None
    if origin is tuple:
        try:
            return tuple(int(x) for x in raw.replace(":", "x").split("x"))
        except ValueError:
            raise PipelineError(f"{where}: must be integers like 32x32 or 2:4") from None
    return raw


def describe_option_type(ftype: Any) -> str:
    """An option's type as a user writes it: `one of none|tensor|channel`, `int`, `float or none`, `true|false`."""
    origin, args = typing.get_origin(ftype), typing.get_args(ftype)
    if origin is Literal:
        return "one of " + "|".join(map(str, args))
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        shown = [describe_option_type(a) for a in args if a is not type(None)]
        return " or ".join(shown) + (" or none" if type(None) in args else "")
    if ftype is bool:
        return "true|false"
    if origin is tuple:
        return "AxB (e.g. 32x32 or 2:4)"
    return getattr(ftype, "__name__", str(ftype))


def _option_fields(cls: type[Pass]) -> dict[str, dataclasses.Field]:
    """The options of pass class `cls` (its dataclass fields) by name."""
    return {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}


def make_pass(name: str, options: dict[str, str] | None = None) -> Pass:
    """Instantiate the registered pass `name` from string options, checking every option."""
    if name not in PASSES:
        known = ", ".join(sorted(PASSES))
        raise PipelineError(f"unknown pass {name!r}; registered passes: {known}")
    cls = PASSES[name]
    hints = typing.get_type_hints(cls)
    fields = _option_fields(cls)
    if options and not fields:
        raise PipelineError(f"pass {name!r} takes no options, but was given {', '.join(sorted(options))}")
    kwargs = {}
    for key, raw in (options or {}).items():
        if key not in fields:
            opts = ", ".join(f"{f}: {describe_option_type(hints.get(f))}" for f in fields) or "none"
            raise PipelineError(f"pass {name!r} has no option {key!r}; its options: {opts}")
        kwargs[key] = _convert(cls, key, hints[key], raw.strip())
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise PipelineError(f"pass {name!r}: {e}") from None


def parse_pipeline(text: str) -> list[Pass]:
    """Parse `"a,b{k=v,k2=v2},c"` into pass instances."""
    from . import builtin  # noqa: F401  (registers the built-in passes)

    if not text.strip():
        return []
    items = _split_top(text, ",")
    if len(items) > 1 and not items[-1].strip():
        items = items[:-1]  # one trailing comma is allowed, as in a Python list
    passes = []
    for pos, item in enumerate(items, start=1):
        item = item.strip()
        if not item:
            raise PipelineError(f"pipeline {text!r}: pass {pos} is empty (two commas in a row, or a leading one)")
        if "{" in item:
            if not item.endswith("}"):
                raise PipelineError(f"pipeline item {item!r}: options must end with '}}'")
            name, body = item[:-1].split("{", 1)
            if not name.strip():
                raise PipelineError(f"pipeline {text!r}: pass {pos} has options {{{body}}} but no pass name")
            if name.strip() in PASSES and not _option_fields(PASSES[name.strip()]):
                raise PipelineError(f"pass {name.strip()!r} takes no options, but was given {{{body}}}")
            opts: dict[str, str] = {}
            kvs = _split_top(body, ",")
            if len(kvs) > 1 and not kvs[-1].strip():
                kvs = kvs[:-1]  # a trailing comma, as between passes
            for kv in kvs:
                if not kv.strip():
                    raise PipelineError(f"pass {name.strip()!r}: an empty option in {item!r}")
                if "=" not in kv:
                    raise PipelineError(f"pass {name.strip()!r}: option {kv.strip()!r} must be key=value")
                k, v = kv.split("=", 1)
                if k.strip() in opts:
                    raise PipelineError(f"pass {name.strip()!r}: option {k.strip()!r} is given twice in {item!r}")
                opts[k.strip()] = v.strip()
            passes.append(make_pass(name.strip(), opts))
        else:
            passes.append(make_pass(item))
    return passes


def run_pipeline(
    graph: Graph,
    pipeline: str | Sequence[Pass],
    *,
    target: str | None = None,
    ctx: PassContext | None = None,
    instruments: Sequence[Instrument] = (),
) -> Graph:
    """Run `pipeline` on a copy of `graph` and return the result (the input is left as it was).

    Instruments from `ctx` and `instruments` see every pass; with `ctx.verify_each` (the
    default) the graph is verified after each pass. Reports are logged in `ctx.records`.
    """
    passes = parse_pipeline(pipeline) if isinstance(pipeline, str) else list(pipeline)
    ctx = ctx or PassContext(target=target)
    if target is not None:
        ctx.target = target
    insts: list[Instrument] = [*ctx.instruments, *instruments]
    if ctx.verify_each and not any(isinstance(i, VerifyEach) for i in insts):
        insts.insert(0, VerifyEach())
    g = graph.copy()
    for p in passes:
        if not all(i.should_run(g, p, ctx) for i in insts):
            ctx.records.append(PassRecord(str(p), False, "skipped by an instrument", 0.0,
                                          summary="skipped by an instrument"))
            continue
        for i in insts:
            i.before_pass(g, p, ctx)
        before = {"nodes_before": len(g.nodes), "constant_bytes_before": g.parameter_bytes()}
        t0 = time.perf_counter()
        result = p.run(g, ctx)
        dt = time.perf_counter() - t0
        for i in insts:
            i.after_pass(g, p, result, ctx)
        g = result.graph
        stats = {**before, "nodes_after": len(g.nodes), "constant_bytes_after": g.parameter_bytes(), **result.stats}
        ctx.records.append(PassRecord(str(p), result.changed, result.report, dt, stats,
                                      result.summary or summarize(result.report)))
    return g
