"""ONNX's RNN, GRU and LSTM unrolled into IR ops: against ONNX's reference evaluator (which follows the default
attributes only) and ONNX Runtime (every attribute), on the reference and Numba backends."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator
from tensorsmith.backends import reference
from tensorsmith.ir import from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError
from tensorsmith.runtime.numba_exec import NumbaExecutable

from .test_onnx_import import check, make_model, ort_outputs

RNG = np.random.default_rng(17)
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
SEQ, BATCH, IN, HID = 5, 3, 4, 6


def rnn_model(op: str, direction: str = "forward", constant_weights: bool = True, lens: np.ndarray | None = None,
              initial: bool = False, peepholes: bool = False, layout: int = 0, opset: int = 22,
              **attrs: object):  # type: ignore[no-untyped-def]
    """One recurrent node reading every output, its weights initializers (or graph inputs)."""
    g, dirs = GATES[op], 2 if direction == "bidirectional" else 1
    x = RNG.standard_normal((BATCH, SEQ, IN) if layout else (SEQ, BATCH, IN)).astype(np.float32)
    params = {"W": RNG.standard_normal((dirs, g * HID, IN)).astype(np.float32) * 0.5,
              "R": RNG.standard_normal((dirs, g * HID, HID)).astype(np.float32) * 0.5,
              "B": RNG.standard_normal((dirs, 2 * g * HID)).astype(np.float32) * 0.3}
    names = ["x", "W", "R", "B", "", "", "", ""]
    feeds = {"x": x}
    extra: dict[str, np.ndarray] = {}
    if lens is not None:
        names[4], extra["lens"] = "lens", lens
    if initial:
        state = (BATCH, dirs, HID) if layout else (dirs, BATCH, HID)
        names[5], extra["h0"] = "h0", RNG.standard_normal(state).astype(np.float32)
        if op == "LSTM":
            names[6], extra["c0"] = "c0", RNG.standard_normal(state).astype(np.float32)
    if peepholes:
        names[7], params["P"] = "P", RNG.standard_normal((dirs, 3 * HID)).astype(np.float32)
    while not names[-1]:
        names.pop()
    outs = ["y", "y_h"] + (["y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, names, outs, direction=direction, hidden_size=HID, layout=layout, **attrs)
    feeds |= extra
    inits = {} if not constant_weights else params
    if not constant_weights:
        feeds |= params
    return make_model([node], feeds, outs, inits, opset=opset), feeds


def _both_backends(model, feeds: dict[str, np.ndarray], rtol: float = 1e-5, atol: float = 1e-5,  # type: ignore[no-untyped-def]
                   onnx_reference: bool = True, ort: bool = True):
    """Check against ONNX Runtime (`ort`: required to run it) and, when asked, ONNX's reference evaluator, on both
    backends; the imported graph."""
    theirs = ort_outputs(model, feeds) if ort else None
    assert theirs is not None or not ort, "ONNX Runtime could not run the model"
    if theirs is None:
        theirs = ReferenceEvaluator(model).run(None, feeds)
    g = check(model, feeds, rtol, atol) if onnx_reference else check(model, feeds, rtol, atol, expected=theirs)
    ours = reference.run(g, feeds)
    fast = NumbaExecutable(g).run(feeds)
    for out, t in zip(g.outputs, theirs):
        np.testing.assert_allclose(fast[out.name], t, rtol=rtol, atol=atol, err_msg=out.name)
        np.testing.assert_allclose(ours[out.name], t, rtol=rtol, atol=atol, err_msg=out.name)
    return g


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_defaults_with_constant_weights(op: str, direction: str) -> None:
    model, feeds = rnn_model(op, direction, initial=True, peepholes=op == "LSTM")
    g = _both_backends(model, feeds)
    assert "linear" in {n.op for n in g.nodes} and "matmul" not in {n.op for n in g.nodes}


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_run_time_weights_and_batch_first_layout(op: str) -> None:
    """ONNX Runtime runs no batch-first layer: ONNX's reference evaluator is the peer here."""
    model, feeds = rnn_model(op, "bidirectional", constant_weights=False, initial=True, layout=1)
    g = _both_backends(model, feeds, ort=False)
    assert "matmul" in {n.op for n in g.nodes}


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("run_time", [False, True])
def test_sequence_lengths_keep_the_state_and_zero_the_output(op: str, direction: str, run_time: bool) -> None:
    lens = np.array([5, 2, 3], np.int32)
    model, feeds = rnn_model(op, direction, lens=lens, initial=True)
    if not run_time:  # the lengths an initializer
        model.graph.input.remove(next(i for i in model.graph.input if i.name == "lens"))
        model.graph.initializer.append(helper.make_tensor("lens", 6, [BATCH], lens.tolist()))
        feeds = {k: v for k, v in feeds.items() if k != "lens"}
    _both_backends(model, feeds, onnx_reference=False)
    y = reference.run(from_onnx(model), feeds)[from_onnx(model).outputs[0].name]
    assert np.all(y[2:, :, 1] == 0) and np.all(y[3:, :, 2] == 0)  # past each row's length


@pytest.mark.parametrize(("op", "attrs"), [
    ("RNN", {"activations": ["Relu"], "clip": 0.8}),
    ("GRU", {"linear_before_reset": 1}),
    ("GRU", {"activations": ["HardSigmoid", "Softsign", "HardSigmoid", "LeakyRelu"],
             "activation_alpha": [0.3, 0.25, 0.1], "activation_beta": [0.4, 0.45]}),
    ("LSTM", {"activations": ["Sigmoid", "Affine", "ScaledTanh"], "activation_alpha": [0.5, 1.5],
              "activation_beta": [0.1, 0.7]}),
    ("LSTM", {"clip": 0.5}),
])
def test_attributes_follow_onnx_runtime(op: str, attrs: dict[str, object]) -> None:
    model, feeds = rnn_model(op, "bidirectional" if op == "GRU" else "forward", initial=True, **attrs)
    _both_backends(model, feeds, onnx_reference=op == "GRU" and "activations" not in attrs)


@pytest.mark.parametrize(("change", "message"), [
    (lambda: rnn_model("RNN", activations=["Elu"]), "activation 'Elu'"),
    (lambda: rnn_model("GRU", activations=["Sigmoid"]), "1 activations for 1 direction"),
    (lambda: rnn_model("LSTM", peepholes=True, activations=["Sigmoid", "Tanh", "Tanh"] * 2), "6 activations for 1"),
])
def test_what_is_not_converted_is_refused_with_its_reason(change, message: str) -> None:  # type: ignore[no-untyped-def]
    model, _ = change()
    with pytest.raises(OnnxImportError, match=message):
        from_onnx(model)
