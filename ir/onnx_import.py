"""`from_onnx`: import an ONNX model (opsets 6 to 28) as a verified graph.

Shapes are static: symbolic input dimensions take the sizes the caller gives in
`input_shapes`. Tensors known at import (initializers, Constant nodes, shape subgraphs) are
folded with numpy, so Reshape/Slice/Expand see constant shapes. A model with problems fails
with one `OnnxImportError` listing every unsupported operator and every node that could not
be converted, each with its place in the model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

# importing the converter modules registers their converters
from . import (  # noqa: F401
    onnx_ops_attention,
    onnx_ops_composite,
    onnx_ops_einsum,
    onnx_ops_logic,
    onnx_ops_loss,
    onnx_ops_math,
    onnx_ops_nn,
    onnx_ops_normalization,
    onnx_ops_pointwise,
    onnx_ops_products,
    onnx_ops_qlinear,
    onnx_ops_quant,
    onnx_ops_resize,
    onnx_ops_rnn,
    onnx_ops_sampling,
    onnx_ops_shape,
    onnx_ops_spectral,
)
from .graph import Graph, Node, Value
from .onnx_context import (
    CONVERTERS,
    MAX_TENSOR_BYTES,
    ONNX_TO_IR,
    Emitter,
    Handle,
    NodeContext,
    OnnxImportError,
    UnsupportedError,
    ir_dtype_of_onnx,
    np_dtype_of_onnx,
    onnx_dtype_name,
    sanitize,
)
from .ops import TypeInferenceError
from .types import TensorType
from .verify import VerificationError, verify

MIN_OPSET = 6
MAX_SCHEMA = 28
"""Operator schemas introduced after this opset are not converted (their semantics were not reviewed)."""
DEFAULT_DOMAINS = ("", "ai.onnx")
SUPPORTED_OPS: frozenset[str] = frozenset(CONVERTERS)
"""ONNX operators (default domain) the importer converts."""


class _Missing:
    """Marks an ONNX tensor the importer does not produce, with the reason."""

    def __init__(self, reason: str | None) -> None:
        self.reason = reason


def _where(i: int, node: onnx.NodeProto) -> str:
    name = f" {node.name!r}" if node.name else ""
    return f"node #{i}{name} ({node.op_type}, outputs {list(node.output)})"


def _load(model: str | os.PathLike | onnx.ModelProto | bytes) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, bytes):
        try:
            return onnx.load_from_string(model)
        except Exception as e:  # noqa: BLE001 - protobuf decode errors become one clear error
            raise OnnxImportError(f"cannot parse ONNX model bytes: {type(e).__name__}: {e}") from e
    path = Path(model)
    if not path.is_file():
        raise OnnxImportError(f"ONNX model file {str(path)!r} does not exist")
    try:
        return onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - protobuf/IO errors become one clear error
        raise OnnxImportError(f"cannot read ONNX model {str(path)!r}: {type(e).__name__}: {e}") from e


def _check_text(model: onnx.ModelProto) -> None:
    """OnnxImportError when a name in the model is not valid UTF-8 (protobuf then hands out bytes)."""
    g = model.graph
    named = [("graph", [g.name])]
    named += [(f"graph input #{k}", [vi.name]) for k, vi in enumerate(g.input)]
    named += [(f"graph output #{k}", [vi.name]) for k, vi in enumerate(g.output)]
    named += [(f"initializer #{k}", [t.name]) for k, t in enumerate(g.initializer)]
    named += [(f"opset import #{k}", [imp.domain]) for k, imp in enumerate(model.opset_import)]
    for i, node in enumerate(g.node):
        texts = [node.name, node.op_type, node.domain, *node.input, *node.output, *(a.name for a in node.attribute)]
        named.append((f"node #{i}", texts))
    for where, texts in named:
        bad = [t for t in texts if not isinstance(t, str)]
        if bad:
            raise OnnxImportError(f"{where}: name {bad[0]!r} is not valid UTF-8")


def model_opset(model: onnx.ModelProto) -> int:
    """The model's opset version for the default ONNX domain."""
    for imp in model.opset_import:
        if imp.domain in DEFAULT_DOMAINS:
            return int(imp.version)
    raise OnnxImportError("the model imports no default-domain opset")


