"""Training in numpy for the digits models: softmax cross-entropy and Adam on shuffled mini-batches."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Trainable(Protocol):
    """A model with named float parameters and a loss-and-gradients method."""

    params: dict[str, np.ndarray]

    def gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean loss of x against labels y and its gradient for every parameter."""
        ...


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) [N, C] against labels y [N], and its gradient by the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = len(y)
    loss = float(-np.mean(np.log(prob[np.arange(n), y] + 1e-12)))
    d = prob
    d[np.arange(n), y] -= 1
    d /= n
    return loss, d


def train(model: Trainable, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, epochs: int = 15,
          batch: int = 32, lr: float = 3e-3) -> list[float]:
    """Adam on mini-batches of shuffled (x, y); returns the mean loss of each epoch."""
    m = {k: np.zeros_like(v) for k, v in model.params.items()}
    v2 = {k: np.zeros_like(v) for k, v in model.params.items()}
    b1, b2, eps, t = 0.9, 0.999, 1e-8, 0
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            loss, g = model.gradients(x[idx], y[idx])
            total += loss * len(idx)
            t += 1
            for k, gk in g.items():
                m[k] = b1 * m[k] + (1 - b1) * gk
                v2[k] = b2 * v2[k] + (1 - b2) * gk * gk
                step = lr * (m[k] / (1 - b1**t)) / (np.sqrt(v2[k] / (1 - b2**t)) + eps)
                model.params[k] = (model.params[k] - step).astype(np.float32)
        losses.append(total / len(x))
    return losses
