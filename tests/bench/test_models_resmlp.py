"""The deep digits model: numpy ResMLP training, its IR import and the resmlp-digits zoo entry."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.bench.models import digits_resmlp, load_model
from tensorsmith.bench.models.numpy_resmlp import ResMLP

from .gradcheck import assert_gradients_match_finite_differences

pytest.importorskip("sklearn", reason="the digits models need scikit-learn: pip install 'tensorsmith[models]'")

MIN_ACCURACY = 0.97


def test_resmlp_digits_is_deep_and_accurate() -> None:
    m = load_model("resmlp-digits")
    names = {n.name for n in m.graph.nodes}
    assert digits_resmlp.BLOCKS >= 6
    assert all(digits_resmlp.block_output(i) in names for i in range(digits_resmlp.BLOCKS))
    acc = m.quality(lambda f: reference.run(m.graph, f))
    assert acc >= MIN_ACCURACY
    assert acc == pytest.approx(m.info["numpy_test_accuracy"])


def test_resmlp_graph_matches_numpy_forward() -> None:
    m = load_model("resmlp-digits", batch=16)
    logits, _ = ResMLP(dict(digits_resmlp.trained_resmlp())).forward(m.inputs["x"])
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(reference.run(m.graph, m.inputs)["probs"], e / e.sum(1, keepdims=True), atol=1e-5)


def test_resmlp_numba_matches_reference() -> None:
    m = load_model("resmlp-digits")
    got = runtime.compile(m.graph, backend="numba").run(m.inputs)["probs"]
    np.testing.assert_allclose(got, reference.run(m.graph, m.inputs)["probs"], rtol=1e-4, atol=1e-5)


def test_resmlp_training_is_reproducible() -> None:
    first = digits_resmlp.trained_resmlp()
    again = digits_resmlp.trained_resmlp.__wrapped__()
    for k in first:
        np.testing.assert_array_equal(first[k], again[k])


def test_resmlp_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(1)
    m = ResMLP.init(rng, 6, 5, 7, 3, 4)
    m.params = {k: v.astype(np.float64) + 0.1 * rng.standard_normal(v.shape) for k, v in m.params.items()}
    x, y = rng.standard_normal((3, 6)), np.array([1, 3, 0])
    assert_gradients_match_finite_differences(m, x, y, rng)


def test_resmlp_batch_option_is_checked() -> None:
    with pytest.raises(ValueError, match=r"resmlp-digits: batch 0 must lie in \[1, 450\]"):
        load_model("resmlp-digits", batch=0)
