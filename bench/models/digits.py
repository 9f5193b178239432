"""Trained digits models (scikit-learn's bundled 8x8 digits): an sklearn MLP and a numpy-trained CNN, imported to IR."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ...ir import Graph, GraphBuilder, f32
from .registry import Model, RunFn, register_model

SEED = 0
TEST_SIZE = 0.25


@dataclass(frozen=True)
class DigitsSplit:
    """Pixels scaled to [0, 1] as [N, 64] float32, labels, for the fixed train/test split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@lru_cache(maxsize=1)
def digits_split() -> DigitsSplit:
    """The stratified 75/25 split of sklearn's digits (1797 images) with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=TEST_SIZE, random_state=SEED, stratify=d.target)
    return DigitsSplit(xtr, ytr.astype(np.int64), xte, yte.astype(np.int64))


def accuracy_of(run: RunFn, inputs: dict[str, np.ndarray], labels: np.ndarray, output: str = "probs") -> float:
    """Fraction of samples whose arg-max output equals the label."""
    out = run(inputs)[output]
    return float(np.mean(np.argmax(out, axis=1) == labels))


# ---- sklearn MLP ----------------------------------------------------------------------------
_SK_ACTS = {"relu": "relu", "tanh": "tanh", "logistic": "sigmoid", "identity": None}


def graph_from_sklearn_mlp(est: Any, batch: int, name: str = "mlp_digits") -> Graph:
    """An IR graph computing `est.predict_proba` of a fitted sklearn MLPClassifier for [batch, n_features] f32 input."""
    for attr in ("coefs_", "intercepts_", "out_activation_", "activation"):
        if not hasattr(est, attr):
            raise ValueError(f"graph_from_sklearn_mlp: {type(est).__name__} has no {attr}; pass a fitted MLPClassifier")
    if est.activation not in _SK_ACTS:
        raise ValueError(f"graph_from_sklearn_mlp: activation {est.activation!r} is not supported")
    if est.out_activation_ not in ("softmax", "logistic"):
        raise ValueError(f"graph_from_sklearn_mlp: output activation {est.out_activation_!r} is not supported")
    b = GraphBuilder(name)
    h = b.input("x", f32[batch, est.coefs_[0].shape[0]])
    n = len(est.coefs_)
    for i, (w, c) in enumerate(zip(est.coefs_, est.intercepts_)):
        h = b.linear(h, b.const(np.ascontiguousarray(w.T, np.float32), f"fc{i}.weight"),
                     b.const(np.asarray(c, np.float32), f"fc{i}.bias"), name=f"fc{i}")
        act = _SK_ACTS[est.activation] if i < n - 1 else None
        if act:
            h = b.op(act, h, name=f"{act}{i}")
    if est.out_activation_ == "softmax":
        b.output(b.softmax(h, axis=-1, name="probs"))
    else:  # binary: one logistic unit -> [1 - p, p], like predict_proba
        p = b.sigmoid(h, name="p1")
        b.output(b.concat([b.sub(b.const(np.asarray(1.0, np.float32), "one"), p, name="p0"), p], axis=1,
                          name="probs"))
    return b.build()


@lru_cache(maxsize=1)
def trained_sklearn_mlp() -> Any:
    """MLPClassifier(128, 64) fitted on the digits training split (fixed seed; cached per process)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    s = digits_split()
    est = MLPClassifier(hidden_layer_sizes=(128, 64), activation="relu", max_iter=200, random_state=SEED)
    with warnings.catch_warnings(), threadpool_limits(1, "blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(s.x_train, s.y_train)
    return est


MLP_DESC = "sklearn MLPClassifier 64-128-64-10 trained on sklearn digits (fixed seed), 450 test images; accuracy"


@register_model("mlp-digits", MLP_DESC, requires=("sklearn",))
def mlp_digits() -> Model:
    """The trained digits MLP on the whole test split; quality = test accuracy."""
    s = digits_split()
    est = trained_sklearn_mlp()
    graph = graph_from_sklearn_mlp(est, len(s.x_test))
    inputs = {"x": s.x_test}
    sk_acc = float(est.score(s.x_test, s.y_test))
    return Model("mlp-digits", graph, inputs, MLP_DESC, "accuracy",
                 lambda run: accuracy_of(run, inputs, s.y_test), info={"sklearn_test_accuracy": sk_acc})


# ---- numpy-trained CNN ----------------------------------------------------------------------
@lru_cache(maxsize=1)
def trained_cnn() -> dict[str, np.ndarray]:
    """Weights of the digits CNN trained by `numpy_cnn.train` (fixed seed; cached per process)."""
    from threadpoolctl import threadpool_limits

    from .numpy_cnn import SmallCNN
    from .numpy_training import train

    s = digits_split()
    rng = np.random.default_rng(SEED)
    model = SmallCNN.init(rng, 1, (8, 16), 16 * 2 * 2, 10)
    with threadpool_limits(1, "blas"):  # tiny GEMMs: BLAS threads only add overhead
        train(model, s.x_train.reshape(-1, 1, 8, 8), s.y_train, rng)
    return dict(model.params)


def graph_from_cnn(params: dict[str, np.ndarray], batch: int, name: str = "cnn_digits") -> Graph:
    """IR graph of the numpy SmallCNN: (conv3x3-relu-maxpool2) x 2, flatten, linear, softmax on [batch, 1, 8, 8]."""
    b = GraphBuilder(name)
    h = b.input("x", f32[batch, 1, 8, 8])
    for i in (1, 2):
        h = b.conv2d(h, b.const(params[f"conv{i}.weight"], f"conv{i}.weight"),
                     b.const(params[f"conv{i}.bias"], f"conv{i}.bias"), pads=1, name=f"conv{i}")
        h = b.relu(h, name=f"relu{i}")
        h = b.maxpool2d(h, kernel=(2, 2), name=f"pool{i}")
    h = b.flatten(h, axis=1, name="flat")
    h = b.linear(h, b.const(params["fc.weight"], "fc.weight"), b.const(params["fc.bias"], "fc.bias"), name="fc")
    b.output(b.softmax(h, axis=-1, name="probs"))
    return b.build()


CNN_DESC = "CNN (2x conv3x3+relu+maxpool, linear) trained in numpy on sklearn digits, 450 test images; accuracy"


@register_model("cnn-digits", CNN_DESC, requires=("sklearn",))
def cnn_digits() -> Model:
    """The trained digits CNN on the whole test split; quality = test accuracy."""
    s = digits_split()
    graph = graph_from_cnn(trained_cnn(), len(s.x_test))
    inputs = {"x": s.x_test.reshape(-1, 1, 8, 8)}
    from .numpy_cnn import SmallCNN

    np_acc = float(np.mean(SmallCNN(dict(trained_cnn())).predict(inputs["x"]) == s.y_test))
    return Model("cnn-digits", graph, inputs, CNN_DESC, "accuracy",
                 lambda run: accuracy_of(run, inputs, s.y_test), info={"numpy_test_accuracy": np_acc})
