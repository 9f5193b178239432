"""A small CNN trained in numpy (im2col convolutions, Adam): the digits CNN's training loop."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .numpy_training import softmax_cross_entropy


def im2col(x: np.ndarray) -> np.ndarray:
    """3x3 windows of x [N, C, H, W] with padding 1, as rows [N*H*W, C*9]."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = sliding_window_view(xp, (3, 3), axis=(2, 3))  # N C H W 3 3
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * 9)


def col2im(dcols: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Gradient of `im2col`: scatter-add rows [N*H*W, C*9] back to x [N, C, H, W]."""
    n, c, h, w = shape
    d = dcols.reshape(n, h, w, c, 3, 3).transpose(0, 3, 4, 5, 1, 2)  # N C 3 3 H W
    dxp = np.zeros((n, c, h + 2, w + 2), dcols.dtype)
    for i in range(3):
        for j in range(3):
            dxp[:, :, i : i + h, j : j + w] += d[:, :, i, j]
    return dxp[:, :, 1:-1, 1:-1]


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, _, h, wd = x.shape
    cols = im2col(x)
    y = cols @ w.reshape(w.shape[0], -1).T + b
    return y.reshape(n, h, wd, -1).transpose(0, 3, 1, 2), cols


def _pool(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def _pool_grad(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    xr = x.reshape(n, c, h // 2, 2, w // 2, 2)
    hit = xr == y[:, :, :, None, :, None]
    hit = hit / hit.sum(axis=(3, 5), keepdims=True)  # ties share the gradient
    return (hit * dy[:, :, :, None, :, None]).reshape(x.shape)


@dataclass
class SmallCNN:
    """conv3x3(pad 1)-relu-maxpool2 x 2, flatten, linear; weights as numpy arrays (NCHW, [out, in])."""

    params: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def init(cls, rng: np.random.Generator, in_ch: int, channels: tuple[int, int], flat: int,
             classes: int) -> SmallCNN:
        """He-initialized weights."""
        c1, c2 = channels
        p = {
            "conv1.weight": rng.standard_normal((c1, in_ch, 3, 3)) * np.sqrt(2 / (in_ch * 9)),
            "conv1.bias": np.zeros(c1),
            "conv2.weight": rng.standard_normal((c2, c1, 3, 3)) * np.sqrt(2 / (c1 * 9)),
            "conv2.bias": np.zeros(c2),
            "fc.weight": rng.standard_normal((classes, flat)) * np.sqrt(1 / flat),
            "fc.bias": np.zeros(classes),
        }
        return cls({k: v.astype(np.float32) for k, v in p.items()})

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Logits for x [N, C, H, W] and the activations the backward pass needs."""
        p, s = self.params, {}
        s["x"] = x
        s["z1"], s["cols1"] = _conv(x, p["conv1.weight"], p["conv1.bias"])
        s["a1"] = np.maximum(s["z1"], 0)
        s["p1"] = _pool(s["a1"])
        s["z2"], s["cols2"] = _conv(s["p1"], p["conv2.weight"], p["conv2.bias"])
        s["a2"] = np.maximum(s["z2"], 0)
        s["p2"] = _pool(s["a2"])
        s["f"] = s["p2"].reshape(len(x), -1)
        return s["f"] @ p["fc.weight"].T + p["fc.bias"], s

    def gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean cross-entropy of x against labels y and its gradient for every parameter."""
        p = self.params
        logits, s = self.forward(x)
        loss, d = softmax_cross_entropy(logits, y)
        g = {"fc.weight": d.T @ s["f"], "fc.bias": d.sum(0)}
        dp2 = (d @ p["fc.weight"]).reshape(s["p2"].shape)
        dz2 = _pool_grad(s["a2"], s["p2"], dp2) * (s["z2"] > 0)
        dz2r = dz2.transpose(0, 2, 3, 1).reshape(-1, dz2.shape[1])
        g["conv2.weight"] = (dz2r.T @ s["cols2"]).reshape(p["conv2.weight"].shape)
        g["conv2.bias"] = dz2r.sum(0)
        dp1 = col2im(dz2r @ p["conv2.weight"].reshape(dz2.shape[1], -1), s["p1"].shape)
        dz1 = _pool_grad(s["a1"], s["p1"], dp1) * (s["z1"] > 0)
        dz1r = dz1.transpose(0, 2, 3, 1).reshape(-1, dz1.shape[1])
        g["conv1.weight"] = (dz1r.T @ s["cols1"]).reshape(p["conv1.weight"].shape)
        g["conv1.bias"] = dz1r.sum(0)
        return loss, g

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted class per sample."""
        return np.argmax(self.forward(x)[0], axis=1)

