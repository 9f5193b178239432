"""GraphBuilder: build graphs in code; numpy arrays become constants, types are inferred."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .builder_methods import make_op_method, method_name
from .dtypes import DType, dtype_from_numpy
from .graph import Graph, Node, Value
from .ops import OPS, TypeInferenceError, get_op
from .types import TensorType
from .verify import verify

ArrayLike = Value | np.ndarray | float | int


class BuildError(ValueError):
    """An op added through the builder does not type-check; the message names op and inputs."""


def as_constant_array(arr: Any, like: DType | None = None) -> np.ndarray:
    """`arr` as an array with an IR dtype: float64 becomes f32 (unless `like` is f64), Python scalars take `like`."""
    if isinstance(arr, (int, float)) and not isinstance(arr, bool) and like is not None:
        return np.asarray(arr, dtype=like.np_dtype)
    a = np.asarray(arr)
    if a.dtype == np.float64 and (like is None or like.name != "f64"):
        a = a.astype(np.float32)
    dtype_from_numpy(a.dtype)  # raises for dtypes without an IR dtype
    return a


def type_error(where: str, given: Any) -> str | None:
    """Why `given` is not a TensorType (with the spelling to use instead), or None when it is one."""
    if isinstance(given, TensorType):
        return None
    hint = "write the type as dtype[shape], e.g. f32[1, 64] (from tensorsmith.ir import f32)"
    if isinstance(given, (tuple, list)):
        shape = ", ".join(map(str, given))
        return f"{where}: got the shape {given!r} where a tensor type is expected; {hint.replace('1, 64', shape)}"
    if isinstance(given, str):
        return f"{where}: got the string {given!r} where a tensor type is expected; {hint}"
    if isinstance(given, DType):
        return f"{where}: got the element type {given.name} without a shape; {hint.replace('f32', given.name)}"
    if isinstance(given, (np.dtype, type)):
        try:
            np_name = np.dtype(given).name
            ir = dtype_from_numpy(np.dtype(given)).name
        except (TypeError, ValueError):
            return f"{where}: got {given!r} where a tensor type is expected; {hint}"
        return f"{where}: got the numpy element type {np_name} without a shape; {hint.replace('f32', ir)}"
    return f"{where}: got {type(given).__name__} {given!r} where a tensor type is expected; {hint}"


class GraphBuilder:
    """Builds a Graph op by op; each op is type-checked as it is added.

    Every op in the registry is a method (`b.relu(x)`, `b.reduce_mean(x, axes=[1])`), generated from its
    declaration with its signature and doc; `GraphBuilder.op_methods()` lists them. A name given twice
    (`name="h"` on two nodes) is an error naming both uses, unless `rename_duplicates=True`, which makes
    the second `h_1`.
    """

    def __init__(self, name: str, *, rename_duplicates: bool = False) -> None:
        self.name = name
        self.rename_duplicates = rename_duplicates
        self.inputs: list[Value] = []
        self.nodes: list[Node] = []
        self.outputs: list[Value] = []
        self._names: dict[str, str] = {}
        self._count = 0

    @staticmethod
    def op_methods() -> dict[str, str]:
        """Every op's builder method: method name -> op name (for ops registered so far)."""
        return {method_name(op): op for op in OPS}

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.op_methods()))

    # ---- values --------------------------------------------------------------------------
    def _unique(self, base: str, use: str) -> str:
        name, k = base, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names[name] = use
        return name

    def _claim(self, name: str | None, auto: str, use: str) -> str:
        """`name` if free (or renamed when asked for), else an error naming both uses; `auto` when None."""
        if name is None:
            return self._unique(auto, use)
        if name in self._names and not self.rename_duplicates:
            raise BuildError(f"graph {self.name}: name {name!r} is already taken by {self._names[name]}; "
                             f"cannot use it again for {use} (pick another name, or build with "
                             "GraphBuilder(..., rename_duplicates=True) to get a suffixed one)")
        return self._unique(name, use)

    def input(self, name: str, type: TensorType) -> Value:
        """Declare a graph input called `name` of `type` (e.g. `f32[1, 64]`)."""
        why = type_error(f"graph {self.name}, input {name!r}", type)
        if why:
            raise BuildError(why)
        if name in self._names:
            raise BuildError(f"graph {self.name}: input name {name!r} is already taken by {self._names[name]}")
        v = Value(self._unique(name, f"input {name!r}"), type)
        self.inputs.append(v)
        return v

    def const(self, array: Any, name: str | None = None, dtype: DType | None = None) -> Value:
        """A constant holding `array` (float64 becomes f32; `dtype` casts explicitly, from the array as given)."""
        return self._constant(array, name, "c", dtype)

    def _constant(self, array: Any, name: str | None, auto: str, dtype: DType | None = None) -> Value:
        a = as_constant_array(array) if dtype is None else np.asarray(array).astype(dtype.np_dtype)
        a = np.array(a, copy=True, order="C")
        label = f"a constant {dtype_from_numpy(a.dtype)}{list(a.shape)}"
        return Value(self._claim(name, auto, label), TensorType(a.shape, dtype_from_numpy(a.dtype)), a)

    def _value(self, x: ArrayLike, name: str, like: DType | None) -> Value:
        if isinstance(x, Value):
            return x
        return self._constant(as_constant_array(x, like), None, name)

    # ---- generic op ----------------------------------------------------------------------
    def op(self, op: str, *inputs: ArrayLike, name: str | None = None, **attrs: Any) -> Value:
        """Add `op` applied to `inputs` with `attrs`; returns its (first) output."""
        return self.op_multi(op, *inputs, name=name, **attrs)[0]

    def op_multi(self, op: str, *inputs: ArrayLike, name: str | None = None, **attrs: Any) -> list[Value]:
        """Add `op` and return all its outputs."""
        opdef = get_op(op)
        out_name = self._claim(name, f"{op.replace('-', '_')}{self._count}", f"the output of a {op} node")
        self._count += 1
        like = next((x.type.dtype for x in inputs if isinstance(x, Value)), None)
        slots = [s.rstrip("?*") for s in opdef.inputs]
        vals = [
            self._value(x, f"{out_name}.{slots[min(i, len(slots) - 1)]}", like)
            for i, x in enumerate(inputs)
        ]
        try:
            opdef.check_arity(len(vals))
            attrs = opdef.normalize_attrs(attrs)
            types = opdef.infer([v.type for v in vals], attrs)
        except TypeInferenceError as e:
            args = ", ".join(f"{v.name}: {v.type}" for v in vals)
            raise BuildError(f"%{out_name} = {op}({args}): {e}") from None
        outs = [Value(out_name if i == 0 else self._unique(f"{out_name}.{i}", f"output {i} of a {op} node"), t)
                for i, t in enumerate(types)]
        self.nodes.append(Node(op, vals, attrs, outs))
        return outs

    def output(self, *values: Value) -> None:
        """Mark `values` as graph outputs, in order."""
        for v in values:
            if not isinstance(v, Value):
                raise BuildError(f"graph {self.name}: outputs must be Values, got {type(v).__name__}")
            self.outputs.append(v)

    def build(self, check: bool = True) -> Graph:
        """The finished graph, verified unless `check` is False."""
        if not self.outputs:
            raise BuildError(f"graph {self.name}: no outputs; call output(...) before build()")
        g = Graph(self.name, self.inputs, self.outputs, self.nodes)
        return verify(g) if check else g

    # ---- typed helpers (one per op family) -----------------------------------------------
    def linear(self, x: Value, weight: ArrayLike, bias: ArrayLike | None = None, **kw: Any) -> Value:
        """x @ weight^T + bias; weight is [out_features, in_features]."""
        args = (x, weight) if bias is None else (x, weight, bias)
        return self.op("linear", *args, **kw)

    def matmul(self, a: ArrayLike, b: ArrayLike, **kw: Any) -> Value:
        """Batched matrix product with numpy semantics."""
        return self.op("matmul", a, b, **kw)

    def attention(self, q: Value, k: Value, v: Value, mask: ArrayLike | None = None, *, heads: int,
                  scale: float = 0.0, causal: bool = False, **kw: Any) -> Value:
        """Multi-head attention on [B, S, heads * D] q, k, v; scale 0.0 means 1/sqrt(D); mask is additive;
        `causal`: query i attends to keys 0..i only."""
        args = (q, k, v) if mask is None else (q, k, v, mask)
        return self.op("attention", *args, heads=heads, scale=scale, causal=causal, **kw)

    def conv2d(self, x: Value, weight: ArrayLike, bias: ArrayLike | None = None, *,
               strides: Sequence[int] = (1, 1), pads: Sequence[int] | int = 0,
               dilations: Sequence[int] = (1, 1), groups: int = 1, **kw: Any) -> Value:
        """NCHW convolution; `pads` is one int or [top, left, bottom, right]."""
        args = (x, weight) if bias is None else (x, weight, bias)
        return self.op("conv2d", *args, strides=strides, pads=_pads(pads), dilations=dilations,
                       groups=groups, **kw)

    def batchnorm(self, x: Value, scale: ArrayLike, bias: ArrayLike, mean: ArrayLike,
                  var: ArrayLike, epsilon: float = 1e-5, **kw: Any) -> Value:
        """Inference batch norm over axis 1."""
        return self.op("batchnorm", x, scale, bias, mean, var, epsilon=epsilon, **kw)

    def layernorm(self, x: Value, scale: ArrayLike | None = None, bias: ArrayLike | None = None,
                  axis: int = -1, epsilon: float = 1e-5, **kw: Any) -> Value:
        """Layer norm over axes axis..last."""
        args = [a for a in (x, scale, bias) if a is not None]
        if scale is None and bias is not None:
            raise BuildError("layernorm: a bias needs a scale")
        return self.op("layernorm", *args, axis=axis, epsilon=epsilon, **kw)

    def maxpool2d(self, x: Value, kernel: Sequence[int], strides: Sequence[int] | None = None,
                  pads: Sequence[int] | int = 0, ceil_mode: bool = False, **kw: Any) -> Value:
        """Max pooling; strides default to the kernel size."""
        return self.op("maxpool2d", x, kernel=kernel, strides=strides or kernel, pads=_pads(pads),
                       ceil_mode=ceil_mode, **kw)

    def avgpool2d(self, x: Value, kernel: Sequence[int], strides: Sequence[int] | None = None,
                  pads: Sequence[int] | int = 0, ceil_mode: bool = False,
                  count_include_pad: bool = False, **kw: Any) -> Value:
        """Average pooling; strides default to the kernel size."""
        return self.op("avgpool2d", x, kernel=kernel, strides=strides or kernel, pads=_pads(pads),
                       ceil_mode=ceil_mode, count_include_pad=count_include_pad, **kw)

    def reshape(self, x: Value, shape: Sequence[int], **kw: Any) -> Value:
        """Reshape (one -1 allowed); the stored shape is fully resolved."""
        from .ops.shape_ops import resolve_reshape

        try:
            shape = resolve_reshape("reshape", x.type.shape, tuple(shape))
        except TypeInferenceError as e:
            raise BuildError(f"reshape of %{x.name}: {e}") from None
        return self.op("reshape", x, shape=shape, **kw)

    def transpose(self, x: Value, perm: Sequence[int], **kw: Any) -> Value:
        """Permute axes."""
        return self.op("transpose", x, perm=perm, **kw)

    def concat(self, xs: Sequence[ArrayLike], axis: int, **kw: Any) -> Value:
        """Join along `axis`."""
        return self.op("concat", *xs, axis=axis, **kw)

    def slice(self, x: Value, starts: Sequence[int], ends: Sequence[int],
              axes: Sequence[int] | None = None, steps: Sequence[int] | None = None, **kw: Any) -> Value:
        """x[starts:ends:steps] on `axes` (default: the first len(starts) axes)."""
        axes = list(axes) if axes is not None else list(range(len(starts)))
        steps = list(steps) if steps is not None else [1] * len(starts)
        return self.op("slice", x, starts=starts, ends=ends, axes=axes, steps=steps, **kw)

    def gather(self, data: ArrayLike, indices: ArrayLike, axis: int = 0, **kw: Any) -> Value:
        """Take entries of `data` at `indices` along `axis`."""
        return self.op("gather", data, indices, axis=axis, **kw)

    def quantize(self, x: Value, scale: Sequence[float] | float, zero_point: Sequence[int] | int = 0,
                 axis: int | None = None, dtype: str = "i8", **kw: Any) -> Value:
        """Quantize to int8/uint8, per tensor (scalars) or along `axis`."""
        return self.op("quantize", x, scale=_seq(scale, float), zero_point=_seq(zero_point, int),
                       axis=axis, dtype=dtype, **kw)

    def dequantize(self, x: Value, scale: Sequence[float] | float | None = None,
                   zero_point: Sequence[int] | int | None = None, axis: int | None = None,
                   **kw: Any) -> Value:
        """Back to f32; scale/zero point default to those on x's type."""
        q = x.type.quant
        if scale is None:
            if q is None:
                raise BuildError(f"dequantize of %{x.name}: no scale given and its type has no quant")
            scale, zero_point, axis = q.scale, q.zero_point, q.axis
        zp = zero_point if zero_point is not None else 0
        return self.op("dequantize", x, scale=_seq(scale, float), zero_point=_seq(zp, int),
                       axis=axis, **kw)

    def exit(self, head: Value, *, criterion: str = "max-prob", threshold: float = 0.0, patience: int = 1,
             earlier: Sequence[Value] = (), **kw: Any) -> Value:
        """An early exit on `head` (numbered after the exits added before); returns its fire mask bool[B]."""
        index = sum(1 for n in self.nodes if n.op == "exit")
        return self.op("exit", head, *earlier, index=index, criterion=criterion, threshold=threshold,
                       patience=patience, **kw)

    def exit_select(self, final: Value, pairs: Sequence[tuple[Value, Value]], **kw: Any) -> tuple[Value, Value]:
        """Each row's output from the first exit that fired, else `final`; returns (out, taken)."""
        flat = [v for pair in pairs for v in pair]
        out, taken = self.op_multi("exit_select", final, *flat, **kw)
        return out, taken

    def __getattr__(self, attr: str) -> Any:
        """The method of an op registered after this module was imported (installed on first use)."""
        op = OPS_BY_METHOD.get(attr) or next((o for o in OPS if method_name(o) == attr), None)
        if op is None:
            raise AttributeError(f"GraphBuilder has no method {attr!r} and there is no op "
                                 f"{attr.replace('_', '-')!r}; ops: {', '.join(sorted(OPS))}")
        install_op_methods()
        return getattr(self, attr)


OPS_BY_METHOD: dict[str, str] = {}
"""Method name -> op name of the generated methods installed on GraphBuilder so far."""


def install_op_methods() -> None:
    """Give GraphBuilder a generated method for every registered op that has neither one nor a hand-written helper."""
    for op, opdef in OPS.items():
        name = method_name(op)
        if name not in OPS_BY_METHOD and name not in GraphBuilder.__dict__:
            setattr(GraphBuilder, name, make_op_method(opdef, BuildError))
            OPS_BY_METHOD[name] = op
        elif name in GraphBuilder.__dict__ and name not in OPS_BY_METHOD:
            OPS_BY_METHOD[name] = op


install_op_methods()


def _pads(p: Sequence[int] | int) -> tuple[int, ...]:
    if isinstance(p, int):
        return (p, p, p, p)
    p = tuple(p)
    return p + p if len(p) == 2 else p


def _seq(v: Any, cast: type) -> tuple:
    if isinstance(v, (int, float)):
        return (cast(v),)
    return tuple(cast(x) for x in np.asarray(v).reshape(-1).tolist())
