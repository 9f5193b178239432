"""load_bert: a tiny synthetic BERT checkpoint against an independent numpy forward pass, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from scipy.special import erf
from tensorsmith.backends import reference
from tensorsmith.ir import load_bert
from tensorsmith.ir.bert_loader import BertConfig, BertLoadError

CFG = {"hidden_size": 16, "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 32,
       "vocab_size": 50, "max_position_embeddings": 20, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
       "hidden_act": "gelu", "model_type": "bert"}


def _weights(rng: np.random.Generator, cfg: dict, prefix: str = "") -> dict[str, np.ndarray]:
    h, f = cfg["hidden_size"], cfg["intermediate_size"]

    def r(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    w = {
        "embeddings.word_embeddings.weight": r(cfg["vocab_size"], h),
        "embeddings.position_embeddings.weight": r(cfg["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": r(cfg["type_vocab_size"], h),
        "embeddings.LayerNorm.weight": 1 + r(h), "embeddings.LayerNorm.bias": r(h),
        "embeddings.position_ids": np.arange(cfg["max_position_embeddings"])[None].astype(np.int64),
        "pooler.dense.weight": r(h, h), "pooler.dense.bias": r(h),
    }
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            w[p + f"attention.self.{n}.weight"], w[p + f"attention.self.{n}.bias"] = r(h, h), r(h)
        w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"] = r(h, h), r(h)
        w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"] = 1 + r(h), r(h)
        w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"] = r(f, h), r(f)
        w[p + "output.dense.weight"], w[p + "output.dense.bias"] = r(h, f), r(h)
        w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"] = 1 + r(h), r(h)
    return {prefix + k: v for k, v in w.items()}


def _write(tmp: Path, cfg: dict, w: dict[str, np.ndarray]) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "config.json").write_text(json.dumps(cfg))
    save_file(w, str(tmp / "model.safetensors"))
    return tmp


def _ln(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def numpy_bert(w: dict[str, np.ndarray], cfg: dict, ids: np.ndarray, mask: np.ndarray,
               types: np.ndarray | None = None) -> np.ndarray:
    """Last hidden state of a Hugging Face BertModel, written directly in float64 numpy."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    bsz, seq = ids.shape
    h, nh, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"]
    hd = h // nh
    types = np.zeros_like(ids) if types is None else types
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:seq]
         + w["embeddings.token_type_embeddings.weight"][types])
    x = _ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    bias = (1.0 - mask)[:, None, None, :] * -1e4
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def lin(t: np.ndarray, n: str, p: str = p) -> np.ndarray:
            return t @ w[p + n + ".weight"].T + w[p + n + ".bias"]

        def heads(t: np.ndarray) -> np.ndarray:
            return t.reshape(bsz, seq, nh, hd).transpose(0, 2, 1, 3)

        q, k, v = (heads(lin(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        ctx = (s / s.sum(-1, keepdims=True)) @ v
        ctx = ctx.transpose(0, 2, 1, 3).reshape(bsz, seq, h)
        x = _ln(lin(ctx, "attention.output.dense") + x, w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"], eps)
        f = lin(x, "intermediate.dense")
        f = 0.5 * f * (1 + erf(f / np.sqrt(2)))
        x = _ln(lin(f, "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    return x


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    w = _weights(np.random.default_rng(0), CFG)
    return _write(tmp_path_factory.mktemp("tiny_bert"), CFG, w), w


def _batch(rng: np.random.Generator, bsz: int = 3, seq: int = 7) -> tuple[np.ndarray, np.ndarray]:
    ids = rng.integers(1, CFG["vocab_size"], size=(bsz, seq)).astype(np.int64)
    mask = np.ones((bsz, seq), np.float32)
    for b, n in enumerate([seq, 4, 1][:bsz]):  # different lengths: padding on the right
        mask[b, n:] = 0
        ids[b, n:] = 0
    return ids, mask


def test_last_hidden_state_matches_numpy_bert(tiny: tuple[Path, dict]) -> None:
    path, w = tiny
    ids, mask = _batch(np.random.default_rng(1))
    g = load_bert(path, batch=3, seq=7, pooling="none")
    got = reference.run(g, {"input_ids": ids, "attention_mask": mask})["last_hidden_state"]
    want = numpy_bert(w, CFG, ids, mask)
    valid = mask.astype(bool)
    np.testing.assert_allclose(got[valid], want[valid], rtol=1e-4, atol=1e-4)


def test_mean_pooling_and_normalization_ignore_padding(tiny: tuple[Path, dict]) -> None:
    path, w = tiny
    ids, mask = _batch(np.random.default_rng(2))
    g = load_bert(path, batch=3, seq=7)
    got = reference.run(g, {"input_ids": ids, "attention_mask": mask})["embedding"]
    hs = numpy_bert(w, CFG, ids, mask)
    pooled = (hs * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    want = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    # the embedding of a padded sentence equals that of the same sentence alone, unpadded
    g1 = load_bert(path, batch=1, seq=4)
    alone = reference.run(g1, {"input_ids": ids[1:2, :4], "attention_mask": mask[1:2, :4]})["embedding"]
    np.testing.assert_allclose(alone[0], got[1], rtol=1e-4, atol=1e-5)


def test_cls_pooling_token_types_and_bert_prefix(tmp_path: Path) -> None:
    w = _weights(np.random.default_rng(3), CFG, prefix="bert.")
    path = _write(tmp_path / "prefixed", CFG, w)
    rng = np.random.default_rng(4)
    ids, mask = _batch(rng, bsz=2, seq=5)
    types = rng.integers(0, 2, size=ids.shape).astype(np.int64)
    g = load_bert(path / "model.safetensors", batch=2, seq=5, pooling="cls", normalize=False, token_types=True)
    assert [v.name for v in g.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    got = reference.run(g, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})["embedding"]
    plain = {k.removeprefix("bert."): v for k, v in w.items()}
    want = numpy_bert(plain, CFG, ids, mask, types)[:, 0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_graph_shape_and_ops(tiny: tuple[Path, dict]) -> None:
    g = load_bert(tiny[0], batch=2, seq=6)
    ops = [n.op for n in g.nodes]
    assert ops.count("softmax") == CFG["num_hidden_layers"]
    assert ops.count("layernorm") == 1 + 2 * CFG["num_hidden_layers"]
    assert ops.count("gelu") == CFG["num_hidden_layers"]
    assert g.outputs[0].type.shape == (2, CFG["hidden_size"])
    assert g.inputs[0].type.dtype.name == "i64" and g.inputs[1].type.dtype.name == "f32"


def test_missing_tensor_names_the_key(tmp_path: Path) -> None:
    w = _weights(np.random.default_rng(5), CFG)
    del w["encoder.layer.1.attention.self.key.bias"]
    path = _write(tmp_path / "m", CFG, w)
    with pytest.raises(BertLoadError, match=r"encoder\.layer\.1\.attention\.self\.key\.bias.*missing"):
        load_bert(path, seq=4)


def test_wrong_shape_names_the_key(tmp_path: Path) -> None:
    w = _weights(np.random.default_rng(6), CFG)
    w["encoder.layer.0.intermediate.dense.weight"] = np.zeros((31, 16), np.float32)
    path = _write(tmp_path / "m", CFG, w)
    with pytest.raises(BertLoadError, match=r"intermediate\.dense\.weight.*\[31, 16\].*\[32, 16\]"):
        load_bert(path, seq=4)


def test_bad_config_and_arguments(tiny: tuple[Path, dict], tmp_path: Path) -> None:
    path = tiny[0]
    with pytest.raises(BertLoadError, match="not a multiple of num_attention_heads"):
        load_bert(path, config={**CFG, "num_attention_heads": 5})
    with pytest.raises(BertLoadError, match="missing BERT config field.*intermediate_size"):
        BertConfig.from_dict({k: v for k, v in CFG.items() if k != "intermediate_size"})
    with pytest.raises(BertLoadError, match="hidden_act 'swish'"):
        load_bert(path, config={**CFG, "hidden_act": "swish"})
    with pytest.raises(BertLoadError, match=r"seq 21 must be in 1\.\.20"):
        load_bert(path, seq=21)
    with pytest.raises(BertLoadError, match="pooling must be"):
        load_bert(path, pooling="max")
    with pytest.raises(BertLoadError, match="safetensors file not found"):
        load_bert(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"not a safetensors file")
    (tmp_path / "bad" / "config.json").write_text(json.dumps(CFG))
    with pytest.raises(BertLoadError, match="cannot read safetensors file"):
        load_bert(tmp_path / "bad", seq=4)
    (tmp_path / "bad" / "config.json").write_text("{oops")
    with pytest.raises(BertLoadError, match="cannot read BERT config"):
        load_bert(tmp_path / "bad", seq=4)
