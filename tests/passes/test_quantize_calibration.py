"""quantize calibration: streamed statistics, the four methods against numpy, save/load, merge, memory."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from tensorsmith.backends import reference
from tensorsmith.ir import GraphBuilder, f32, i8
from tensorsmith.passes import PassContext, run_pipeline
from tensorsmith.passes.calibration import (
    HIST_BINS,
    U8_STEPS,
    CalibrationStats,
    TensorStats,
    activation_range,
    entropy_threshold,
    mse_threshold,
    percentile_threshold,
)
from tensorsmith.passes.quantize import QuantizeError
from tensorsmith.passes.quantize_numeric import quantize_weight

RNG = np.random.default_rng(11)


def _gauss_with_outliers(n: int = 100_000, outliers: int = 5, at: float = 12.0) -> np.ndarray:
    x = RNG.standard_normal(n).astype(np.float32)
    x[RNG.choice(n, outliers, replace=False)] = at * RNG.choice([-1.0, 1.0], outliers)
    return x


def _stats(*batches: np.ndarray) -> TensorStats:
    s = TensorStats()
    for b in batches:
        s.observe(b)
    return s


def test_golden_symmetric_int8() -> None:
    w = np.array([[0.127, -0.084, 0.392, -0.203]], np.float32)
    sw = quantize_weight(w, i8, None)
    assert sw.data.tolist() == [[41, -27, 127, -66]]
    assert sw.scale == (float(np.float32(0.392 / 127)),)


def test_histogram_matches_numpy_and_power_of_two_range() -> None:
    x = _gauss_with_outliers()
    s = _stats(x)
    assert s.top == 16.0 and s.count == x.size and (s.lo, s.hi) == (float(x.min()), float(x.max()))
    ref, _ = np.histogram(np.abs(x.astype(np.float64)), bins=HIST_BINS, range=(0.0, 16.0))
    np.testing.assert_array_equal(s.hist, ref)


def test_minmax_keeps_outliers_and_the_others_clip_them() -> None:
    x = _gauss_with_outliers(n=400_000, outliers=2)  # rare enough that clipping them costs less than rounding
    s = _stats(x)
    assert activation_range(s, "minmax") == (float(x.min()), float(x.max()))
    for method in ("percentile", "entropy", "mse"):
        lo, hi = activation_range(s, method)
        assert 2.0 < hi < 8.0 and -8.0 < lo < -2.0, f"{method}: [{lo}, {hi}]"


def test_percentile_within_one_bin_of_numpy() -> None:
    x = _gauss_with_outliers()
    s = _stats(x)
    width = s.top / HIST_BINS
    for pct in (99.0, 99.9, 99.99):
        exact = float(np.percentile(np.abs(x), pct))
        assert exact <= percentile_threshold(s, pct) <= exact + width


def _qdq_mse(x: np.ndarray, t: float) -> float:
    """Mean squared error of u8 quantize -> dequantize of x over [max(lo,-t), min(hi,t)] (with 0 exact)."""
    lo, hi = min(max(float(x.min()), -t), 0.0), max(min(float(x.max()), t), 0.0)
    scale = (hi - lo) / U8_STEPS
    zp = np.rint(-lo / scale)
    q = np.clip(np.rint(x / scale) + zp, 0, U8_STEPS)
    return float(np.mean((x - (q - zp) * scale) ** 2))


def test_mse_matches_brute_force_on_samples() -> None:
    x = _gauss_with_outliers(n=300_000, outliers=3, at=10.0).astype(np.float64)
    s = _stats(x)
    t = mse_threshold(s)
    grid = np.arange(1, HIST_BINS + 1, 2) * (s.top / HIST_BINS)
    errs = np.array([_qdq_mse(x, g) for g in grid])
    best = float(grid[int(np.argmin(errs))])
    assert _qdq_mse(x, t) <= 1.05 * errs.min(), (t, best)
    assert abs(t - best) < 0.5
    assert t < 9.0  # three outliers at 10 in 100k samples are clipped


def _kl_reference(hist: np.ndarray, levels: int) -> int:
    """TensorRT's loop written plainly: the bin count i minimizing KL(clipped P || quantized Q)."""
    used = int(np.flatnonzero(hist)[-1]) + 1
    best, best_i = math.inf, used
    for i in range(levels, used + 1):
        p = hist[:i].astype(np.float64)
        p[-1] += hist[i:].sum()
        q = np.zeros(i)
        for j in range(levels):
            a, b = j * i // levels, (j + 1) * i // levels
            held = hist[a:b] > 0
            if held.any():
                q[a:b][held] = hist[a:b].sum() / held.sum()
        if np.any((p > 0) & (q == 0)):
            continue
        m = p > 0
        pn, qn = p[m] / p.sum(), q[m] / q.sum()
        kl = float(np.sum(pn * np.log(pn / qn)))
        if kl < best:
            best, best_i = kl, i
    return best_i


def test_entropy_matches_plain_kl_loop() -> None:
    x = np.concatenate([RNG.laplace(0, 1, 60_000), [30.0, -30.0]])
    s = _stats(x)
    for levels in (128, 256):
        assert entropy_threshold(s, levels) == _kl_reference(s.hist, levels) * s.top / HIST_BINS


