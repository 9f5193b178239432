"""Gradual pruning: the cubic schedule's values, and masks exported to .npz / .safetensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tensorsmith.ir import GraphBuilder, f32
from tensorsmith.passes import run_pipeline
from tensorsmith.passes.prune_schedule import cubic_sparsity, load_masks, prune_masks, save_masks


def test_cubic_schedule_matches_the_formula() -> None:
    assert cubic_sparsity(0, 0.9, steps=10) == 0.0
    assert cubic_sparsity(10, 0.9, steps=10) == pytest.approx(0.9)
    assert cubic_sparsity(5, 0.9, steps=10) == pytest.approx(0.9 - 0.9 * 0.5 ** 3)
    assert cubic_sparsity(10_000, 0.9, steps=10) == pytest.approx(0.9)
    # t0 = 100, dt = 50, n = 4: before t0 the initial value, held between pruning steps
    assert cubic_sparsity(99, 0.8, initial=0.2, start=100, steps=4, every=50) == 0.2
    s150 = 0.8 + (0.2 - 0.8) * (1 - 50 / 200) ** 3
    assert cubic_sparsity(150, 0.8, initial=0.2, start=100, steps=4, every=50) == pytest.approx(s150)
    assert cubic_sparsity(199, 0.8, initial=0.2, start=100, steps=4, every=50) == pytest.approx(s150)
    values = [cubic_sparsity(t, 0.9, steps=20) for t in range(25)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    gains = np.diff(values[:21])
    assert np.all(np.diff(gains) <= 1e-12)  # fast early, slow late


@pytest.mark.parametrize("kw", [{"final": 1.0}, {"final": 0.5, "initial": 0.6}, {"final": 0.5, "steps": 0},
                                {"final": 0.5, "every": 0}])
def test_cubic_schedule_rejects_bad_arguments(kw: dict) -> None:
    with pytest.raises(ValueError, match="cubic_sparsity"):
        cubic_sparsity(1, **kw)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_masks_round_trip_and_hold_the_zeros(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    b = GraphBuilder("mlp")
    x = b.input("x", f32[2, 32])
    h = b.relu(b.linear(x, rng.standard_normal((64, 32)).astype(np.float32), name="fc0"))
    b.output(b.linear(h, rng.standard_normal((8, 64)).astype(np.float32), name="fc1"))
    g = run_pipeline(b.build(), "prune{pattern=nm,skip=fc1,min_params=0}")
    masks = prune_masks(g)
    assert list(masks) == ["fc0.weight"] and masks["fc0.weight"].dtype == bool
    assert masks["fc0.weight"].mean() == 0.5
    assert set(prune_masks(g, annotated_only=False)) == {"fc0.weight", "fc1.weight"}
    back = load_masks(save_masks(masks, tmp_path / f"m{suffix}"))
    assert np.array_equal(back["fc0.weight"], masks["fc0.weight"])
    with pytest.raises(ValueError, match="must end in"):
        save_masks(masks, tmp_path / "m.pt")
