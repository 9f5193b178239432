"""The digits MLP and CNN quantized by ONNX Runtime's quantizer (quantize_dynamic; quantize_static in QDQ and in
QOperator format), imported and run on the reference and Numba backends against ONNX Runtime; the QDQ form
folded into integer ops; imported and quantize-pass graphs exported back to ONNX that ONNX Runtime runs.

Stated bound. Static (QDQ, QOperator): both sides compute the same int32 accumulators; they may differ only
where the float requantization (ours: (x_scale * w_scale) * acc / y_scale; ONNX Runtime's: acc * (x_scale *
w_scale / y_scale)) rounds an exact-looking half differently, i.e. by one step of that tensor's quantization;
we assert every output within one step of the coarsest activation quantization in the model (the logits', ~0.1)
and 99% of the logits within 1e-5. Dynamic: the same u8 activations and accumulators, so the outputs agree to
f32 rounding (asserted: 1e-5). Measured on these models: at most 1.2e-7 everywhere (docs/ir.md).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.ir import Graph, from_onnx, to_onnx, verify
from tensorsmith.passes import PassContext, run_pipeline
from tensorsmith.passes.quantize_fold import host_weight_bits

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn", reason="the digits models need scikit-learn: pip install 'tensorsmith[models]'")
quantization = pytest.importorskip("onnxruntime.quantization")

BATCH = 8
FORMS = ("dynamic", "qdq", "qoperator")
MODELS = ("mlp", "cnn")
FLOAT_TOL = 1e-5
INT_OPS = ("qmatmul", "qlinear", "qconv2d")


def with_logits(g: Graph) -> Graph:
    """`g` with the softmax's input (the logits) as a second output."""
    (sm,) = [n for n in g.nodes if n.op == "softmax"]
    return verify(Graph(g.name, g.inputs, [*g.outputs, sm.inputs[0]], g.nodes))


def gemm_as_matmul(model: onnx.ModelProto) -> onnx.ModelProto:
    """Gemm(x, W, b, transB=1) as MatMul(x, W^T) + Add(b): ONNX Runtime's QOperator quantizer writes the standard
    QLinearMatMul for MatMul (for Gemm it writes com.microsoft.QGemm, which has no ONNX definition)."""
    inits = {t.name: t for t in model.graph.initializer}
    nodes = []
    for n in model.graph.node:
        if n.op_type != "Gemm":
            nodes.append(n)
            continue
        w = inits[n.input[1]]
        w.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(numpy_helper.to_array(w).T), w.name))
        mid = f"{n.output[0]}.matmul"
        nodes += [helper.make_node("MatMul", n.input[:2], [mid], name=mid),
                  helper.make_node("Add", [mid, n.input[2]], n.output, name=f"{n.output[0]}.add")]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


class Batches(quantization.CalibrationDataReader):
    """Calibration: a few batches of training images."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self.it = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next feed, None at the end."""
        x = next(self.it, None)
        return None if x is None else {"x": x}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """fp32 IR graphs, test inputs and the quantized ONNX files, per model and form (and the Gemm-form QDQ mlp)."""
    from tensorsmith.bench.models.digits import (
        digits_split,
        graph_from_cnn,
        graph_from_sklearn_mlp,
        trained_cnn,
        trained_sklearn_mlp,
    )

    d = tmp_path_factory.mktemp("ortq")
    s = digits_split()
    graphs = {"mlp": with_logits(graph_from_sklearn_mlp(trained_sklearn_mlp(), BATCH)),
              "cnn": with_logits(graph_from_cnn(trained_cnn(), BATCH))}
    shape = {"mlp": (-1, 64), "cnn": (-1, 1, 8, 8)}
    inputs = {m: {"x": s.x_test[:BATCH].reshape(shape[m])} for m in MODELS}
    cal = {m: [s.x_train[i:i + BATCH].reshape(shape[m]) for i in range(0, 4 * BATCH, BATCH)] for m in MODELS}
    files: dict[tuple[str, str], Path] = {}
    q = quantization
    for m in MODELS:
        fp32 = d / f"{m}.onnx"
        onnx.save(gemm_as_matmul(to_onnx(graphs[m])), fp32)
        files[m, "dynamic"] = d / f"{m}_dynamic.onnx"
        q.quantize_dynamic(fp32, files[m, "dynamic"])
        for form, fmt in (("qdq", q.QuantFormat.QDQ), ("qoperator", q.QuantFormat.QOperator)):
            files[m, form] = d / f"{m}_{form}.onnx"
            q.quantize_static(fp32, files[m, form], Batches(cal[m]), quant_format=fmt,
                              op_types_to_quantize=["MatMul", "Conv"])
        u8 = q.QuantType.QUInt8  # asymmetric u8 weights: their zero points stay (weight_zero_point)
        files[m, "dynamic-u8"] = d / f"{m}_dynamic_u8.onnx"
        q.quantize_dynamic(fp32, files[m, "dynamic-u8"], weight_type=u8)
        for form, fmt in (("qdq-u8", q.QuantFormat.QDQ), ("qoperator-u8", q.QuantFormat.QOperator)):
            files[m, form] = d / f"{m}_{form}.onnx"
            q.quantize_static(fp32, files[m, form], Batches(cal[m]), quant_format=fmt, weight_type=u8,
                              activation_type=u8, op_types_to_quantize=["MatMul", "Conv"])
    gemm = d / "mlp_gemm.onnx"  # to_onnx's own form (Gemm), all of it quantized: Q/DQ on every tensor
    onnx.save(to_onnx(graphs["mlp"]), gemm)
    files["mlp-gemm", "qdq"] = d / "mlp_gemm_qdq.onnx"
    q.quantize_static(gemm, files["mlp-gemm", "qdq"], Batches(cal["mlp"]), quant_format=q.QuantFormat.QDQ)
    inputs["mlp-gemm"] = inputs["mlp"]
    return {"graphs": graphs, "inputs": inputs, "files": files}


