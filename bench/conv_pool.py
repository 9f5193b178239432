"""What pooling inside the convolution buys: `fuse` against `fuse{pool=false}` on models with 2x2 max pools.

    python -m tensorsmith.bench.conv_pool --models cnn,cnn-digits,onnx-vgg19 --rounds 9

Both graphs are compiled side by side in one process and timed in alternating rounds (`side_by_side`); the
outputs must agree bit for bit (the pool in the kernel keeps the same equations). Both keep every convolution
NCHW (`blocked_layout=False`): a pool apart would otherwise also change which convolutions run blocked
(`bench.conv_layout` measures that layout).
"""

from __future__ import annotations

from .side_by_side import compare_main, compare_pipelines


def measure(name: str, rounds: int) -> dict[str, float]:
    """Median ms per run with the pool in the convolution's kernel and after it, and how many pools were fused."""
    r = compare_pipelines(name, rounds, {"pool in kernel": "fuse", "pool after": "fuse{pool=false}"}, "+maxpool2x2",
                          blocked_layout=False)
    return {"pools fused": r.pop("fused"), **r}


def _line(name: str, rounds: int) -> str:
    r = measure(name, rounds)
    return (f"{name}: {r['pools fused']} pools in the convolution: {r['pool in kernel ms']:.4g} ms, "
            f"pools after: {r['pool after ms']:.4g} ms ({r['pool after ms'] / r['pool in kernel ms']:.2f}x)")


def main(argv: list[str] | None = None) -> None:
    """Print one line per model: both medians and their ratio."""
    compare_main(argv, __doc__, _line)


if __name__ == "__main__":
    main()
