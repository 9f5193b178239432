"""What image chains buy: runs of per-image kernels as one parallel region against a parallel region per kernel.

    python -m tensorsmith.bench.image_chains --models cnn,cnn-digits,onnx-vgg19 --rounds 9

Both plans are compiled side by side in one process (`image_chains=False` for the one without) and timed in
alternating rounds (`side_by_side`); the outputs must agree bit for bit (each image meets the same kernels).
"""

from __future__ import annotations

import numpy as np

from .. import runtime
from .models import load_model
from .side_by_side import alternate, compare_main


def measure(name: str, rounds: int) -> dict[str, float]:
    """Median ms per run with and without chains, and how many kernels the chains run."""
    m = load_model(name)
    exes = {label: runtime.compile(m.graph, backend="numba", image_chains=label == "chained")
            for label in ("chained", "apart")}
    outs = [exe.run(m.inputs) for exe in exes.values()]
    for k in outs[0]:
        if not np.array_equal(outs[0][k], outs[1][k]):
            raise AssertionError(f"{name}: output {k} differs between the plans with and without image chains")
    chains = exes["chained"].stats["image_chains"]
    return {"chains": len(chains), "kernels": sum(len(c) for c in chains),
            **{f"{k} ms": v for k, v in alternate(exes, m.inputs, rounds).items()}}


def _line(name: str, rounds: int) -> str:
    r = measure(name, rounds)
    return (f"{name}: {r['kernels']} kernels in {r['chains']} image chains: {r['chained ms']:.4g} ms, "
            f"a parallel region per kernel: {r['apart ms']:.4g} ms ({r['apart ms'] / r['chained ms']:.2f}x)")


def main(argv: list[str] | None = None) -> None:
    """Print one line per model: both medians and their ratio."""
    compare_main(argv, __doc__, _line)


if __name__ == "__main__":
    main()
