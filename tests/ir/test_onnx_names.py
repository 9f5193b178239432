"""ONNX names: an imported graph is fed and read by its ONNX input and output names on every backend,
and names that are not plain identifiers round-trip through the text form (quoted)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from tensorsmith.backends import reference
from tensorsmith.ir import from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError
from tensorsmith.ir.parser import ParseError, parse
from tensorsmith.ir.text import print_graph
from tensorsmith.runtime import compile

IN = "gpu_0/data_0"
OUT = "gpu_0/softmax_1"
SIDE = "relu:0 out"


def caffe2_style_model() -> onnx.ModelProto:
    """A tiny model named the way Caffe2 exporters name tensors (slashes, colons, spaces)."""
    w = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    nodes = [
        helper.make_node("MatMul", [IN, "gpu_0/fc_w_0"], ["gpu_0/fc_1"]),
        helper.make_node("Relu", ["gpu_0/fc_1"], [SIDE]),
        helper.make_node("Softmax", [SIDE], [OUT], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "caffe2/net",
        [helper.make_tensor_value_info(IN, onnx.TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info(OUT, onnx.TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info(SIDE, onnx.TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(w, "gpu_0/fc_w_0")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_feed_and_read_by_onnx_names(backend: str) -> None:
    g = from_onnx(caffe2_style_model())
    assert [v.name for v in g.inputs] == [IN]
    assert [v.name for v in g.outputs] == [OUT, SIDE]
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 8
    want = reference.run(g, {IN: x})
    got = compile(g, backend).run({IN: x})
    assert set(got) == {OUT, SIDE}
    h = np.maximum(x @ np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3), 0)
    np.testing.assert_allclose(want[SIDE], h, rtol=1e-6)
    for name in (OUT, SIDE):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-7)


def test_onnxruntime_feed_works_unchanged() -> None:
    ort = pytest.importorskip("onnxruntime")
    m = caffe2_style_model()
    x = np.linspace(0, 1, 8, dtype=np.float32).reshape(2, 4)
    feed = {IN: x}
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    theirs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
    ours = reference.run(from_onnx(m), feed)
    for name, arr in theirs.items():
        np.testing.assert_allclose(ours[name], arr, rtol=1e-5, atol=1e-6)


def test_imported_odd_names_round_trip_through_text() -> None:
    g = from_onnx(caffe2_style_model())
    text = print_graph(g)
    assert f'%"{IN}"' in text and f'%"{SIDE}"' in text
    back = parse(text)
    assert print_graph(back) == text
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(reference.run(back, {IN: x})[OUT], reference.run(g, {IN: x})[OUT])


ODD_TEXT = '''graph odd(%"a b": f32[2], %"q\\"uote\\\\back": f32[2], %plain-1.x: f32[2]) -> (f32[2], f32[2]) {
  %"näme/ü" = add(%"a b", %"q\\"uote\\\\back") : f32[2]
  %"tab\\tline\\nbreak" = mul(%"näme/ü", @"w:0") : f32[2]
  %"" = sub(%"tab\\tline\\nbreak", %plain-1.x) : f32[2]
  return %"", %"näme/ü"
}
const @"w:0": f32[2] = [2.0, 3.0]
'''


def test_text_round_trip_with_odd_names() -> None:
    g = parse(ODD_TEXT)
    assert [v.name for v in g.inputs] == ["a b", 'q"uote\\back', "plain-1.x"]
    assert [n.outputs[0].name for n in g.nodes] == ["näme/ü", "tab\tline\nbreak", ""]
    assert g.constants[0].name == "w:0"
    assert print_graph(g) == ODD_TEXT
    ones = np.ones(2, np.float32)
    out = reference.run(g, {"a b": ones, 'q"uote\\back': ones, "plain-1.x": ones})
    np.testing.assert_array_equal(out[""], [3.0, 5.0])


def test_quoted_and_bare_spellings_are_one_name() -> None:
    g = parse('graph g(%"x": f32[1]) -> f32[1] {\n  %y = neg(%x) : f32[1]\n  return %"y"\n}\n')
    assert g.outputs[0] is g.nodes[0].outputs[0]
    assert print_graph(g).count('"') == 0


def test_bad_quoted_name_is_a_parse_error_with_position() -> None:
    with pytest.raises(ParseError, match=r"line 2, column 3: bad quoted name"):
        parse('graph g(%x: f32[1]) -> f32[1] {\n  %"bad\\q" = neg(%x) : f32[1]\n  return %x\n}\n')


def test_duplicated_and_empty_onnx_names_are_reported() -> None:
    m = caffe2_style_model()
    m.graph.input.append(m.graph.input[0])
    with pytest.raises(OnnxImportError, match=r"graph input #1 'gpu_0/data_0': the name is used by two graph inputs"):
        from_onnx(m)
    m = caffe2_style_model()
    m.graph.output.append(m.graph.output[0])
    with pytest.raises(OnnxImportError, match=r"graph output #2 'gpu_0/softmax_1': the model lists this output twice"):
        from_onnx(m)
    m = caffe2_style_model()
    m.graph.node[1].output[0] = "gpu_0/fc_w_0"
    with pytest.raises(OnnxImportError, match=r"output 'gpu_0/fc_w_0' is already defined"):
        from_onnx(m)
