"""Golden IR cases: tests/passes/golden/<pass>/<case>.before.ir and the expected .after.ir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tensorsmith.ir import Graph, parse, verify

GOLDEN = Path(__file__).parent / "golden"


def cases() -> list[tuple[str, Path]]:
    """(pipeline, before-file) for every golden case; the folder name is the pipeline."""
    return [(p.parent.name, p) for p in sorted(GOLDEN.glob("*/*.before.ir"))]


def after_path(before: Path) -> Path:
    """The expected-output file beside `before`."""
    return before.with_name(before.name.replace(".before.ir", ".after.ir"))


def load_before(before: Path) -> Graph:
    """Parse and verify a before file (dead code allowed: that is what dce is for)."""
    return verify(parse(before.read_text()), allow_dead=True)


def random_inputs(g: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal inputs of the right shapes and dtypes."""
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.type.shape).astype(v.type.dtype.np_dtype) for v in g.inputs}


def calibration_feeds(g: Graph) -> list[dict[str, np.ndarray]]:
    """Calibration feeds for passes that learn from data (early-exit): random inputs, seeds 1 to 4."""
    return [random_inputs(g, seed) for seed in range(1, 5)]


if __name__ == "__main__":  # regenerate the .after.ir files; review the diff before committing
    from tensorsmith.passes import PassContext, run_pipeline

    for pipeline, before in cases():
        g = load_before(before)
        out = run_pipeline(g, pipeline, ctx=PassContext(calibration=calibration_feeds(g)))
        after_path(before).write_text(out.to_text())
        print("wrote", after_path(before))
