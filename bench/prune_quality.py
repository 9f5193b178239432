"""Quality after one-shot pruning (no fine-tuning), per pattern and sparsity, on the reference backend.

    python -m tensorsmith.bench.prune_quality                      # mlp-digits, cnn-digits, minilm-l6
    python -m tensorsmith.bench.prune_quality --models mlp-digits

Digits models: test accuracy (450 images) at 50%, 75% and 90% for unstructured (per layer and
with one global threshold), 32x32 ... 4x4 blocks (ragged layers padded), N:M (2:4 at 50%, 1:4 at
75%, 1:10 at 90%) and channel pruning (`prune-channels`: the channels are removed, the output
layer stays whole since it is a graph output). Every matrix layer is pruned (min_params=0),
output layer included. MiniLM: min cosine to sentence-transformers over 24 sentences at 30% and
50% for 32x32 blocks, 2:4 (50% only), heads (`prune-heads`) and unstructured. Prints markdown
tables, with the parameter count after pruning for the patterns that shrink the graph.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from ..backends import reference
from ..passes import run_pipeline
from .models import Model, load_model
from .options import check_models, split_csv

DIGITS_SPARSITIES = (0.5, 0.75, 0.9)
MINILM_SPARSITIES = (0.3, 0.5)
NM_AT = {0.5: (2, 4), 0.75: (1, 4), 0.9: (1, 10)}
"""N:M with the same fraction of zeros as each sparsity."""

Pipeline = Callable[[float], "str | None"]

DIGITS_ROWS: dict[str, Pipeline] = {
    "unstructured": lambda s: f"prune{{sparsity={s},min_params=0}}",
    "unstructured, global": lambda s: f"prune{{sparsity={s},min_params=0,budget=global}}",
    **{f"block {b}x{b}": (lambda s, b=b: f"prune{{pattern=block,block={b},sparsity={s},min_params=0,pad=true}}")
       for b in (4, 8, 16, 32)},
    "N:M (2:4, 1:4, 1:10)": lambda s: f"prune{{pattern=nm,n={NM_AT[s][0]},m={NM_AT[s][1]},min_params=0,pad=true}}",
    "channel (removed)": lambda s: f"prune-channels{{sparsity={s}}}",
}
"""Row label -> pipeline at a sparsity."""

MINILM_ROWS: dict[str, Pipeline] = {
    "unstructured": lambda s: f"prune{{sparsity={s},min_params=0}}",
    "block 32x32": lambda s: f"prune{{pattern=block,block=32,sparsity={s},min_params=0}}",
    "2:4": lambda s: "prune{pattern=nm,min_params=0}" if s == 0.5 else None,
    "heads (removed)": lambda s: f"prune-heads{{sparsity={s}}}",
}


def quality_table(model: Model, rows: dict[str, Pipeline], sparsities: tuple[float, ...]) -> str:
    """A markdown table: one row per pattern, one column per sparsity, the model's quality metric in each cell."""
    dense = model.quality(lambda x: reference.run(model.graph, x))
    cols = " | ".join(f"{s:.0%}" for s in sparsities)
    head = f"| {model.name}: {model.metric_name} (dense {dense:.4f}) | {cols} |"
    lines = [head, "|---|" + "---|" * len(sparsities)]
    params = model.graph.num_parameters()
    for label, make in rows.items():
        cells = []
        for s in sparsities:
            pipeline = make(s)
            if pipeline is None:
                cells.append("-")
                continue
            g = run_pipeline(model.graph, pipeline)
            q = model.quality(lambda x, g=g: reference.run(g, x))
            shrink = f" ({g.num_parameters() / params:.0%} params)" if g.num_parameters() < params else ""
            cells.append(f"{q:.4f}{shrink}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the quality tables for the chosen models."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp-digits,cnn-digits,minilm-l6", help="zoo models, comma separated")
    args = ap.parse_args(argv)
    names = split_csv(args.models)
    check_models(ap, "--models", names)
    for name in names:
        t0 = time.perf_counter()
        model = load_model(name)
        if name == "minilm-l6":
            table = quality_table(model, MINILM_ROWS, MINILM_SPARSITIES)
        else:
            table = quality_table(model, DIGITS_ROWS, DIGITS_SPARSITIES)
        print(table)
        print(f"\n({name}: reference backend, {time.perf_counter() - t0:.0f} s)\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