def _input_type(vi: onnx.ValueInfoProto, given: Sequence[int] | None, em: Emitter) -> TensorType:
    """The IR type of graph input `vi` (its shape fixed by `given` when set), checked against the byte limit."""
    t = _declared_input_type(vi, given)
    try:
        em.check_size(t.shape, t.dtype, f"graph input {vi.name!r}")
    except UnsupportedError as e:
        raise OnnxImportError(str(e)) from None
    return t


def _declared_input_type(vi: onnx.ValueInfoProto, given: Sequence[int] | None) -> TensorType:
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise OnnxImportError(f"graph input {vi.name!r} is not a tensor (sequences, maps and optionals "
                              "are not supported)")
    try:
        dtype = ir_dtype_of_onnx(tt.elem_type, f"graph input {vi.name!r}")
    except UnsupportedError as e:
        raise OnnxImportError(str(e)) from None
    dims = list(tt.shape.dim) if tt.HasField("shape") else None
    if given is not None:
        given = tuple(int(d) for d in given)
        if dims is not None and len(dims) != len(given):
            raise OnnxImportError(f"input_shapes[{vi.name!r}] = {list(given)} has rank {len(given)}, but the "
                                  f"model declares rank {len(dims)}")
        for k, d in enumerate(dims or []):
            if d.HasField("dim_value") and d.dim_value != given[k]:
                raise OnnxImportError(f"input_shapes[{vi.name!r}] = {list(given)}: dimension {k} is fixed to "
                                      f"{d.dim_value} in the model")
        return TensorType(given, dtype)
    if dims is None:
        raise OnnxImportError(f"graph input {vi.name!r} has no shape; pass input_shapes={{{vi.name!r}: (...)}}")
    shape = []
    for k, d in enumerate(dims):
        if d.HasField("dim_value") and d.dim_value < 0:
            raise OnnxImportError(f"graph input {vi.name!r}: dimension {k} is negative ({d.dim_value})")
        if not d.HasField("dim_value"):
            sym = d.dim_param or "?"
            raise OnnxImportError(f"graph input {vi.name!r}: dimension {k} is symbolic ({sym!r}); pass "
                                  f"input_shapes={{{vi.name!r}: (...)}} to fix it")
        shape.append(int(d.dim_value))
    return TensorType(tuple(shape), dtype)


