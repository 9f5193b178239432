"""Normalization kernels: softmax, layer norm, batch norm, local response norm."""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import twin
from .mathfn import F0, F1, fexp

NEG_INF = np.float32(-np.inf)
NAN = np.float32(np.nan)


@twin
def softmax_rows(x, out):  # type: ignore[no-untyped-def]
    """out[r] = softmax(x[r]) over the last axis of 2-D [R, L] arrays."""
    rows, length = x.shape
    for r in prange(rows):
        xr = x[r]
        o = out[r]
        m = NEG_INF
        nan = False
        for j in range(length):  # a plain max and a NaN flag vectorize; a NaN-propagating select does not
            v = xr[j]
            m = v if v > m else m
            nan |= v != v
        if nan:
            m = NAN
        s = F0
        for j in range(length):
            e = fexp(xr[j] - m)
            o[j] = e
            s += e
        inv = F1 / s
        for j in range(length):
            o[j] *= inv


@twin
def softmax_mid(x, out, acc):  # type: ignore[no-untyped-def]
    """Softmax over the middle axis of 3-D [A, L, B] arrays; acc is scratch [A, 2, B]."""
    na, length, nb = x.shape
    for a in prange(na):
        m = acc[a, 0]
        s = acc[a, 1]
        for b in range(nb):
            m[b] = NEG_INF
            s[b] = F0
        for j in range(length):
            xr = x[a, j]
            for b in range(nb):
                v = xr[b]
                m[b] = v if (v > m[b] or v != v) else m[b]
        for j in range(length):
            xr = x[a, j]
            o = out[a, j]
            for b in range(nb):
                e = fexp(xr[b] - m[b])
                o[b] = e
                s[b] += e
        for b in range(nb):
            s[b] = F1 / s[b]
        for j in range(length):
            o = out[a, j]
            for b in range(nb):
                o[b] *= s[b]


@twin
def layernorm(x, scale, bias, has_scale, has_bias, eps, out):  # type: ignore[no-untyped-def]
    """out[r] = (x[r] - mean) / sqrt(var + eps) * scale + bias over rows of 2-D [R, L] arrays."""
    rows, length = x.shape
    inv_n = F1 / np.float32(max(length, 1))
    for r in prange(rows):
        xr = x[r]
        o = out[r]
        s = F0
        for j in range(length):
            s += xr[j]
        mean = s * inv_n
        q = F0
        for j in range(length):
            d = xr[j] - mean
            q += d * d
        rstd = F1 / np.sqrt(q * inv_n + eps)
        if has_scale and has_bias:
            for j in range(length):
                o[j] = (xr[j] - mean) * rstd * scale[j] + bias[j]
        elif has_scale:
            for j in range(length):
                o[j] = (xr[j] - mean) * rstd * scale[j]
        else:
            for j in range(length):
                o[j] = (xr[j] - mean) * rstd


@twin
def batchnorm(x, scale, bias, mean, var, eps, out):  # type: ignore[no-untyped-def]
    """out[n, c] = (x[n, c] - mean[c]) * scale[c] / sqrt(var[c] + eps) + bias[c] on [N, C, S] arrays."""
    nb, nc, size = x.shape
    for t in prange(nb * nc):
        c = t % nc
        n = t // nc
        inv = np.float32(np.float64(scale[c]) / np.sqrt(np.float64(var[c]) + eps))
        mu = mean[c]
        b = bias[c]
        xr = x[n, c]
        o = out[n, c]
        for j in range(size):
            o[j] = (xr[j] - mu) * inv + b


@twin
def lrn(x, size, alpha, beta, bias, out):  # type: ignore[no-untyped-def]
    """Local response normalization across channels of [N, C, S] arrays (ONNX LRN)."""
    nb, nc, length = x.shape
    lo = (size - 1) // 2
    hi = size - 1 - lo
    coef = alpha / size
    for t in prange(nb * nc):
        n = t // nc
        c = t - n * nc
        o = out[n, c]
        for j in range(length):
            o[j] = F0
        for cc in range(max(0, c - lo), min(nc, c + hi + 1)):
            xr = x[n, cc]
            for j in range(length):
                o[j] += xr[j] * xr[j]
        xc = x[n, c]
        for j in range(length):
            o[j] = xc[j] / (bias + coef * o[j]) ** beta
