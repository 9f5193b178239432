"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss imported as IR ops: against ONNX's reference evaluator and
ONNX Runtime on the reference and Numba backends; refusals named."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.ir import from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError

from .test_onnx_import import make_model, ort_outputs
from .test_onnx_import_logic import _agree

RNG = np.random.default_rng(53)
C = 5


def loss_model(op: str, shape: tuple[int, ...], weight: bool, ignore: int | None, reduction: str,
               log_prob: bool = False, dtype: type = np.float32):  # type: ignore[no-untyped-def]
    """One loss node over a random input [N, C, d...] and targets (some equal to `ignore`)."""
    x = RNG.standard_normal(shape).astype(dtype)
    target = RNG.integers(0, C, (shape[0], *shape[2:])).astype(np.int64)
    if ignore is not None:
        target.reshape(-1)[::3] = ignore
    feeds = {"x": x, "target": target}
    inits = {"w": RNG.uniform(0.2, 2.0, C).astype(dtype)} if weight else {}
    names = ["x", "target"] + (["w"] if weight else [])
    outs = ["loss"] + (["log_prob"] if log_prob else [])
    attrs = {"reduction": reduction} | ({} if ignore is None else {"ignore_index": ignore})
    node = helper.make_node(op, names, outs, **attrs)
    return make_model([node], feeds, outs, inits, opset=13), feeds


@pytest.mark.parametrize("op", ["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize(("weight", "ignore"), [(False, None), (True, None), (False, -1), (True, 2)])
@pytest.mark.parametrize("shape", [(6, C), (2, C, 3, 4)])
def test_losses(op: str, reduction: str, weight: bool, ignore: int | None, shape: tuple[int, ...]) -> None:
    model, feeds = loss_model(op, shape, weight, ignore, reduction, log_prob=op.startswith("Softmax"))
    if (op, weight, ignore, reduction) == ("NegativeLogLikelihoodLoss", False, -1, "mean"):
        # ONNX's reference evaluator counts the ignored targets in this one mean (ignore_index -1, no weight);
        # the operator's text, ONNX Runtime and the import divide by the targets that take part
        g = from_onnx(model)
        theirs = ort_outputs(model, feeds)
        assert theirs is not None
        x, t = feeds["x"], feeds["target"]
        kept = t != ignore
        picked = np.take_along_axis(x, np.clip(t, 0, C - 1)[:, None], axis=1)[:, 0]
        want = -picked[kept].sum() / kept.sum()
        for got in (reference.run(g, feeds), runtime.compile(g, backend="numba").run(feeds)):
            np.testing.assert_allclose(got[g.outputs[0].name], theirs[0], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got[g.outputs[0].name], want, rtol=1e-5, atol=1e-6)
        return
    got = _agree(model, feeds, rtol=1e-5, atol=1e-6)["loss"]
    assert got.shape == ((shape[0], *shape[2:]) if reduction == "none" else ())


def test_a_mean_over_only_ignored_targets_is_nan_as_onnx_says() -> None:
    model, feeds = loss_model("NegativeLogLikelihoodLoss", (3, C), False, 1, "mean")
    feeds["target"][:] = 1
    assert np.isnan(_agree(model, feeds)["loss"])


def test_half_precision_is_computed_in_float32() -> None:
    model, feeds = loss_model("SoftmaxCrossEntropyLoss", (4, C, 3), True, None, "mean", log_prob=True,
                              dtype=np.float16)
    got = _agree(model, feeds, rtol=2e-3, atol=2e-3)
    assert got["loss"].dtype == np.float16 and got["log_prob"].dtype == np.float16


@pytest.mark.parametrize(("x", "target", "message"), [
    (np.zeros((2, C, 3), np.float32), np.zeros((2, 4), np.int64), "integer target"),
    (np.zeros((2, C), np.float32), np.zeros(2, np.float32), "integer target"),
    (np.zeros((2, C), np.int32), np.zeros(2, np.int64), "floating point only"),
])
def test_malformed_losses_are_refused(x: np.ndarray, target: np.ndarray, message: str) -> None:
    node = helper.make_node("NegativeLogLikelihoodLoss", ["x", "target"], ["loss"])
    model = make_model([node], {"x": x, "target": target}, ["loss"], opset=13)
    with pytest.raises(OnnxImportError, match=message):
        from_onnx(model)
