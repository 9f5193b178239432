"""Load BERT-style encoders (a config.json and a safetensors file) into an IR graph."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .builder import GraphBuilder
from .dtypes import f32, i64
from .graph import Graph, Value

MASK_NEG = -10000.0
"""Additive attention-mask value for padded keys: exp(-1e4) is exactly 0 in f32 and f64."""

_ACTS = {"gelu": "none", "gelu_python": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh",
         "gelu_fast": "tanh"}


class BertLoadError(ValueError):
    """A BERT checkpoint or config cannot be turned into a graph; the message names the file and key."""


@dataclass(frozen=True)
class BertConfig:
    """The fields of a Hugging Face BERT config.json that shape the graph."""

    hidden_size: int
    num_attention_heads: int
    num_hidden_layers: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "config") -> BertConfig:
        """Read the fields from a config dict; missing or inconsistent fields raise BertLoadError."""
        need = ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size")
        missing = [k for k in need if k not in d]
        if missing:
            raise BertLoadError(f"{source}: missing BERT config field(s) {', '.join(missing)}")
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        cfg = cls(**kw)
        if cfg.hidden_size % cfg.num_attention_heads:
            raise BertLoadError(f"{source}: hidden_size {cfg.hidden_size} is not a multiple of "
                                f"num_attention_heads {cfg.num_attention_heads}")
        if cfg.hidden_act not in _ACTS:
            raise BertLoadError(f"{source}: hidden_act {cfg.hidden_act!r} is not supported; "
                                f"known: {', '.join(_ACTS)}")
        return cfg

    @classmethod
    def from_file(cls, path: str | Path) -> BertConfig:
        """Read a config.json file."""
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise BertLoadError(f"{path}: cannot read BERT config: {e}") from None
        return cls.from_dict(d, str(path))


# ---- graph pieces ---------------------------------------------------------------------------
def encoder_layer(b: GraphBuilder, x: Value, p: Mapping[str, np.ndarray], heads: int, prefix: str,
                  mask: Value | None = None, eps: float = 1e-12, gelu: str = "none") -> Value:
    """One post-norm BERT encoder layer on x [B, S, H].

    `p` holds the weights under short names: q/k/v/o.{weight,bias}, ln1/ln2.{weight,bias},
    ffn_in/ffn_out.{weight,bias}; `mask` is an additive [B, 1, 1, S] attention mask (0 or very
    negative), broadcast over heads and query positions.
    """
    bsz, seq, hidden = x.type.shape
    hd = hidden // heads

    def c(short: str) -> Value:
        return b.const(p[short], f"{prefix}.{short}")

    def lin(h: Value, short: str) -> Value:
        return b.linear(h, c(f"{short}.weight"), c(f"{short}.bias"), name=f"{prefix}.{short}")

    def split_heads(h: Value, name: str, perm: tuple[int, ...]) -> Value:
        h = b.reshape(h, (bsz, seq, heads, hd), name=f"{prefix}.{name}_heads")
        return b.transpose(h, perm, name=f"{prefix}.{name}_t")

    q = split_heads(lin(x, "q"), "q", (0, 2, 1, 3))          # [B, nh, S, hd]
    k = split_heads(lin(x, "k"), "k", (0, 2, 3, 1))          # [B, nh, hd, S]
    v = split_heads(lin(x, "v"), "v", (0, 2, 1, 3))          # [B, nh, S, hd]
    scores = b.matmul(q, k, name=f"{prefix}.scores")
    scale = b.const(np.asarray(1.0 / math.sqrt(hd), np.float32), f"{prefix}.scale")
    scores = b.mul(scores, scale, name=f"{prefix}.scaled")
    if mask is not None:
        scores = b.add(scores, mask, name=f"{prefix}.masked")
    probs = b.softmax(scores, axis=-1, name=f"{prefix}.probs")
    ctx = b.matmul(probs, v, name=f"{prefix}.context")        # [B, nh, S, hd]
    ctx = b.transpose(ctx, (0, 2, 1, 3), name=f"{prefix}.context_t")
    ctx = b.reshape(ctx, (bsz, seq, hidden), name=f"{prefix}.context_merged")
    h = b.add(lin(ctx, "o"), x, name=f"{prefix}.attn_residual")
    h = b.layernorm(h, c("ln1.weight"), c("ln1.bias"), epsilon=eps, name=f"{prefix}.ln1")
    f = b.gelu(lin(h, "ffn_in"), approximate=gelu, name=f"{prefix}.gelu")
    out = b.add(lin(f, "ffn_out"), h, name=f"{prefix}.ffn_residual")
    return b.layernorm(out, c("ln2.weight"), c("ln2.bias"), epsilon=eps, name=f"{prefix}.ln2")


_LAYER_KEYS = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "o": "attention.output.dense", "ln1": "attention.output.LayerNorm",
    "ffn_in": "intermediate.dense", "ffn_out": "output.dense", "ln2": "output.LayerNorm",
}


class _Weights:
    """Checkpoint tensors by Hugging Face name, with an optional "bert." prefix and clear errors."""

    def __init__(self, tensors: Mapping[str, np.ndarray], source: str) -> None:
        self.t, self.source = tensors, source
        self.prefix = "bert." if "bert.embeddings.word_embeddings.weight" in tensors else ""

    def __call__(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        key = self.prefix + name
        if key not in self.t:
            raise BertLoadError(f"{self.source}: tensor {key!r} is missing from the checkpoint")
        a = self.t[key]
        if tuple(a.shape) != shape:
            raise BertLoadError(f"{self.source}: tensor {key!r} has shape {list(a.shape)}, "
                                f"the config implies {list(shape)}")
        return np.asarray(a, dtype=np.float32)


def _layer_weights(w: _Weights, i: int, cfg: BertConfig) -> dict[str, np.ndarray]:
    h, f = cfg.hidden_size, cfg.intermediate_size
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "o": (h, h), "ffn_in": (f, h), "ffn_out": (h, f)}
    p: dict[str, np.ndarray] = {}
    for short, hf in _LAYER_KEYS.items():
        base = f"encoder.layer.{i}.{hf}"
        if short.startswith("ln"):
            p[f"{short}.weight"] = w(f"{base}.weight", (h,))
            p[f"{short}.bias"] = w(f"{base}.bias", (h,))
        else:
            p[f"{short}.weight"] = w(f"{base}.weight", shapes[short])
            p[f"{short}.bias"] = w(f"{base}.bias", (shapes[short][0],))
    return p


def _resolve_paths(path: str | Path, config: str | Path | Mapping[str, Any] | None) -> tuple[Path, Any]:
    p = Path(path)
    if p.is_dir():
        st, cfg_default = p / "model.safetensors", p / "config.json"
    else:
        st, cfg_default = p, p.parent / "config.json"
    if not st.is_file():
        raise BertLoadError(f"{st}: safetensors file not found")
    return st, config if config is not None else cfg_default


def load_bert(path: str | Path, *, batch: int = 1, seq: int = 128,
              config: str | Path | Mapping[str, Any] | None = None, pooling: str = "mean",
              normalize: bool = True, token_types: bool = False, name: str = "bert") -> Graph:
    """A BERT-style encoder from `path` (a folder with model.safetensors and config.json, or a .safetensors file).

    Graph inputs: `input_ids` i64[batch, seq], `attention_mask` f32[batch, seq] (1 for tokens, 0 for
    padding) and, when `token_types`, `token_type_ids` i64[batch, seq] (otherwise type 0 is used).
    `pooling` is "mean" (masked mean over tokens, as sentence-transformers), "cls" or "none"
    (output: the last hidden state [batch, seq, hidden]); `normalize` L2-normalizes pooled vectors.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if pooling not in ("mean", "cls", "none"):
        raise BertLoadError(f"pooling must be 'mean', 'cls' or 'none', got {pooling!r}")
    st, cfg_src = _resolve_paths(path, config)
    cfg = BertConfig.from_dict(cfg_src, "config") if isinstance(cfg_src, Mapping) else BertConfig.from_file(cfg_src)
    if not 1 <= seq <= cfg.max_position_embeddings:
        raise BertLoadError(f"{st}: seq {seq} must be in 1..{cfg.max_position_embeddings} "
                            "(max_position_embeddings)")
    if batch < 1:
        raise BertLoadError(f"batch must be positive, got {batch}")
    try:
        w = _Weights(load_file(str(st)), str(st))
    except (SafetensorError, OSError) as e:
        raise BertLoadError(f"{st}: cannot read safetensors file: {e}") from None

    h = cfg.hidden_size
    b = GraphBuilder(name)
    ids = b.input("input_ids", i64[batch, seq])
    am = b.input("attention_mask", f32[batch, seq])
    tt = b.input("token_type_ids", i64[batch, seq]) if token_types else None

    word = w("embeddings.word_embeddings.weight", (cfg.vocab_size, h))
    pos = w("embeddings.position_embeddings.weight", (cfg.max_position_embeddings, h))[:seq]
    types = w("embeddings.token_type_embeddings.weight", (cfg.type_vocab_size, h))
    x = b.gather(b.const(word, "embeddings.word_embeddings.weight"), ids, axis=0, name="embeddings.word")
    if tt is not None:
        x = b.add(x, b.gather(b.const(types, "embeddings.token_type_embeddings.weight"), tt, axis=0,
                              name="embeddings.token_type"), name="embeddings.sum_types")
        x = b.add(x, b.const(pos, "embeddings.position"), name="embeddings.sum")
    else:  # positions 0..seq-1 and token type 0 are fixed: one constant [seq, hidden]
        x = b.add(x, b.const(pos + types[0], "embeddings.position_and_type"), name="embeddings.sum")
    x = b.layernorm(x, b.const(w("embeddings.LayerNorm.weight", (h,)), "embeddings.ln.weight"),
                    b.const(w("embeddings.LayerNorm.bias", (h,)), "embeddings.ln.bias"),
                    epsilon=cfg.layer_norm_eps, name="embeddings.ln")

    # additive mask [B, 1, 1, S]: 0 where attention_mask is 1, MASK_NEG where it is 0
    inv = b.sub(b.const(np.asarray(1.0, np.float32), "one"), am, name="mask_inverted")
    neg = b.mul(inv, b.const(np.asarray(MASK_NEG, np.float32), "mask_neg"), name="mask_additive")
    mask = b.reshape(neg, (batch, 1, 1, seq), name="attention_bias")

    for i in range(cfg.num_hidden_layers):
        x = encoder_layer(b, x, _layer_weights(w, i, cfg), cfg.num_attention_heads, f"layer{i}", mask=mask,
                          eps=cfg.layer_norm_eps, gelu=_ACTS[cfg.hidden_act])

    if pooling == "none":
        b.output(b.identity(x, name="last_hidden_state"))
        return b.build()
    if pooling == "cls":
        pooled = b.reshape(b.slice(x, [0], [1], axes=[1], name="cls_token"), (batch, h), name="pooled")
    else:
        m3 = b.reshape(am, (batch, seq, 1), name="mask3")
        summed = b.reduce_sum(b.mul(x, m3, name="masked_hidden"), axes=[1], keepdims=False, name="token_sum")
        count = b.reduce_sum(m3, axes=[1], keepdims=False, name="token_count")           # [B, 1]
        count = b.maximum(count, b.const(np.asarray(1e-9, np.float32), "count_floor"), name="token_count_safe")
        pooled = b.div(summed, count, name="pooled")
    if normalize:
        sq = b.reduce_sum(b.mul(pooled, pooled, name="pooled_sq"), axes=[1], keepdims=True, name="sq_norm")
        norm = b.maximum(b.sqrt(sq, name="norm"), b.const(np.asarray(1e-12, np.float32), "norm_floor"),
                         name="norm_safe")
        pooled = b.div(pooled, norm, name="normalized")
    b.output(b.identity(pooled, name="embedding"))
    return b.build()
