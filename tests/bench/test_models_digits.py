"""Trained digits models: sklearn MLP and numpy-trained CNN, imported to IR, scored on the test split."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.bench.models import digits, load_model
from tensorsmith.bench.models.numpy_cnn import SmallCNN, col2im, im2col

from .gradcheck import assert_gradients_match_finite_differences

pytest.importorskip("sklearn", reason="the digits models need scikit-learn: pip install 'tensorsmith[models]'")

MIN_ACCURACY = 0.95


def test_split_is_fixed_and_stratified() -> None:
    s = digits.digits_split()
    assert s.x_train.shape == (1347, 64) and s.x_test.shape == (450, 64)
    assert s.x_test.dtype == np.float32 and 0.0 <= s.x_test.min() and s.x_test.max() <= 1.0
    assert np.bincount(s.y_test, minlength=10).min() >= 43  # stratified: each class ~25% of its ~180 images


def test_mlp_digits_accuracy_and_sklearn_agreement() -> None:
    m = load_model("mlp-digits")
    assert m.metric_name == "accuracy"
    acc = m.quality(runtime.compile(m.graph, backend="reference").run)
    assert acc >= MIN_ACCURACY
    assert acc == pytest.approx(m.info["sklearn_test_accuracy"])
    est = digits.trained_sklearn_mlp()
    probs = reference.run(m.graph, m.inputs)["probs"]
    np.testing.assert_allclose(probs, est.predict_proba(m.inputs["x"]), atol=1e-5)


def test_cnn_digits_accuracy_and_numpy_agreement() -> None:
    m = load_model("cnn-digits")
    ops = [n.op for n in m.graph.nodes]
    assert ops.count("conv2d") == 2 and ops.count("maxpool2d") == 2 and "linear" in ops
    acc = m.quality(lambda i: reference.run(m.graph, i))
    assert acc >= MIN_ACCURACY
    assert acc == pytest.approx(m.info["numpy_test_accuracy"])
    logits, _ = SmallCNN(dict(digits.trained_cnn())).forward(m.inputs["x"])
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(reference.run(m.graph, m.inputs)["probs"], e / e.sum(1, keepdims=True), atol=1e-5)


def test_cnn_training_is_reproducible() -> None:
    first = digits.trained_cnn()
    again = digits.trained_cnn.__wrapped__()
    for k in first:
        np.testing.assert_array_equal(first[k], again[k])


def test_accuracy_metric_counts_mistakes() -> None:
    m = load_model("mlp-digits")
    y = digits.digits_split().y_test
    wrong = np.eye(10, dtype=np.float32)[(y + 1) % 10]
    wrong[:45] = np.eye(10, dtype=np.float32)[y[:45]]
    assert m.quality(lambda i: {"probs": wrong}) == pytest.approx(0.1)


def test_numpy_cnn_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(1)
    m = SmallCNN.init(rng, 1, (3, 4), 16, 5)
    m.params = {k: v.astype(np.float64) for k, v in m.params.items()}
    x, y = rng.standard_normal((2, 1, 8, 8)), np.array([1, 4])
    assert_gradients_match_finite_differences(m, x, y, rng)


def test_col2im_is_the_adjoint_of_im2col() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 5, 4))
    c = rng.standard_normal((2 * 5 * 4, 3 * 9))
    assert np.sum(im2col(x) * c) == pytest.approx(np.sum(x * col2im(c, x.shape)))


def test_sklearn_importer_rejects_unfitted_estimator() -> None:
    from sklearn.neural_network import MLPClassifier

    with pytest.raises(ValueError, match="has no coefs_; pass a fitted MLPClassifier"):
        digits.graph_from_sklearn_mlp(MLPClassifier(), batch=1)
