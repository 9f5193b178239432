"""Shared machinery of the ONNX importer: errors, dtype tables, naming, and the per-node context.

A converter turns one ONNX node into IR nodes. Its inputs are *handles*: an IR `Value`, or a
numpy array when the tensor is known at import time (initializers, constants, folded shape
computations). `NodeContext.op` folds IR ops whose inputs are all arrays with the small numpy
rules of `onnx_fold` and emits an IR node otherwise, so one converter serves both cases.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .dtypes import DType, bf16, boolean, dtype_from_numpy, f16, f32, f64, i4, i8, i32, i64, u8
from .graph import Node, Value
from .onnx_fold import FOLD_RULES
from .ops import TypeInferenceError, get_op
from .types import TensorType

Handle = Value | np.ndarray
"""What a converter works on: an IR value, or an array known at import time."""

MAX_TENSOR_BYTES = 4 << 30
"""Default limit on the size of any one tensor of an imported model (inputs, weights, folded constants,
intermediate values): larger ones are refused before anything is allocated."""


class OnnxImportError(ValueError):
    """The model cannot be imported; `problems` lists every reason, each with its node."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class UnsupportedError(Exception):
    """A supported operator used in a way the importer cannot express (raised by converters)."""


ONNX_TO_IR: dict[int, DType] = {
    onnx.TensorProto.DOUBLE: f64,
    onnx.TensorProto.FLOAT: f32,
    onnx.TensorProto.FLOAT16: f16,
    onnx.TensorProto.BFLOAT16: bf16,
    onnx.TensorProto.INT64: i64,
    onnx.TensorProto.INT32: i32,
    onnx.TensorProto.INT8: i8,
    onnx.TensorProto.UINT8: u8,
    onnx.TensorProto.INT4: i4,
    onnx.TensorProto.BOOL: boolean,
}
IR_TO_ONNX: dict[str, int] = {d.name: k for k, d in ONNX_TO_IR.items()}
NUMPY_IR_DTYPES: frozenset[np.dtype] = frozenset(d.np_dtype for d in ONNX_TO_IR.values())
"""Numpy dtypes of arrays that have an IR dtype (folds on these are sized before they run)."""


def onnx_dtype_name(elem_type: int) -> str:
    """The ONNX name of an element type (e.g. DOUBLE)."""
    try:
        return onnx.TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"type {elem_type}"


def np_dtype_of_onnx(elem_type: int) -> np.dtype:
    """The numpy dtype that holds ONNX element type `elem_type`."""
    if elem_type in ONNX_TO_IR:
        return ONNX_TO_IR[elem_type].np_dtype
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def ir_dtype_of_onnx(elem_type: int, what: str) -> DType:
    """The IR dtype of ONNX element type `elem_type`; UnsupportedError names `what` otherwise."""
    if elem_type not in ONNX_TO_IR:
        known = ", ".join(onnx_dtype_name(k) for k in ONNX_TO_IR)
        raise UnsupportedError(f"{what}: element type {onnx_dtype_name(elem_type)} has no IR dtype "
                               f"(supported: {known})")
    return ONNX_TO_IR[elem_type]


_NAME_BAD = re.compile(r"[^A-Za-z0-9_.\-]")


def sanitize(name: str) -> str:
    """`name` with every character the text form does not allow replaced by '_'."""
    return _NAME_BAD.sub("_", name) or "v"


