"""Small model-shaped graphs for IR tests: an MLP, a CNN, a transformer block, annotated types, constants."""

from __future__ import annotations

from collections.abc import Callable

import ml_dtypes
import numpy as np
from tensorsmith.ir import Graph, GraphBuilder, QuantInfo, SparsityInfo, Value, f32, i8


def _weights(seed: int) -> Callable[..., np.ndarray]:
    """A source of f32 weights scaled by 1/sqrt(fan-in); the same seed gives the same arrays."""
    rng = np.random.default_rng(seed)
    return lambda *shape: (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)


def mlp() -> Graph:
    """linear -> relu -> dropout -> linear -> softmax."""
    _w = _weights(1)
    b = GraphBuilder("mlp")
    x = b.input("x", f32[2, 16])
    h = b.relu(b.linear(x, _w(32, 16), _w(32), name="fc1"), name="act")
    h = b.dropout(h, ratio=0.1, name="drop")
    b.output(b.softmax(b.linear(h, _w(10, 32), _w(10), name="fc2"), name="probs"))
    return b.build()


def cnn() -> Graph:
    """conv -> batchnorm -> relu -> maxpool -> depthwise conv -> avgpool -> global pool -> classifier."""
    _w = _weights(2)
    b = GraphBuilder("cnn")
    x = b.input("image", f32[1, 3, 8, 8])
    c = b.conv2d(x, _w(4, 3, 3, 3), _w(4), pads=1, name="conv1")
    c = b.batchnorm(c, _w(4) + 1, _w(4), _w(4), np.abs(_w(4)) + 0.5, epsilon=1e-3, name="bn1")
    c = b.maxpool2d(b.relu(c, name="relu1"), kernel=[2, 2], name="pool1")
    c = b.conv2d(c, _w(4, 1, 3, 3), strides=(2, 1), pads=(1, 1, 0, 1), dilations=(1, 2), groups=4, name="dw")
    c = b.avgpool2d(c, kernel=[2, 2], strides=[1, 2], ceil_mode=True, count_include_pad=True, name="pool2")
    c = b.op("global-avgpool", c, name="gap")
    logits = b.linear(b.flatten(c, name="flat"), _w(5, 4), name="fc")
    b.output(logits, b.lrn(c, size=3, name="lrn"))
    return b.build()


def transformer_block(seq: int = 4, dim: int = 8, heads: int = 2, ffn: int = 16) -> Graph:
    """Self-attention with residual and layernorm, then a GELU FFN with residual and layernorm."""
    _w = _weights(3)
    hd = dim // heads
    b = GraphBuilder("encoder_block")
    x = b.input("x", f32[1, seq, dim])

    def split_heads(v: Value, name: str) -> Value:
        return b.transpose(b.reshape(v, [1, seq, heads, hd], name=f"{name}_split"), [0, 2, 1, 3], name=f"{name}_h")

    q = split_heads(b.linear(x, _w(dim, dim), _w(dim), name="q"), "q")
    k = split_heads(b.linear(x, _w(dim, dim), _w(dim), name="k"), "k")
    v = split_heads(b.linear(x, _w(dim, dim), _w(dim), name="v"), "v")
    scores = b.matmul(q, b.transpose(k, [0, 1, 3, 2], name="k_t"), name="scores")
    probs = b.softmax(b.mul(scores, np.float32(1 / np.sqrt(hd)), name="scaled"), axis=-1, name="probs")
    ctx = b.transpose(b.matmul(probs, v, name="ctx_h"), [0, 2, 1, 3], name="ctx_t")
    ctx = b.reshape(ctx, [1, seq, dim], name="ctx")
    attn = b.linear(ctx, _w(dim, dim), _w(dim), name="attn_out")
    h = b.layernorm(b.add(x, attn, name="res1"), np.ones(dim, np.float32), np.zeros(dim, np.float32), name="ln1")
    f = b.gelu(b.linear(h, _w(ffn, dim), _w(ffn), name="ff1"), name="ff_act")
    f = b.linear(f, _w(dim, ffn), _w(dim), name="ff2")
    b.output(b.layernorm(b.add(h, f, name="res2"), _w(dim) + 1, _w(dim), epsilon=1e-6, name="ln2"))
    return b.build()