def test_discrete_values_keep_their_range_under_entropy() -> None:
    x = RNG.integers(0, 17, 5000).astype(np.float32)  # like 8x8 digits pixels: spikes at 0..16
    s = _stats(x)
    assert activation_range(s, "entropy")[1] == 16.0


def test_streaming_rebins_exactly_and_merge_equals_joint() -> None:
    batches = [RNG.standard_normal(3000) * scale for scale in (0.01, 1.0, 0.2, 40.0, 3.0)]
    joint = _stats(np.concatenate(batches))
    streamed = _stats(*batches)
    merged = _stats(*batches[:2]).merge(_stats(*batches[2:]))
    for s in (streamed, merged):
        np.testing.assert_array_equal(s.hist, joint.hist)
        assert (s.lo, s.hi, s.top) == (joint.lo, joint.hi, joint.top)
        for method in ("minmax", "percentile", "entropy", "mse"):
            assert activation_range(s, method) == activation_range(joint, method)
    a = CalibrationStats(x=_stats(batches[0]), y=_stats(batches[1]))
    b = CalibrationStats(x=_stats(batches[2]))
    ab = a.merge(b)
    np.testing.assert_array_equal(ab["x"].hist, _stats(batches[0], batches[2]).hist)
    assert ab["y"] is a["y"]


def test_zeros_then_values() -> None:
    s = _stats(np.zeros(10), np.array([0.0, 3.0]))
    assert s.hist[0] == 11 and s.count == 12 and s.top == 4.0


def test_memory_does_not_grow_with_batches() -> None:
    s = TensorStats()
    s.observe(RNG.standard_normal((8, 16)), channels=True)
    size = s.nbytes
    for _ in range(200):
        s.observe(RNG.standard_normal((8, 16)) * 5, channels=True)
    assert s.nbytes == size and s.count == 201 * 128 and s.channel_absmax is not None
    assert s.channel_absmax.shape == (16,)


def test_save_load_round_trip(tmp_path: Path) -> None:
    st = CalibrationStats(a=_stats(_gauss_with_outliers()), b=TensorStats())
    st["a"].observe(RNG.standard_normal((4, 6)), channels=True)
    path = tmp_path / "stats.npz"
    st.save(path)
    back = CalibrationStats.load(path)
    assert set(back) == {"a", "b"}
    np.testing.assert_array_equal(back["a"].hist, st["a"].hist)
    np.testing.assert_array_equal(back["a"].channel_absmax, st["a"].channel_absmax)  # type: ignore[arg-type]
    assert (back["a"].lo, back["a"].hi, back["a"].top) == (st["a"].lo, st["a"].hi, st["a"].top)
    assert back["b"].channel_absmax is None and back["b"].count == 0
    with pytest.raises(ValueError, match="stats.npz"):
        CalibrationStats.load(tmp_path / "missing" / "stats.npz")


def _mlp():  # type: ignore[no-untyped-def]
    b = GraphBuilder("mlp")
    x = b.input("x", f32[16, 32])
    h = b.relu(b.linear(x, RNG.standard_normal((24, 32)).astype(np.float32), name="fc1"))
    b.output(b.linear(h, RNG.standard_normal((8, 24)).astype(np.float32), name="fc2"))
    return b.build()


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy", "mse"])
def test_pass_reuses_a_stats_file(tmp_path: Path, method: str) -> None:
    g = _mlp()
    cal = [{"x": RNG.standard_normal((16, 32)).astype(np.float32)} for _ in range(3)]
    path = tmp_path / "s.npz"
    spec = f"quantize{{scheme=static,min_kn=0,calibration={method},stats={path}}}"
    q1 = run_pipeline(g, spec, ctx=PassContext(calibration=cal))
    assert path.exists()
    q2 = run_pipeline(g, spec, ctx=PassContext())  # no calibration data: the file holds everything
    x = cal[0]
    np.testing.assert_array_equal(reference.run(q1, x)["fc2"], reference.run(q2, x)["fc2"])
    r1 = [n.meta["quantize"]["activation"]["range"] for n in q1.nodes if "quantize" in n.meta]
    r2 = [n.meta["quantize"]["activation"]["range"] for n in q2.nodes if "quantize" in n.meta]
    assert r1 == r2 and len(r1) == 2


def test_context_keeps_stats_and_errors_name_what_is_missing(tmp_path: Path) -> None:
    g = _mlp()
    ctx = PassContext(calibration=[{"x": RNG.standard_normal((16, 32)).astype(np.float32)}])
    run_pipeline(g, "quantize{scheme=static,min_kn=0,calibration=mse}", ctx=ctx)
    assert ctx.calibration_stats is not None and "x" in ctx.calibration_stats and len(ctx.calibration_stats) == 2
    ctx.calibration = None
    run_pipeline(g, "quantize{scheme=static,min_kn=0,calibration=entropy}", ctx=ctx)  # reuses the statistics in ctx
    with pytest.raises(QuantizeError, match="needs calibration data"):
        run_pipeline(g, f"quantize{{scheme=static,min_kn=0,stats={tmp_path / 'none.npz'}}}", ctx=PassContext())
