"""The deep digits model: a residual MLP of eight blocks trained in numpy, imported to IR (zoo: resmlp-digits)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ...ir import Graph, GraphBuilder, f32
from .digits import SEED, accuracy_of, digits_split
from .registry import ExitSetup, Model, register_model

WIDTH = 64
HIDDEN = 128
BLOCKS = 8
EPOCHS = 20
BATCH = 32
LEARNING_RATE = 2e-3


@lru_cache(maxsize=1)
def trained_resmlp() -> dict[str, np.ndarray]:
    """Weights of the digits ResMLP trained by `numpy_cnn.train` (Adam, fixed seed; cached per process)."""
    from threadpoolctl import threadpool_limits

    from .numpy_resmlp import ResMLP
    from .numpy_training import train

    s = digits_split()
    rng = np.random.default_rng(SEED)
    model = ResMLP.init(rng, s.x_train.shape[1], WIDTH, HIDDEN, BLOCKS, 10)
    with threadpool_limits(1, "blas"):  # small GEMMs: BLAS threads only add overhead
        train(model, s.x_train, s.y_train, rng, epochs=EPOCHS, batch=BATCH, lr=LEARNING_RATE)
    return dict(model.params)


def block_output(i: int) -> str:
    """Name of the value residual block `i` ends with (the candidates for exits)."""
    return f"block{i}.out"


def graph_from_resmlp(params: dict[str, np.ndarray], batch: int, name: str = "resmlp_digits") -> Graph:
    """IR graph of the numpy ResMLP on [batch, 64]: stem, residual blocks `block{i}.out`, classifier, softmax."""
    b = GraphBuilder(name)
    n_in = params["stem.weight"].shape[1]
    x = b.input("x", f32[batch, n_in])

    def linear(h, key: str):  # type: ignore[no-untyped-def]
        return b.linear(h, b.const(params[f"{key}.weight"], f"{key}.weight"),
                        b.const(params[f"{key}.bias"], f"{key}.bias"), name=key)

    h = b.relu(linear(x, "stem"), name="stem.relu")
    blocks = sum(1 for k in params if k.endswith(".fc1.weight"))
    for i in range(blocks):
        a = b.relu(linear(h, f"block{i}.fc1"), name=f"block{i}.relu")
        h = b.add(h, linear(a, f"block{i}.fc2"), name=block_output(i))
    b.output(b.softmax(linear(h, "head"), axis=-1, name="probs"))
    return b.build()


EXIT_PIPELINE = "early-exit{at=block0.out+block1.out+block3.out,budget=0.5}"
"""Where `bench`'s early-exit rows put exits on this model, and the accuracy points the pass may spend: heads and
thresholds are fitted on the training split (its held-out part chooses the thresholds), never on the test images."""

EXIT_MAX_ACCURACY_DROP = 0.01
"""The bound of the early-exit rows: test accuracy at most one point below the model's without exits (the pass's
half-point budget holds on held-out training images, which the trained model fits better than test images)."""

DESC = (f"residual MLP ({BLOCKS} blocks {WIDTH}-{HIDDEN}-{WIDTH}) trained in numpy on sklearn digits, "
        "450 test images; accuracy")


@register_model("resmlp-digits", DESC, requires=("sklearn",))
def resmlp_digits(batch: int | None = None) -> Model:
    """The trained digits ResMLP on the test split (batch: its first `batch` images); quality = accuracy."""
    from .numpy_resmlp import ResMLP

    s = digits_split()
    n = len(s.x_test) if batch is None else batch
    if not 0 < n <= len(s.x_test):
        raise ValueError(f"resmlp-digits: batch {batch} must lie in [1, {len(s.x_test)}]")
    params = trained_resmlp()
    inputs = {"x": s.x_test[:n]}
    labels = s.y_test[:n]
    np_acc = float(np.mean(ResMLP(dict(params)).predict(inputs["x"]) == labels))
    return Model("resmlp-digits", graph_from_resmlp(params, n), inputs, DESC, "accuracy",
                 lambda run: accuracy_of(run, inputs, labels), info={"numpy_test_accuracy": np_acc},
                 exits=ExitSetup(EXIT_PIPELINE, [{"x": s.x_train, "labels": s.y_train}], EXIT_MAX_ACCURACY_DROP))
