"""A residual MLP trained in numpy (stem, pre-activation residual blocks, classifier): the deep digits model."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .numpy_training import softmax_cross_entropy

RESIDUAL_INIT_SCALE = 0.1
"""The second linear of each block starts this much smaller than He init, so a fresh block is near identity."""


@dataclass
class ResMLP:
    """x -> relu(stem) -> blocks h += fc2(relu(fc1(h))) -> linear classifier; weights [out, in] as numpy arrays."""

    params: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def init(cls, rng: np.random.Generator, n_in: int, width: int, hidden: int, blocks: int,
             classes: int) -> ResMLP:
        """He-initialized weights for `blocks` residual blocks of `width` units with `hidden` inner units."""
        def dense(n_out: int, n_in: int, scale: float = 1.0) -> np.ndarray:
            return rng.standard_normal((n_out, n_in)) * np.sqrt(2 / n_in) * scale

        p = {"stem.weight": dense(width, n_in), "stem.bias": np.zeros(width)}
        for i in range(blocks):
            p[f"block{i}.fc1.weight"] = dense(hidden, width)
            p[f"block{i}.fc1.bias"] = np.zeros(hidden)
            p[f"block{i}.fc2.weight"] = dense(width, hidden, RESIDUAL_INIT_SCALE)
            p[f"block{i}.fc2.bias"] = np.zeros(width)
        p["head.weight"] = rng.standard_normal((classes, width)) * np.sqrt(1 / width)
        p["head.bias"] = np.zeros(classes)
        return cls({k: v.astype(np.float32) for k, v in p.items()})

    @property
    def blocks(self) -> int:
        """Number of residual blocks."""
        return sum(1 for k in self.params if k.endswith(".fc1.weight"))

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Logits for x [N, F] and the activations the backward pass needs (`h{i}`: output of block i-1)."""
        p, s = self.params, {"x": x}
        s["z0"] = x @ p["stem.weight"].T + p["stem.bias"]
        h = np.maximum(s["z0"], 0)
        s["h0"] = h
        for i in range(self.blocks):
            z = h @ p[f"block{i}.fc1.weight"].T + p[f"block{i}.fc1.bias"]
            s[f"z{i + 1}"] = z
            a = np.maximum(z, 0)
            s[f"a{i + 1}"] = a
            h = h + a @ p[f"block{i}.fc2.weight"].T + p[f"block{i}.fc2.bias"]
            s[f"h{i + 1}"] = h
        return h @ p["head.weight"].T + p["head.bias"], s

    def gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean cross-entropy of x against labels y and its gradient for every parameter."""
        p = self.params
        logits, s = self.forward(x)
        loss, d = softmax_cross_entropy(logits, y)
        nb = self.blocks
        g = {"head.weight": d.T @ s[f"h{nb}"], "head.bias": d.sum(0)}
        dh = d @ p["head.weight"]
        for i in reversed(range(nb)):
            g[f"block{i}.fc2.weight"] = dh.T @ s[f"a{i + 1}"]
            g[f"block{i}.fc2.bias"] = dh.sum(0)
            dz = (dh @ p[f"block{i}.fc2.weight"]) * (s[f"z{i + 1}"] > 0)
            g[f"block{i}.fc1.weight"] = dz.T @ s[f"h{i}"]
            g[f"block{i}.fc1.bias"] = dz.sum(0)
            dh = dh + dz @ p[f"block{i}.fc1.weight"]
        dz0 = dh * (s["z0"] > 0)
        g["stem.weight"] = dz0.T @ s["x"]
        g["stem.bias"] = dz0.sum(0)
        return loss, g

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted class per sample."""
        return np.argmax(self.forward(x)[0], axis=1)
