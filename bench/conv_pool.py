"""What pooling inside the convolution buys: `fuse` against `fuse{pool=false}` on models with 2x2 max pools.

    python -m tensorsmith.bench.conv_pool --models cnn,cnn-digits,onnx-vgg19 --rounds 9

Both graphs are compiled side by side in one process and timed in alternating rounds (`side_by_side`); the
outputs must agree bit for bit (the pool in the kernel keeps the same equations). Both keep every convolution
NCHW (`blocked_layout=False`): a pool apart would otherwise also change which convolutions run blocked
(`bench.conv_layout` measures that layout).
"""

from __future__ import annotations

import numpy as np

from .. import runtime
from ..passes import run_pipeline
from .models import load_model
from .side_by_side import alternate, compare_main


def measure(name: str, rounds: int) -> dict[str, float]:
    """Median ms per run with the pool in the convolution's kernel and after it, and how many pools were fused."""
    m = load_model(name)
    graphs = {"pool in kernel": run_pipeline(m.graph, "fuse"), "pool after": run_pipeline(m.graph, "fuse{pool=false}")}
    exes = {k: runtime.compile(g, backend="numba", fuse=False, blocked_layout=False) for k, g in graphs.items()}
    outs = [exe.run(m.inputs) for exe in exes.values()]
    if any(not np.array_equal(outs[0][k], outs[1][k]) for k in outs[0]):
        raise AssertionError(f"{name}: the pooled kernels' outputs differ from the separate pool's")
    fused = sum(1 for s in exes["pool in kernel"].plan.steps if s.kernel.split("[")[0].endswith("+maxpool2x2"))
    return {"pools fused": fused, **{f"{k} ms": v for k, v in alternate(exes, m.inputs, rounds).items()}}


def _line(name: str, rounds: int) -> str:
    r = measure(name, rounds)
    return (f"{name}: {r['pools fused']} pools in the convolution: {r['pool in kernel ms']:.4g} ms, "
            f"pools after: {r['pool after ms']:.4g} ms ({r['pool after ms'] / r['pool in kernel ms']:.2f}x)")


def main(argv: list[str] | None = None) -> None:
    """Print one line per model: both medians and their ratio."""
    compare_main(argv, __doc__, _line)


if __name__ == "__main__":
    main()
