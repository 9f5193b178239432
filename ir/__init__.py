"""The tensor IR: dtypes, types, values, nodes, graphs, the op registry, builder, verifier, text."""

import importlib
from typing import Any

from .bert_loader import load_bert
from .builder import BuildError, GraphBuilder
from .dtypes import DTYPES, DType, bf16, boolean, dtype_from_name, dtype_from_numpy, f16, f32, f64, i4, i8, i32, i64, u8
from .equality import assert_graphs_equal, graph_difference, graphs_equal
from .graph import Graph, Node, Value
from .input_check import InputError
from .interpreter import ExecutionError, Interpreter
from .ops import OPS, Attr, OpDef, TypeInferenceError, get_op, infer_types, register_op
from .parser import ParseError, parse
from .text import format_node, format_type, print_graph
from .types import QuantInfo, SparsityInfo, TensorType
from .verify import VerificationError, dead_nodes, lint, verify

__all__ = [
    "DTYPES", "OPS", "Attr", "BuildError", "DType", "ExecutionError", "Graph", "GraphBuilder",
    "InputError", "Interpreter", "Node", "OpDef", "ParseError", "QuantInfo", "SparsityInfo",
    "TensorType", "TypeInferenceError", "Value", "VerificationError", "assert_graphs_equal",
    "bf16", "boolean", "dead_nodes", "dtype_from_name", "dtype_from_numpy", "f16", "f32", "f64", "format_node",
    "format_type", "from_onnx", "get_op", "graph_difference", "graphs_equal", "i4", "i8", "i32", "i64",
    "infer_types", "lint", "load_bert", "parse", "print_graph", "register_op", "to_onnx", "u8", "verify",
]

LAZY_NAMES = {"to_onnx": ".onnx_export", "from_onnx": ".onnx_import"}
"""Names imported on first use: they load the onnx package, and with it ml_dtypes, whose import alone takes over
a second in every process that imports the IR (bench's peer processes, test workers)."""


def __getattr__(name: str) -> Any:
    """`to_onnx` and `from_onnx`, imported from their modules on first use."""
    if name not in LAZY_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(LAZY_NAMES[name], __name__), name)
    globals()[name] = value
    return value