def annotated() -> Graph:
    """Quantization and sparsity annotations on input, constant and computed types."""
    _w = _weights(4)
    b = GraphBuilder("annotated")
    qx = b.input("qx", i8[2, 3].replace(quant=QuantInfo((0.5, 0.25), (0, -3), 8, axis=0)))
    x = b.dequantize(qx, name="x")
    w = b.const(np.where(np.arange(24).reshape(8, 3) % 2 == 1, 0, _w(8, 3)).astype(np.float32), "w_sparse")
    w.type = w.type.replace(sparsity=SparsityInfo("unstructured", 0.5))
    wb = b.const(_w(4, 8) * np.kron([[1, 0], [0, 0]], np.ones((2, 4), np.float32)), "w_block")
    wb.type = wb.type.replace(sparsity=SparsityInfo("block", 0.25, block=(2, 4)))
    w24 = b.const(_w(4, 4) * np.tile(np.float32([1, 0, 0, 1]), (4, 1)), "w_24")
    w24.type = w24.type.replace(sparsity=SparsityInfo("nm", 0.5, n=2, m=4))
    wc = b.const(_w(4, 4) * np.float32([[1], [1], [0], [1]]), "w_chan")
    wc.type = wc.type.replace(sparsity=SparsityInfo("channel", 0.75))
    w4 = b.const(np.arange(-8, 8, 2, dtype=np.int8).reshape(2, 4).astype(ml_dtypes.int4), "w_i4")
    w4.type = w4.type.replace(quant=QuantInfo((0.1, 0.2), (0, 1), 4, axis=1, group_size=2))
    h = b.linear(b.linear(x, w), wb)
    h = b.linear(b.linear(h, w24), wc)
    h = b.add(h, b.dequantize(w4, scale=[0.1], zero_point=[0], name="w4_deq"))
    q = b.quantize(h, [0.1, 0.2, 0.3, 0.4], [0, 1, 2, 3], axis=1, dtype="u8", name="q_out")
    b.output(q)
    return b.build()


CONST_DTYPES = ("f32", "f16", "bf16", "i32", "i8", "u8", "bool", "i4")


def constant_array(dtype: str, n: int) -> np.ndarray:
    """`n` values of IR dtype `dtype`, with the awkward ones (inf, nan, -0, extremes) up front."""
    specials: dict[str, list] = {
        "f32": [np.inf, -np.inf, np.nan, -np.nan, -0.0, 3.4028235e38, 1e-45, 0.1, -1 / 3],
        "f16": [np.inf, -np.inf, np.nan, -np.nan, -0.0, 65504.0, 6e-8, 0.1, -1 / 3],
        "bf16": [np.inf, -np.inf, -np.nan, np.nan, -0.0, 3.38e38, 1e-40, 0.1, -1 / 3],
        "i32": [-(2**31), 2**31 - 1, 0, -1], "i8": [-128, 127, 0, -1], "u8": [0, 255, 128, 1],
        "bool": [True, False], "i4": [-8, 7, 0, -1],
    }
    rng = np.random.default_rng(n)
    np_dt = {"f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16, "i32": np.int32, "i8": np.int8,
             "u8": np.uint8, "bool": np.bool_, "i4": ml_dtypes.int4}[dtype]
    if dtype in ("f32", "f16", "bf16"):
        rest = rng.standard_normal(n) * 10
    elif dtype == "bool":
        rest = rng.random(n) < 0.5
    else:
        lo, hi = {"i32": (-(2**31), 2**31), "i8": (-128, 128), "u8": (0, 256), "i4": (-8, 8)}[dtype]
        rest = rng.integers(lo, hi, n)
    vals = np.concatenate([np.array(specials[dtype], np.float64 if dtype[0] in "fb" and dtype != "bool"
                                     else object), np.asarray(rest, object)])[:n]
    out = np.array(vals.tolist()).astype(np_dt) if dtype != "bool" else np.array(vals.tolist(), np.bool_)
    return out.reshape(n)


def constants(n: int) -> Graph:
    """One constant of `n` elements per dtype, each cast to f32 and summed into the output."""
    b = GraphBuilder(f"constants_{n}")
    x = b.input("x", f32[n])
    acc = x
    for dt in CONST_DTYPES:
        c = b.const(constant_array(dt, n), f"c_{dt}")
        acc = b.add(acc, b.cast(c, dtype="f32", name=f"as_f32_{dt}"), name=f"sum_{dt}")
    b.output(acc)
    return b.build()
