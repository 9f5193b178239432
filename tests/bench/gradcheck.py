"""A finite-difference check of the numpy digits models' analytic gradients."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.bench.models.numpy_training import Trainable


def assert_gradients_match_finite_differences(model: Trainable, x: np.ndarray, y: np.ndarray,
                                              rng: np.random.Generator, step: float = 1e-6) -> None:
    """One random entry of every float64 parameter: the central difference of the loss equals its gradient."""
    _, g = model.gradients(x, y)
    for k, p in model.params.items():
        idx = tuple(int(rng.integers(0, s)) for s in p.shape)
        old = p[idx]
        p[idx] = old + step
        lp, _ = model.gradients(x, y)
        p[idx] = old - step
        lm, _ = model.gradients(x, y)
        p[idx] = old
        assert (lp - lm) / (2 * step) == pytest.approx(g[k][idx], rel=1e-4, abs=1e-7), k
