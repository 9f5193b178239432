"""What the blocked-channel layout buys: convolutions handing results on blocked against all NCHW.

    python -m tensorsmith.bench.conv_layout --models cnn,cnn-digits,onnx-vgg19 --rounds 9

Both plans are compiled side by side in one process (`blocked_layout=False` for the NCHW one) and timed in
alternating rounds (`side_by_side`); the outputs must agree within float reassociation (the kernels sum in
different orders).
"""

from __future__ import annotations

import numpy as np

from .. import runtime
from .models import load_model
from .side_by_side import alternate, compare_main


def measure(name: str, rounds: int) -> dict[str, float]:
    """Median ms per run blocked and NCHW, and how many convolutions ran blocked."""
    m = load_model(name)
    exes = {layout: runtime.compile(m.graph, backend="numba", blocked_layout=layout == "blocked")
            for layout in ("blocked", "nchw")}
    outs = [exe.run(m.inputs) for exe in exes.values()]
    for k in outs[0]:
        if not np.allclose(outs[0][k], outs[1][k], rtol=1e-4, atol=1e-5):
            raise AssertionError(f"{name}: output {k} differs between the blocked and the NCHW plan")
    steps = [s.kernel for s in exes["blocked"].plan.kernels()]
    return {"blocked": sum(k.startswith("conv_blocked") for k in steps),
            "convolutions": sum(k.startswith("conv") for k in steps),
            **{f"{k} ms": v for k, v in alternate(exes, m.inputs, rounds).items()}}


def _line(name: str, rounds: int) -> str:
    r = measure(name, rounds)
    return (f"{name}: {r['blocked']} of {r['convolutions']} convolutions blocked: {r['blocked ms']:.4g} ms, "
            f"all NCHW: {r['nchw ms']:.4g} ms ({r['nchw ms'] / r['blocked ms']:.2f}x)")


def main(argv: list[str] | None = None) -> None:
    """Print one line per model: both medians and their ratio."""
    compare_main(argv, __doc__, _line)


if __name__ == "__main__":
    main()