def ort_run(model: onnx.ModelProto | Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """onnxruntime's outputs (CPU, default graph optimizations: QDQ pairs fused into its integer kernels)."""
    ort.set_default_logger_severity(3)
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)


def step(g: Graph) -> float:
    """One step of the coarsest static activation quantization in `g` (0 when it has none)."""
    scales = [s for n in g.nodes if n.op == "quantize" for s in n.attrs["scale"]]
    scales += [s for n in g.nodes if n.op in INT_OPS for s in n.attrs["out_scale"]]
    return max(scales, default=0.0)


def assert_agree(got: list[np.ndarray], want: list[np.ndarray], bound: float) -> float:
    """Each output within `bound` + FLOAT_TOL, 99% of every output within FLOAT_TOL; returns the largest gap."""
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        gap = np.abs(g.astype(np.float64) - w.astype(np.float64))
        assert gap.max() <= bound + FLOAT_TOL, (gap.max(), bound)
        assert np.mean(gap <= FLOAT_TOL) >= 0.99
        worst = max(worst, float(gap.max()))
    return worst


def run_ref(g: Graph, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Reference-backend outputs in graph order."""
    out = reference.run(g, feeds)
    return [out[v.name] for v in g.outputs]


def run_numba(g: Graph, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Numba-backend outputs in graph order (skipped where its int8 kernels cannot take 8-bit weights)."""
    pytest.importorskip("numba")
    if any(n.op in INT_OPS and n.attrs["weight_bits"] == 8 for n in g.nodes) and host_weight_bits() != 8:
        pytest.skip("this CPU's int8 kernels compute 7-bit weights exactly; ONNX Runtime's weights use 8 bits")
    out = runtime.compile(g, backend="numba").run(feeds)
    return [np.asarray(out[v.name]) for v in g.outputs]


EXPECTED_OPS = {  # what each ONNX form imports to: the integer ops exactly where ONNX has them
    ("mlp", "dynamic"): {"quantize-dynamic": 3, "linear": 3},
    ("cnn", "dynamic"): {"quantize-dynamic": 3, "conv2d": 2, "linear": 1},
    ("mlp", "qdq"): {"quantize": 6, "matmul": 3},
    ("cnn", "qdq"): {"quantize": 6, "conv2d": 2, "matmul": 1},
    ("mlp", "qoperator"): {"qmatmul": 3, "quantize": 3},
    ("cnn", "qoperator"): {"qconv2d": 2, "qmatmul": 1, "quantize": 3},
}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("form", FORMS)
def test_imported_model_matches_onnx_runtime_on_both_backends(setup: dict, model: str, form: str) -> None:
    path, feeds = setup["files"][model, form], setup["inputs"][model]
    g = from_onnx(path)
    ops = Counter(n.op for n in g.nodes)
    assert {op: ops[op] for op in EXPECTED_OPS[model, form]} == EXPECTED_OPS[model, form]
    ours, theirs = run_ref(g, feeds), ort_run(path, feeds)
    bound = step(g)
    assert (bound > 0) == (form != "dynamic")
    assert_agree(ours, theirs, bound)
    logits_fp32 = run_ref(setup["graphs"][model], feeds)[1]
    assert np.abs(ours[1] - logits_fp32).max() > FLOAT_TOL  # really quantized: it differs from the fp32 model
    assert (ours[1].argmax(1) == logits_fp32.argmax(1)).mean() >= 0.75
    if form != "qdq":  # the QDQ form runs on Numba folded into integer ops (below): f32 Q/DQ kernels cost JIT time
        assert_agree(run_numba(g, feeds), ours, bound)


@pytest.mark.parametrize("model", ["mlp", "cnn", "mlp-gemm"])
def test_qdq_model_folds_into_integer_ops(setup: dict, model: str) -> None:
    path, feeds = setup["files"][model, "qdq"], setup["inputs"][model]
    proto = onnx.load(path)
    g = run_pipeline(from_onnx(path), "quantize-fold{weight_bits=8}")
    want = Counter(n.op_type for n in proto.graph.node)
    ops = Counter(n.op for n in g.nodes)
    assert ops["qmatmul"] + ops["qlinear"] == want["MatMul"] + want["Gemm"] > 0
    assert ops["qconv2d"] == want["Conv"]
    assert ops["matmul"] == ops["linear"] == ops["conv2d"] == 0
    if model == "mlp-gemm":  # Q/DQ on every tensor: each integer op also requantizes its output
        assert [n.attrs["dtype"] for n in g.nodes if n.op == "qlinear"] == ["i8"] * 3
    ours = run_ref(g, feeds)
    assert_agree(ours, ort_run(path, feeds), step(g))
    assert_agree(run_numba(g, feeds), ours, step(g))


@pytest.mark.parametrize("model", MODELS)
def test_dynamic_model_folds_into_integer_ops_exactly(setup: dict, model: str) -> None:
    path, feeds = setup["files"][model, "dynamic"], setup["inputs"][model]
    imported = from_onnx(path)
    ctx = PassContext()
    g = run_pipeline(imported, "quantize-fold{weight_bits=8}", ctx=ctx)
    ops = Counter(n.op for n in g.nodes)
    assert ops["qlinear"] + ops["qconv2d"] == 3 and ops["qconv2d"] == (2 if model == "cnn" else 0)
    assert ops["linear"] == ops["conv2d"] == ops["cast"] == ops["sub"] == 0
    assert "3 i32 product(s) of dynamically quantized activations" in ctx.records[-1].report
    ours = run_ref(g, feeds)
    for a, b in zip(ours, run_ref(imported, feeds), strict=True):
        np.testing.assert_array_equal(a, b)  # the same float32 steps on the same accumulators
    assert_agree(ours, ort_run(path, feeds), 0.0)
    assert_agree(run_numba(g, feeds), ours, 0.0)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("form", ["dynamic-u8", "qdq-u8", "qoperator-u8"])
def test_asymmetric_u8_weights_keep_their_zero_points(setup: dict, model: str, form: str) -> None:
    """ONNX Runtime's QUInt8 weights (zero points off 128): imported and folded onto the integer ops with a weight
    zero point, agreeing with ONNX Runtime on both backends and exported back to a model it runs."""
    path, feeds = setup["files"][model, form], setup["inputs"][model]
    g = run_pipeline(from_onnx(path), "quantize-fold{weight_bits=8}")
    products = [n for n in g.nodes if n.op in INT_OPS]
    assert len(products) == 3 and any(any(n.attrs["weight_zero_point"]) for n in products)
    ours, bound = run_ref(g, feeds), step(g)
    assert_agree(ours, ort_run(path, feeds), bound)
    assert_agree(run_numba(g, feeds), ours, 0.0)  # the same integers and float steps
    assert_agree(ort_run(to_onnx(g), feeds), ours, bound)


@pytest.mark.parametrize("model,form", [("mlp", "dynamic"), ("cnn", "dynamic"), ("cnn", "qdq"),
                                        ("mlp", "qoperator"), ("cnn", "qoperator"), ("mlp-gemm", "qdq")])
@pytest.mark.parametrize("fold", [False, True])
def test_imported_graph_exports_to_onnx_runtime(setup: dict, model: str, form: str, fold: bool) -> None:
    feeds = setup["inputs"][model]
    g = from_onnx(setup["files"][model, form])
    if fold:
        g = run_pipeline(g, "quantize-fold{weight_bits=8}")
    exported = to_onnx(g)
    types = Counter(n.op_type for n in exported.graph.node)
    int_products = sum(n.op in INT_OPS or (n.op in ("linear", "matmul", "conv2d") and n.inputs[0].type.dtype.name
                                           != "f32") for n in g.nodes)
    assert types["MatMulInteger"] + types["ConvInteger"] == int_products
    assert int_products == (0 if form == "qdq" and not fold else 3)
    assert_agree(ort_run(exported, feeds), run_ref(g, feeds), step(g))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("scheme", ["dynamic", "static"])
def test_quantize_pass_graph_exports_to_onnx_runtime(setup: dict, model: str, scheme: str) -> None:
    feeds = setup["inputs"][model]
    ctx = PassContext(calibration=[feeds])
    g = run_pipeline(setup["graphs"][model], f"quantize{{scheme={scheme},min_kn=0}}", ctx=ctx)
    assert sum(n.op in INT_OPS for n in g.nodes) == 3
    ours = run_ref(g, feeds)
    assert_agree(ort_run(to_onnx(g), feeds), ours, step(g))
