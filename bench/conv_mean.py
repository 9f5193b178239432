"""What averaging inside the convolution buys: `fuse` against `fuse{mean=false}` on CNNs that end in a global pool.

    python -m tensorsmith.bench.conv_mean --models cnn,cnn-digits,onnx-vgg19 --rounds 9

Both graphs are compiled side by side in one process (blocked-channel layout on, as by default) and timed in
alternating rounds (`side_by_side`). With the mean in the region, the last blocked convolution averages each
image's channels as it finishes them (`block_mean`); without, `global_avgpool_blocked` reads its product back in
a kernel of its own. The outputs must agree bit for bit (the same arithmetic).
"""

from __future__ import annotations

import numpy as np

from .. import runtime
from ..passes import run_pipeline
from .models import load_model
from .side_by_side import alternate, compare_main


def measure(name: str, rounds: int) -> dict[str, float]:
    """Median ms per run with the global average pool in the convolution's kernel and after it, and how many
    convolutions averaged in their kernel."""
    m = load_model(name)
    graphs = {"mean in kernel": run_pipeline(m.graph, "fuse"), "mean after": run_pipeline(m.graph, "fuse{mean=false}")}
    exes = {k: runtime.compile(g, backend="numba", fuse=False) for k, g in graphs.items()}
    outs = [exe.run(m.inputs) for exe in exes.values()]
    if any(not np.array_equal(outs[0][k], outs[1][k]) for k in outs[0]):
        raise AssertionError(f"{name}: the averaging kernel's outputs differ from the separate pool's")
    fused = sum(1 for s in exes["mean in kernel"].plan.steps if s.kernel.split("[")[0].endswith("+mean"))
    return {"means fused": fused, **{f"{k} ms": v for k, v in alternate(exes, m.inputs, rounds).items()}}


def _line(name: str, rounds: int) -> str:
    r = measure(name, rounds)
    return (f"{name}: {r['means fused']} means in the convolution: {r['mean in kernel ms']:.4g} ms, "
            f"mean after: {r['mean after ms']:.4g} ms ({r['mean after ms'] / r['mean in kernel ms']:.2f}x)")


def main(argv: list[str] | None = None) -> None:
    """Print one line per model: both medians and their ratio."""
    compare_main(argv, __doc__, _line)


if __name__ == "__main__":
    main()
