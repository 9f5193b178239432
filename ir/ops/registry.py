"""The op registry: each op declared once with its inputs, attribute schema and type rule."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..graph import Graph
from ..types import TensorType

_REQUIRED = object()

ATTR_KINDS = ("int", "float", "str", "bool", "ints", "floats", "int?", "graph")


class TypeInferenceError(Exception):
    """An op's inputs or attributes do not fit its type rule; `kind` says which check failed."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def shape_error(message: str) -> TypeInferenceError:
    """A shape-mismatch error."""
    return TypeInferenceError("shape-mismatch", message)


def dtype_error(message: str) -> TypeInferenceError:
    """A dtype-mismatch error."""
    return TypeInferenceError("dtype-mismatch", message)


def attr_error(message: str) -> TypeInferenceError:
    """A missing, unknown or ill-typed attribute."""
    return TypeInferenceError("attribute", message)


@dataclass(frozen=True)
class Attr:
    """One attribute of an op: name, kind, default (absent means required), allowed choices."""

    name: str
    kind: str
    default: Any = _REQUIRED
    choices: tuple[Any, ...] | None = None

    @property
    def required(self) -> bool:
        """True when the attribute has no default."""
        return self.default is _REQUIRED


InferFn = Callable[[list[TensorType], dict[str, Any]], list[TensorType]]


@dataclass(frozen=True)
class OpDef:
    """An op: its input names (`name?` optional, `name*` variadic), attributes and type rule."""

    name: str
    inputs: tuple[str, ...]
    attrs: tuple[Attr, ...]
    infer: InferFn
    doc: str
    elementwise: bool = False
    num_outputs: int = 1
    attr_index: dict[str, Attr] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attr_index", {a.name: a for a in self.attrs})

    @property
    def min_inputs(self) -> int:
        """Fewest inputs the op accepts."""
        return sum(1 for s in self.inputs if not s.endswith(("?", "*")))

    @property
    def max_inputs(self) -> int | None:
        """Most inputs the op accepts (None: unbounded)."""
        if any(s.endswith("*") for s in self.inputs):
            return None
        return len(self.inputs)

    def check_arity(self, n: int) -> None:
        """Raise unless `n` inputs fit the op's signature."""
        hi = self.max_inputs
        if n < self.min_inputs or (hi is not None and n > hi):
            want = f"{self.min_inputs}" if hi == self.min_inputs else (
                f"{self.min_inputs} to {hi}" if hi is not None else f"at least {self.min_inputs}"
            )
            raise TypeInferenceError(
                "arity", f"{self.name} takes {want} inputs ({', '.join(self.inputs)}), got {n}"
            )

    def normalize_attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Validate `attrs` against the schema and fill in defaults; returns a new dict."""
        unknown = sorted(set(attrs) - set(self.attr_index))
        if unknown:
            known = ", ".join(self.attr_index) or "none"
            raise attr_error(f"{self.name}: unknown attribute(s) {unknown}; known: {known}")
        out: dict[str, Any] = {}
        for a in self.attrs:
            if a.name in attrs:
                out[a.name] = _coerce(self.name, a, attrs[a.name])
            elif a.required:
                raise attr_error(f"{self.name}: missing required attribute {a.name!r} ({a.kind})")
            else:
                out[a.name] = a.default
        return out


def _coerce(op: str, a: Attr, v: Any) -> Any:
    """Check one attribute value's kind; lists become tuples so attrs stay hashable."""
    bad = attr_error(f"{op}: attribute {a.name!r} must be {a.kind}, got {v!r}")
    if a.kind in ("int", "int?"):
        if v is None and a.kind == "int?":
            out: Any = None
        elif isinstance(v, bool) or not isinstance(v, int):
            if hasattr(v, "dtype") and getattr(v.dtype, "kind", "") in "iu" and getattr(v, "ndim", 1) == 0:
                out = int(v)
            else:
                raise bad
        else:
            out = int(v)
    elif a.kind == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            if hasattr(v, "dtype") and getattr(v, "ndim", 1) == 0:
                return float(v)
            raise bad
        out = float(v)
    elif a.kind == "str":
        if not isinstance(v, str):
            raise bad
        out = v
    elif a.kind == "bool":
        if not isinstance(v, bool):
            raise bad
        out = v
    elif a.kind == "ints":
        if isinstance(v, (str, bytes)) or not isinstance(v, Sequence) and not hasattr(v, "tolist"):
            raise bad
        items = list(v.tolist() if hasattr(v, "tolist") else v)
        if any(isinstance(x, bool) or not isinstance(x, int) for x in items):
            raise bad
        out = tuple(int(x) for x in items)
    elif a.kind == "graph":
        if not isinstance(v, Graph):
            raise bad
        out = v
    elif a.kind == "floats":
        if isinstance(v, (str, bytes)) or not isinstance(v, Sequence) and not hasattr(v, "tolist"):
            raise bad
        items = list(v.tolist() if hasattr(v, "tolist") else v)
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in items):
            raise bad
        out = tuple(float(x) for x in items)
    else:  # pragma: no cover - schema error in an op declaration
        raise AssertionError(f"unknown attribute kind {a.kind}")
    if a.choices is not None and out not in a.choices:
        raise attr_error(f"{op}: attribute {a.name!r} must be one of {list(a.choices)}, got {out!r}")
    return out


OPS: dict[str, OpDef] = {}


def register_op(
    name: str,
    inputs: Sequence[str],
    attrs: Sequence[Attr] = (),
    *,
    doc: str,
    elementwise: bool = False,
    num_outputs: int = 1,
) -> Callable[[InferFn], InferFn]:
    """Decorator: declare op `name` with the decorated function as its type rule."""

    def deco(fn: InferFn) -> InferFn:
        if name in OPS:
            raise ValueError(f"op {name!r} is already registered")
        OPS[name] = OpDef(name, tuple(inputs), tuple(attrs), fn, doc, elementwise, num_outputs)
        return fn

    return deco


def get_op(name: str) -> OpDef:
    """The OpDef called `name`; KeyError lists the registered ops."""
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; registered ops: {', '.join(sorted(OPS))}") from None


def infer_types(op: str, input_types: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """Output types of `op` applied to `input_types` with normalized `attrs`."""
    d = get_op(op)
    d.check_arity(len(input_types))
    return d.infer(input_types, attrs)