class Namer:
    """Hands out unique IR value names."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def reserve(self, name: str) -> None:
        """Take `name` exactly as given (an ONNX graph input or output name)."""
        self.taken.add(name)

    def fresh(self, base: str) -> str:
        """A name not yet handed out, `base` sanitized, with a `_k` suffix when needed."""
        base = sanitize(base)
        name, k = base, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name


def shape_of(h: Handle) -> tuple[int, ...]:
    """The static shape of a handle."""
    return tuple(h.shape) if isinstance(h, np.ndarray) else h.type.shape


def np_dtype(h: Handle) -> np.dtype:
    """The numpy dtype of a handle."""
    return h.dtype if isinstance(h, np.ndarray) else h.type.dtype.np_dtype


def describe(h: Handle) -> str:
    """A short description of a handle for error messages."""
    if isinstance(h, np.ndarray):
        return f"constant {h.dtype}{list(h.shape)}"
    return f"%{h.name}: {h.type}"


def attribute_value(a: onnx.AttributeProto) -> Any:
    """A Python value for an ONNX attribute: ints, floats, str, lists, numpy arrays for tensors."""
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, onnx.TensorProto):
        return numpy_helper.to_array(v)
    if isinstance(v, list):
        return [x.decode("utf-8") if isinstance(x, bytes) else x for x in v]
    return v


def tensor_bytes(shape: Sequence[int], dtype: np.dtype | DType) -> int:
    """Bytes a dense tensor of `shape` and `dtype` takes (ValueError for a negative dimension)."""
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise ValueError(f"shape {dims} has a negative dimension")
    itemsize = dtype.np_dtype.itemsize if isinstance(dtype, DType) else np.dtype(dtype).itemsize
    return math.prod(dims) * itemsize


class Emitter:
    """Owns the IR nodes and names of one import; turns arrays into IR constants on demand."""

    def __init__(self, max_bytes: int = MAX_TENSOR_BYTES) -> None:
        self.max_bytes = max_bytes
        self.namer = Namer()
        self.nodes: list[Node] = []
        self.hints: dict[int, tuple[np.ndarray, str]] = {}
        self._consts: dict[int, tuple[np.ndarray, Value]] = {}

    def constant(self, arr: np.ndarray, fallback: str = "const", exact: str | None = None) -> Value:
        """The IR constant holding `arr` (one per array object), named after the ONNX tensor it
        came from, else `fallback`; `exact` is a name already reserved for it."""
        key = id(arr)
        if key in self._consts:
            return self._consts[key][1]
        name = self.hints[key][1] if key in self.hints else fallback
        try:
            dt = dtype_from_numpy(arr.dtype)
        except ValueError:
            raise UnsupportedError(f"constant {name!r} has numpy dtype {arr.dtype}, which has no IR dtype") from None
        data = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
        v = Value(exact or self.namer.fresh(name), TensorType(data.shape, dt), data)
        self._consts[key] = (arr, v)
        return v

    def check_size(self, shape: Sequence[int], dtype: np.dtype | DType, what: str) -> None:
        """UnsupportedError when a tensor of `shape` and `dtype` would exceed the import's byte limit."""
        n = tensor_bytes(shape, dtype)
        if n > self.max_bytes:
            name = dtype.name if isinstance(dtype, DType) else np.dtype(dtype).name
            raise UnsupportedError(f"{what} of shape {[int(d) for d in shape]} ({name}) would take {n} bytes, over "
                                   f"the limit of {self.max_bytes} bytes per tensor (from_onnx(max_bytes=...))")

    def has_constant(self, arr: np.ndarray) -> bool:
        """True when `arr` already became an IR constant."""
        return id(arr) in self._consts

    def emit(self, op: str, inputs: list[Value], attrs: dict[str, Any], base: str) -> Value:
        """Append IR node `op(inputs){attrs}` and return its output (type-checked)."""
        return self.emit_all(op, inputs, attrs, base)[0]

    def emit_all(self, op: str, inputs: list[Value], attrs: dict[str, Any], base: str) -> list[Value]:
        """Append IR node `op(inputs){attrs}` and return all its outputs (type-checked)."""
        opdef = get_op(op)
        try:
            opdef.check_arity(len(inputs))
            attrs = opdef.normalize_attrs(attrs)
            types = opdef.infer([v.type for v in inputs], attrs)
        except TypeInferenceError as e:
            args = ", ".join(describe(v) for v in inputs)
            raise ValueError(f"IR op {op}({args}): {e}") from None
        for t in types:
            self.check_size(t.shape, t.dtype, f"the result of IR op {op}")
        outs = [Value(self.namer.fresh(f"{base}.{op.replace('-', '_')}"), t) for t in types]
        self.nodes.append(Node(op, inputs, attrs, outs))
        return outs


