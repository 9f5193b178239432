"""GraphBuilder methods generated from the op registry: one real method per op, with signature and doc."""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Callable
from typing import Any

from .ops import OpDef, TypeInferenceError

ATTR_ANNOTATIONS: dict[str, str] = {
    "int": "int",
    "int?": "int | None",
    "float": "float",
    "str": "str",
    "bool": "bool",
    "ints": "Sequence[int]",
    "floats": "Sequence[float]",
    "graph": "Graph",
}
"""The annotation a generated method shows for each attribute kind."""

INPUT_ANNOTATION = "Value | np.ndarray | float | int"
"""What a generated method accepts for a tensor input: a Value, or an array / scalar that becomes a constant."""


def method_name(op: str) -> str:
    """The builder method for `op`: dashes become underscores (`reduce-mean` -> `reduce_mean`)."""
    name = op.replace("-", "_")
    return name + "_" if keyword.iskeyword(name) else name


def op_signature(opdef: OpDef) -> inspect.Signature:
    """`(self, x, weight, bias=None, *, attr=default, ..., name=None)` for the op's inputs and attributes."""
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for slot in opdef.inputs:
        base = slot.rstrip("?*")
        if slot.endswith("*"):
            params.append(inspect.Parameter(base, inspect.Parameter.VAR_POSITIONAL, annotation=INPUT_ANNOTATION))
        elif slot.endswith("?"):
            params.append(inspect.Parameter(base, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                            annotation=f"{INPUT_ANNOTATION} | None"))
        else:
            params.append(inspect.Parameter(base, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                            annotation=INPUT_ANNOTATION))
    for a in opdef.attrs:
        default = inspect.Parameter.empty if a.required else a.default
        params.append(inspect.Parameter(a.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=ATTR_ANNOTATIONS.get(a.kind, a.kind)))
    params.append(inspect.Parameter("name", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="str | None"))
    return inspect.Signature(params, return_annotation="Value")


def op_docstring(opdef: OpDef) -> str:
    """The op's own doc, then its inputs and attributes (kind, default, allowed values)."""
    lines = [opdef.doc.strip(), "", f"Adds one `{opdef.name}` node and returns its "
             + ("first output (`op_multi` returns all)." if opdef.num_outputs > 1 else "output.")]
    lines += ["", "Inputs (a Value, or an array or scalar that becomes a constant):"]
    for slot in opdef.inputs:
        note = " (optional)" if slot.endswith("?") else " (any number)" if slot.endswith("*") else ""
        lines.append(f"    {slot.rstrip('?*')}{note}")
    if opdef.attrs:
        lines += ["", "Attributes (keyword-only):"]
        for a in opdef.attrs:
            default = "required" if a.required else f"default {a.default!r}"
            choices = f"; one of {', '.join(map(repr, a.choices))}" if a.choices else ""
            lines.append(f"    {a.name}: {a.kind}, {default}{choices}")
    lines += ["", "`name` names the output value; it must not be taken already."]
    return "\n".join(lines)


def make_op_method(opdef: OpDef, error: type[Exception]) -> Callable[..., Any]:
    """A builder method adding `opdef`'s op: arguments are checked against its signature (else `error`),
    then `op` is called."""
    sig = op_signature(opdef)
    slots = [(s.rstrip("?*"), s[-1] if s[-1] in "?*" else "") for s in opdef.inputs]
    attr_names = [a.name for a in opdef.attrs]
    mname = method_name(opdef.name)

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            bound = sig.bind(self, *args, **kwargs)
        except TypeError as e:
            why = str(e)
            try:
                opdef.check_arity(len(args))
            except TypeInferenceError as arity:
                why = str(arity)
            raise error(f"GraphBuilder.{mname}: {why}; signature {mname}{str(sig).replace('self, ', '', 1)}") from None
        values: list[Any] = []
        skipped = None
        for base, mark in slots:
            given = bound.arguments.get(base)
            if mark == "?" and given is None:
                skipped = skipped or base
                continue
            if skipped is not None and (given or mark != "*"):
                raise error(f"GraphBuilder.{mname}: input {base!r} is given but the optional {skipped!r} "
                                "before it is not")
            if given is None and mark == "":
                raise error(f"GraphBuilder.{mname}: input {base!r} is None; pass a Value or an array")
            values.extend(given if mark == "*" else [given])
        attrs = {k: bound.arguments[k] for k in attr_names if k in bound.arguments}
        return self.op(opdef.name, *values, name=bound.arguments.get("name"), **attrs)

    method.__name__ = mname
    method.__qualname__ = f"GraphBuilder.{mname}"
    method.__doc__ = op_docstring(opdef)
    method.__signature__ = sig  # type: ignore[attr-defined]
    return method
