"""Built-in zoo models with random weights from a fixed seed: mlp, cnn, transformer-block, bert-base-layer."""

from __future__ import annotations

import numpy as np

from ...ir import Graph, GraphBuilder, Value, f32
from .registry import Model, max_abs_err_quality, register_model

SEED = 0


def _dense(rng: np.random.Generator, n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """A [n_out, n_in] weight scaled by 1/sqrt(n_in) and a small bias, both f32."""
    w = rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
    b = 0.1 * rng.standard_normal(n_out)
    return w.astype(np.float32), b.astype(np.float32)


def _random_model(name: str, graph: Graph, inputs: dict[str, np.ndarray], description: str) -> Model:
    return Model(name, graph, inputs, description, "max_abs_err", max_abs_err_quality(graph, inputs))


# ---- mlp ------------------------------------------------------------------------------------
MLP_DESC = "3-layer MLP 256-512-256-10 with ReLU, batch 8, random weights"


@register_model("mlp", MLP_DESC)
def mlp(batch: int = 8, sizes: tuple[int, ...] = (256, 512, 256, 10)) -> Model:
    """A 3-layer perceptron with ReLU between layers."""
    rng = np.random.default_rng(SEED)
    b = GraphBuilder("mlp")
    h = b.input("x", f32[batch, sizes[0]])
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w, bias = _dense(rng, n_out, n_in)
        h = b.linear(h, b.const(w, f"fc{i}.weight"), b.const(bias, f"fc{i}.bias"), name=f"fc{i}")
        if i < len(sizes) - 2:
            h = b.relu(h, name=f"relu{i}")
    b.output(h)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    return _random_model("mlp", b.build(), {"x": x}, MLP_DESC)


# ---- cnn ------------------------------------------------------------------------------------
CNN_DESC = "small CNN on 3x32x32: 3x(conv3x3+batchnorm+relu), 2 maxpools, global-avgpool, linear; batch 4"


@register_model("cnn", CNN_DESC)
def cnn(batch: int = 4, channels: tuple[int, ...] = (16, 32, 64), classes: int = 10) -> Model:
    """conv-bn-relu blocks with max pooling, global average pooling and a linear classifier."""
    rng = np.random.default_rng(SEED)
    b = GraphBuilder("cnn")
    h = b.input("x", f32[batch, 3, 32, 32])
    c_in = 3
    for i, c_out in enumerate(channels):
        w = (rng.standard_normal((c_out, c_in, 3, 3)) / np.sqrt(c_in * 9)).astype(np.float32)
        h = b.conv2d(h, b.const(w, f"conv{i}.weight"), b.const(np.zeros(c_out, np.float32), f"conv{i}.bias"),
                     pads=1, name=f"conv{i}")
        h = b.batchnorm(h, b.const(1.0 + 0.1 * rng.standard_normal(c_out), f"bn{i}.scale"),
                        b.const(0.1 * rng.standard_normal(c_out), f"bn{i}.bias"),
                        b.const(0.1 * rng.standard_normal(c_out), f"bn{i}.mean"),
                        b.const(1.0 + 0.2 * rng.random(c_out), f"bn{i}.var"), name=f"bn{i}")
        h = b.relu(h, name=f"relu{i}")
        if i < len(channels) - 1:
            h = b.maxpool2d(h, kernel=(2, 2), name=f"pool{i}")
        c_in = c_out
    h = b.op("global-avgpool", h, name="gap")
    h = b.flatten(h, axis=1, name="flat")
    w, bias = _dense(rng, classes, c_in)
    b.output(b.linear(h, b.const(w, "fc.weight"), b.const(bias, "fc.bias"), name="fc"))
    x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    return _random_model("cnn", b.build(), {"x": x}, CNN_DESC)


# ---- transformer encoder blocks -------------------------------------------------------------
def encoder_block(b: GraphBuilder, x: Value, p: dict[str, np.ndarray], heads: int, prefix: str,
                  mask: Value | None = None, eps: float = 1e-12) -> Value:
    """One post-norm encoder block (BERT layout) on x [B, S, H]; `p` holds the weights by short name."""
    from ...ir.bert_loader import encoder_layer

    return encoder_layer(b, x, p, heads=heads, prefix=prefix, mask=mask, eps=eps)


def random_encoder_weights(rng: np.random.Generator, hidden: int, ffn: int) -> dict[str, np.ndarray]:
    """Random weights of one encoder block in the short names `encoder_layer` expects."""
    p: dict[str, np.ndarray] = {}
    for n in ("q", "k", "v", "o"):
        p[f"{n}.weight"], p[f"{n}.bias"] = _dense(rng, hidden, hidden)
    p["ffn_in.weight"], p["ffn_in.bias"] = _dense(rng, ffn, hidden)
    p["ffn_out.weight"], p["ffn_out.bias"] = _dense(rng, hidden, ffn)
    for n in ("ln1", "ln2"):
        p[f"{n}.weight"] = (1.0 + 0.1 * rng.standard_normal(hidden)).astype(np.float32)
        p[f"{n}.bias"] = (0.1 * rng.standard_normal(hidden)).astype(np.float32)
    return p


def _encoder_model(name: str, desc: str, batch: int, seq: int, hidden: int, heads: int, ffn: int,
                   with_mask: bool) -> Model:
    rng = np.random.default_rng(SEED)
    b = GraphBuilder(name.replace("-", "_"))
    x = b.input("x", f32[batch, seq, hidden])
    mask = b.input("mask", f32[batch, 1, 1, seq]) if with_mask else None
    y = encoder_block(b, x, random_encoder_weights(rng, hidden, ffn), heads, "layer0", mask=mask)
    b.output(y)
    inputs = {"x": rng.standard_normal((batch, seq, hidden)).astype(np.float32)}
    if with_mask:
        m = np.zeros((batch, 1, 1, seq), np.float32)
        m[1:, ..., seq * 3 // 4:] = np.finfo(np.float32).min  # pad the tail of all but the first sequence
        inputs["mask"] = m
    return _random_model(name, b.build(), inputs, desc)


TB_DESC = "one transformer encoder block: seq 32, hidden 64, 4 heads, FFN 256 (GELU), random weights"


@register_model("transformer-block", TB_DESC)
def transformer_block(batch: int = 1, seq: int = 32, hidden: int = 64, heads: int = 4, ffn: int = 256) -> Model:
    """Self-attention + FFN encoder block with residuals and layer norms."""
    return _encoder_model("transformer-block", TB_DESC, batch, seq, hidden, heads, ffn, with_mask=False)


BB_DESC = "one BERT-base encoder layer: seq 128, hidden 768, 12 heads, FFN 3072, batch 2 with padding mask"


@register_model("bert-base-layer", BB_DESC)
def bert_base_layer(batch: int = 2, seq: int = 128) -> Model:
    """One encoder layer at BERT-base sizes, random weights, additive attention mask input."""
    return _encoder_model("bert-base-layer", BB_DESC, batch, seq, 768, 12, 3072, with_mask=True)