class _Importer:
    """One import: the environment of ONNX tensor names and the emitted IR."""

    def __init__(self, model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]], max_bytes: int) -> None:
        self.model = model
        self.opset = model_opset(model)
        if self.opset < MIN_OPSET:
            raise OnnxImportError(f"opset {self.opset} is older than the oldest supported opset {MIN_OPSET}; "
                                  "convert it with onnx.version_converter.convert_version first")
        self.em = Emitter(max_bytes)
        self.env: dict[str, Handle | _Missing] = {}
        self.input_shapes = dict(input_shapes)
        self.problems: list[str] = []
        self.output_names: dict[str, str] = {}

    def _bind(self, onnx_name: str, h: Handle) -> None:
        if isinstance(h, np.generic):
            h = np.asarray(h)
        if isinstance(h, np.ndarray):
            self.em.hints.setdefault(id(h), (h, onnx_name))
        self.env[onnx_name] = h

    def _initializer(self, t: onnx.TensorProto) -> np.ndarray:
        """The array of initializer `t`, its declared size checked against the byte limit before reading it."""
        try:
            self.em.check_size(t.dims, np_dtype_of_onnx(t.data_type), f"initializer {t.name!r}")
            return numpy_helper.to_array(t)
        except UnsupportedError as e:
            raise OnnxImportError(str(e)) from None
        except Exception as e:  # noqa: BLE001 - malformed tensor data (numpy, protobuf or onnx errors)
            raise OnnxImportError(f"initializer {t.name!r} ({onnx_dtype_name(t.data_type)}{list(t.dims)}): "
                                  f"cannot read its data: {type(e).__name__}: {e}") from None

    def inputs(self) -> list[Value]:
        """Bind initializers as constants and make IR inputs for the others (outputs' names reserved)."""
        g = self.model.graph
        if g.sparse_initializer:
            raise OnnxImportError("sparse initializers are not supported")
        for t in g.initializer:
            if t.name in self.env:
                raise OnnxImportError(f"initializer {t.name!r} is defined twice")
            self._bind(t.name, self._initializer(t))
        names = [vi.name for vi in g.input if vi.name not in self.env]
        unknown = sorted(set(self.input_shapes) - set(names))
        if unknown:
            raise OnnxImportError(f"input_shapes names unknown input(s) {unknown}; the model's inputs are {names}")
        values = []
        for k, vi in enumerate(g.input):
            if vi.name in self.env:
                if isinstance(self.env[vi.name], Value):
                    raise OnnxImportError(f"graph input #{k} {vi.name!r}: the name is used by two graph inputs")
                continue  # an initializer listed as an input (older exporters): a constant
            if not vi.name:
                raise OnnxImportError(f"graph input #{k} has no name")
            self.em.namer.reserve(vi.name)
            v = Value(vi.name, _input_type(vi, self.input_shapes.get(vi.name), self.em))
            self.env[vi.name] = v
            values.append(v)
        for k, vi in enumerate(g.output):  # graph outputs keep their ONNX names: reserve them now
            if not vi.name:
                raise OnnxImportError(f"graph output #{k} has no name")
            if vi.name in self.output_names:
                raise OnnxImportError(f"graph output #{k} {vi.name!r}: the model lists this output twice")
            self.output_names[vi.name] = vi.name
            if not isinstance(self.env.get(vi.name), Value):
                self.em.namer.reserve(vi.name)
        return values

    def _schema_too_new(self, op_type: str) -> int | None:
        """The opset that introduced `op_type`'s schema when it is newer than MAX_SCHEMA, else None."""
        if self.opset <= MAX_SCHEMA:
            return None
        try:
            since = onnx.defs.get_schema(op_type, self.opset, "").since_version
        except onnx.defs.SchemaError:
            return None
        return since if since > MAX_SCHEMA else None

    def prescan(self) -> None:
        """Record every node whose operator has no converter, grouped by operator."""
        by_op: dict[str, list[str]] = {}
        for i, node in enumerate(self.model.graph.node):
            if node.domain not in DEFAULT_DOMAINS:
                key = f"{node.domain}.{node.op_type}"
            elif node.op_type not in CONVERTERS:
                key = node.op_type
            elif self._schema_too_new(node.op_type):
                key = f"{node.op_type} version {self._schema_too_new(node.op_type)} (newer than opset {MAX_SCHEMA})"
            else:
                continue
            by_op.setdefault(key, []).append(_where(i, node))
        for op, places in sorted(by_op.items()):
            shown = "; ".join(places[:20]) + (f"; ... and {len(places) - 20} more" if len(places) > 20 else "")
            self.problems.append(f"unsupported operator {op} ({len(places)}x): {shown}")

    def convert(self) -> None:
        """Convert the nodes in order; nodes fed by a failed or unsupported node are skipped."""
        for i, node in enumerate(self.model.graph.node):
            args: list[Handle | None] = []
            blocked = (node.domain not in DEFAULT_DOMAINS or node.op_type not in CONVERTERS
                       or self._schema_too_new(node.op_type) is not None)
            for name in node.input:
                if not name:
                    args.append(None)
                    continue
                h = self.env.get(name)
                if h is None:
                    self.problems.append(f"{_where(i, node)}: input {name!r} is not defined before this node "
                                         "(the ONNX graph is not topologically sorted or is missing a tensor)")
                    blocked = True
                elif isinstance(h, _Missing):
                    if h.reason:
                        self.problems.append(f"{_where(i, node)}: uses {name!r}, {h.reason}")
                    blocked = True
                else:
                    args.append(h)
            for k, o in enumerate(node.output):
                if o and (o in self.env or o in node.output[:k]):
                    self.problems.append(f"{_where(i, node)}: output {o!r} is already defined (by a graph input, "
                                         "an initializer or an earlier node)")
                    blocked = True
            if blocked:
                for o in node.output:
                    if o not in self.env:
                        self.env[o] = _Missing(None)
                continue
            self._convert_node(i, node, args)

    def _convert_node(self, i: int, node: onnx.NodeProto, args: list[Handle | None]) -> None:
        ctx = NodeContext(node, args, self.opset, self.em)
        first_new = len(self.em.nodes)
        try:
            outs = CONVERTERS[node.op_type](ctx)
        except UnsupportedError as e:
            self._fail(node, f"{_where(i, node)}: unsupported: {e}")
            return
        except (ValueError, TypeInferenceError, IndexError, TypeError) as e:
            self._fail(node, f"{_where(i, node)}: {e}")
            return
        except Exception as e:  # noqa: BLE001 - any other failure of a converter is reported with its node
            self._fail(node, f"{_where(i, node)}: {type(e).__name__}: {e}")
            return
        new_values = {id(v) for n in self.em.nodes[first_new:] for v in n.outputs}
        outs = list(outs) + [None] * (len(node.output) - len(outs))
        for k, (name, h) in enumerate(zip(node.output, outs)):
            if not name:
                continue
            if h is None:
                self.env[name] = _Missing(f"output {k} of {_where(i, node)}, which the importer does not produce")
                continue
            if isinstance(h, Value) and id(h) in new_values:
                h.name = self.output_names.get(name) or self.em.namer.fresh(name)
                new_values.discard(id(h))
            self._bind(name, h)

    def _fail(self, node: onnx.NodeProto, message: str) -> None:
        self.problems.append(message)
        for o in node.output:
            self.env[o] = _Missing(None)

    def outputs(self) -> list[Value]:
        """The IR values of the graph outputs, carrying the model's output names."""
        outs: list[Value] = []
        for vi in self.model.graph.output:
            h = self.env.get(vi.name)
            if h is None or isinstance(h, _Missing):
                if h is None or h.reason:
                    why = h.reason if isinstance(h, _Missing) else "it is never computed"
                    self.problems.append(f"graph output {vi.name!r}: {why}")
                continue
            try:
                v = self._output_value(vi.name, h, outs)
            except UnsupportedError as e:
                self.problems.append(f"graph output {vi.name!r}: {e}")
                continue
            declared = vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0
            if declared and ONNX_TO_IR.get(declared) != v.type.dtype:
                self.problems.append(f"graph output {vi.name!r} is declared {onnx_dtype_name(declared)}, but the "
                                     f"model computes {v.type.dtype.name} for it")
            outs.append(v)
        return outs

    def _output_value(self, name: str, h: Handle, taken: list[Value]) -> Value:
        """The IR value for graph output `name`, renamed (or copied by identity) to carry that name."""
        want = self.output_names[name]
        if isinstance(h, np.ndarray):
            if not self.em.has_constant(h):
                return self.em.constant(h, exact=want)
            h = self.em.constant(h)
        already = any(v is h for v in taken)
        if h.name == want and not already:
            return h
        is_node_output = any(h is v for n in self.em.nodes for v in n.outputs)
        if is_node_output and not already:
            h.name = want
            return h
        out = Value(want, h.type)
        self.em.nodes.append(Node("identity", [h], {}, [out]))
        return out