class NodeContext:
    """What a converter sees of one ONNX node: inputs as handles, attributes, opset, emitters."""

    def __init__(self, node: onnx.NodeProto, inputs: list[Handle | None], opset: int, emitter: Emitter) -> None:
        self.node = node
        self.inputs = inputs
        self.opset = opset
        self.emitter = emitter
        self.base = sanitize(next((o for o in node.output if o), node.op_type))
        self._attrs = {a.name: a for a in node.attribute}

    # ---- attributes and inputs -----------------------------------------------------------
    def attr(self, name: str, default: Any = None) -> Any:
        """The attribute `name` as a Python value, or `default` when absent."""
        a = self._attrs.get(name)
        return default if a is None else attribute_value(a)

    def has_attr(self, name: str) -> bool:
        """True when the node sets attribute `name`."""
        return name in self._attrs

    def input(self, i: int) -> Handle | None:
        """Input `i`, or None when it is absent (missing or the empty name)."""
        return self.inputs[i] if i < len(self.inputs) else None

    def need(self, i: int, what: str) -> Handle:
        """Input `i`; raises when it is absent."""
        h = self.input(i)
        if h is None:
            raise ValueError(f"input {i} ({what}) is required")
        return h

    def const(self, i: int, what: str) -> np.ndarray | None:
        """Input `i` as an array (None when absent); UnsupportedError when it is not constant."""
        h = self.input(i)
        if h is None or isinstance(h, np.ndarray):
            return h
        raise UnsupportedError(f"input {i} ({what}) must be a constant at import, but it is computed "
                               f"at run time ({describe(h)})")

    # ---- building ------------------------------------------------------------------------
    def value(self, h: Handle) -> Value:
        """`h` as an IR value (arrays become constants)."""
        return h if isinstance(h, Value) else self.emitter.constant(h, fallback=f"{self.base}.const")

    def op(self, op: str, *args: Handle, **attrs: Any) -> Handle:
        """Apply IR op `op`: folded with numpy when every input is an array, else emitted."""
        if op in FOLD_RULES and all(isinstance(a, np.ndarray) for a in args):
            opdef = get_op(op)
            try:
                opdef.check_arity(len(args))
                norm = opdef.normalize_attrs(attrs)
                if all(a.dtype in NUMPY_IR_DTYPES for a in args):  # sized before numpy allocates the result
                    for t in opdef.infer([TensorType(a.shape, dtype_from_numpy(a.dtype)) for a in args], norm):
                        self.emitter.check_size(t.shape, t.dtype, f"the folded result of IR op {op}")
            except TypeInferenceError as e:
                raise ValueError(f"IR op {op}: {e}") from None
            out = np.asarray(FOLD_RULES[op](list(args), norm))
            return self.derived(out, args[0], f".{op.replace('-', '_')}")  # type: ignore[arg-type]
        return self.emitter.emit(op, [self.value(a) for a in args], attrs, self.base)

    def op_outputs(self, op: str, *args: Handle, **attrs: Any) -> list[Value]:
        """Emit IR op `op` (never folded) and return all its outputs: for ops with several."""
        return self.emitter.emit_all(op, [self.value(a) for a in args], attrs, self.base)

    def reshape(self, x: Handle, shape: Sequence[int]) -> Handle:
        """`x` reshaped (one -1 allowed); a no-op when the shape is unchanged."""
        from .ops.shape_ops import resolve_reshape

        try:
            target = resolve_reshape("reshape", shape_of(x), tuple(int(d) for d in shape))
        except TypeInferenceError as e:
            raise ValueError(f"{e} (input {describe(x)})") from None
        if target == shape_of(x):
            return x
        return self.op("reshape", x, shape=target)

    def transpose(self, x: Handle, perm: Sequence[int]) -> Handle:
        """`x` with axes permuted; a no-op for the identity permutation."""
        perm = [int(p) for p in perm]
        if perm == list(range(len(perm))):
            return x
        return self.op("transpose", x, perm=perm)

    def derived(self, new: np.ndarray, source: np.ndarray, suffix: str = "") -> np.ndarray:
        """`new`, named after the constant it was computed from (e.g. a transposed weight)."""
        if id(source) in self.emitter.hints and id(new) not in self.emitter.hints:
            self.emitter.hints[id(new)] = (new, self.emitter.hints[id(source)][1] + suffix)
        return new

    def check_size(self, shape: Sequence[int], dtype: np.dtype | DType, what: str) -> None:
        """UnsupportedError when a tensor this node would make exceeds the import's byte limit."""
        self.emitter.check_size(shape, dtype, what)

    def scalar(self, value: float, like: Handle) -> np.ndarray:
        """A 0-d array holding `value` in the dtype of `like`."""
        return np.asarray(value, dtype=np_dtype(like))


Converter = Callable[[NodeContext], list[Handle | None]]
CONVERTERS: dict[str, Converter] = {}
"""ONNX op type (default domain) -> converter returning one handle per node output."""


def converter(*op_types: str) -> Callable[[Converter], Converter]:
    """Decorator: register the function as the converter of `op_types`."""

    def deco(fn: Converter) -> Converter:
        for t in op_types:
            if t in CONVERTERS:
                raise ValueError(f"ONNX op {t} already has a converter")
            CONVERTERS[t] = fn
        return fn

    return deco


def norm_axis(axis: int, rank: int, what: str = "axis") -> int:
    """`axis` made non-negative for `rank`; ValueError when out of range."""
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0
