"""What averaging inside the convolution buys: `fuse` against `fuse{mean=false}` on CNNs that end in a global pool.

    python -m tensorsmith.bench.conv_mean --models cnn,cnn-digits,onnx-vgg19 --rounds 9

Both graphs are compiled side by side in one process (blocked-channel layout on, as by default) and timed in
alternating rounds (`side_by_side`). With the mean in the region, the last blocked convolution averages each
image's channels as it finishes them (`block_mean`); without, `global_avgpool_blocked` reads its product back in
a kernel of its own. The outputs must agree bit for bit (the same arithmetic).
"""

from __future__ import annotations

from .side_by_side import compare_main, compare_pipelines


def measure(name: str, rounds: int) -> dict[str, float]:
    """Median ms per run with the global average pool in the convolution's kernel and after it, and how many
    convolutions averaged in their kernel."""
    r = compare_pipelines(name, rounds, {"mean in kernel": "fuse", "mean after": "fuse{mean=false}"}, "+mean")
    return {"means fused": r.pop("fused"), **r}


def _line(name: str, rounds: int) -> str:
    r = measure(name, rounds)
    return (f"{name}: {r['means fused']} means in the convolution: {r['mean in kernel ms']:.4g} ms, "
            f"mean after: {r['mean after ms']:.4g} ms ({r['mean after ms'] / r['mean in kernel ms']:.2f}x)")


def main(argv: list[str] | None = None) -> None:
    """Print one line per model: both medians and their ratio."""
    compare_main(argv, __doc__, _line)


if __name__ == "__main__":
    main()