def from_onnx(model: str | os.PathLike | onnx.ModelProto | bytes,
              input_shapes: Mapping[str, Sequence[int]] | None = None,
              name: str | None = None, max_bytes: int = MAX_TENSOR_BYTES) -> Graph:
    """Import an ONNX model (file path, bytes or ModelProto) as a verified IR graph.

    `input_shapes` maps input names to concrete shapes for inputs whose ONNX shape has
    symbolic dimensions. A tensor (input, weight, folded constant or intermediate value) over
    `max_bytes` is refused before anything is allocated. Raises OnnxImportError listing every
    problem found.
    """
    proto = _load(model)
    _check_text(proto)
    imp = _Importer(proto, input_shapes or {}, max_bytes)
    inputs = imp.inputs()
    imp.prescan()
    imp.convert()
    outputs = imp.outputs()
    if imp.problems:
        title = proto.graph.name or "model"
        raise OnnxImportError(f"cannot import ONNX model {title!r} (opset {imp.opset}): {len(imp.problems)} "
                              "problem(s)\n  " + "\n  ".join(imp.problems), imp.problems)
    gname = sanitize(name or proto.graph.name or (Path(model).stem if isinstance(model, (str, os.PathLike))
                                                  else "onnx_model"))
    graph = Graph(gname, inputs, outputs, imp.em.nodes)
    graph.remove_dead_nodes()
    try:
        return verify(graph)
    except VerificationError as e:
        raise OnnxImportError(f"cannot import ONNX model {gname!r}: the imported graph does not verify: {e}",
                              [str(e)]) from e
