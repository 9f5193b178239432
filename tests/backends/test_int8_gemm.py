"""The int8 GEMM kernels on every path this host executes: exact i32, dequantized f32, epilogue, requantize."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from tensorsmith.backends.numba import int8_gemm as ig
from tensorsmith.backends.numba import int8_quantize as iq
from tensorsmith.backends.numba.cpu_features import (
    INT8_PATH_FEATURES,
    Int8PathError,
    best_int8_path,
    check_int8_path,
    int8_paths,
    unavailable_int8_paths,
)
from tensorsmith.backends.numba.epilogue import Epilogue, Stage, StageKind
from tensorsmith.backends.numba.int8_ukernel import WEIGHT_RANGE
from tensorsmith.backends.numba.mathfn import F0

PATHS = int8_paths()
NATIVE = best_int8_path()
"""The path `compile` picks on this host: its kernels are tested serial and parallel."""
pytestmark = pytest.mark.skipif(not PATHS, reason="this host executes no int8 path")
RNG = np.random.default_rng(5)
SHAPES = [(1, 1, 1), (3, 5, 33), (17, 767, 33), (1, 767, 1), (17, 1, 33), (3, 5, 1), (17, 767, 130),
          (70, 200, 70), (48, 130, 33), (33, 63, 100), (64, 64, 32), (4, 130, 70), (5, 64, 33), (2, 100, 40),
          (11, 67, 20), (50, 200, 600)]
"""(M, K, N): ragged in every dimension, N above and below one panel; on AMX, rows in 32- and 16-row
tiles with vector rows below them, K in whole 64s with and without a vector tail, K below one tile, N over
several groups of panels dequantized together (8 on AMX), the last one short and ragged."""


def twins(path: str) -> tuple[bool, ...]:
    """The twins to test on `path`: both on the native path, the serial one on the narrower paths.

    Serial and parallel twins are one source that differs only in the outermost loop, so the parallel
    scheduling is tested once (on the path the runtime runs); every path's micro-kernel, dequantization,
    epilogue and requantization is tested on its serial twin (each parallel twin costs about 10 s of
    compilation).
    """
    return (False, True) if path == NATIVE else (False,)


def _weights(path: str, n: int, k: int) -> np.ndarray:
    lo, hi = WEIGHT_RANGE[path]
    return RNG.integers(lo, hi + 1, (n, k)).astype(np.int8)


def _acts(m: int, k: int) -> np.ndarray:
    """Random u8 activations [M, Kp] with the padding columns zero (as quantize_dynamic writes them)."""
    xq = np.zeros((m, ig.padded_k(k)), np.uint8)
    xq[:, :k] = RNG.integers(0, 256, (m, k))
    return xq


def _ref_acc(xq: np.ndarray, w: np.ndarray) -> np.ndarray:
    return xq[:, :w.shape[1]].astype(np.int64) @ w.T.astype(np.int64)


def np_quantize(x: np.ndarray) -> tuple[np.ndarray, np.float32, np.int32]:
    """DynamicQuantizeLinear in numpy float32 (round half to even, saturate to [0, 255])."""
    lo, hi = np.float32(min(x.min(), 0)), np.float32(max(x.max(), 0))
    scale = np.float32(1) if hi == lo else np.float32((hi - lo) / np.float32(255))
    zp = np.int32(np.rint(np.clip(np.float32(0) - np.float32(lo / scale), 0, 255)))
    q = np.clip(np.rint(x / scale).astype(np.float32) + np.float32(zp), 0, 255).astype(np.uint8)
    return q, scale, zp


@pytest.mark.parametrize(("path", "parallel"), [(p, par) for p in PATHS for par in twins(p)])
@pytest.mark.parametrize("mkn", SHAPES)
def test_i32_exact_random(path: str, parallel: bool, mkn: tuple[int, int, int]) -> None:
    m, k, n = mkn
    w, xq = _weights(path, n, k), _acts(m, k)
    acc = ig.int8_gemm_i32(xq, ig.pack_int8_weights(w, 1.0, path), path, parallel)
    assert acc.dtype == np.int32
    assert_array_equal(acc, _ref_acc(xq, w))


@pytest.mark.parametrize("path", PATHS)
def test_i32_exact_extremes(path: str) -> None:
    """Every activation 255 or 0 against the path's extreme weights: the largest pair sums vpmaddubsw sees."""
    lo, hi = WEIGHT_RANGE[path]
    m, k, n = 17, 767, 33
    w = np.where(RNG.random((n, k)) < 0.5, lo, hi).astype(np.int8)
    w[0], w[1] = lo, hi
    xq = np.zeros((m, ig.padded_k(k)), np.uint8)
    xq[:, :k] = np.where(RNG.random((m, k)) < 0.7, 255, 0)
    xq[0, :k] = 255
    packed = ig.pack_int8_weights(w, 1.0, path)
    for parallel in twins(path):
        assert_array_equal(ig.int8_gemm_i32(xq, packed, path, parallel), _ref_acc(xq, w))


def test_full_range_weights_on_vnni() -> None:
    """vpdpbusd does not saturate: -128 and 127 weights against 255 activations are exact."""
    if "avx512vnni" not in PATHS:
        pytest.skip("host lacks avx512vnni")
    w = np.full((33, 767), -128, np.int8)
    w[::2] = 127
    xq = np.zeros((3, ig.padded_k(767)), np.uint8)
    xq[:, :767] = 255
    acc = ig.int8_gemm_i32(xq, ig.pack_int8_weights(w, 1.0, "avx512vnni"), "avx512vnni")
    assert_array_equal(acc, _ref_acc(xq, w))


@pytest.mark.parametrize("path", [p for p in PATHS if WEIGHT_RANGE[p] != (-128, 127)])
def test_weights_outside_the_path_range_are_refused(path: str) -> None:
    w = np.zeros((4, 8), np.int8)
    w[1, 2] = -128
    with pytest.raises(ValueError, match=r"\[-64, 63\]"):
        ig.pack_int8_weights(w, 1.0, path)


def test_packed_format() -> None:
    """data[panel, g, n, j] = w[panel * NR + n, 4g + j], zero padded; colsum is the row sum of w."""
    path = PATHS[0]
    w = _weights(path, 33, 7)
    packed = ig.pack_int8_weights(w, np.arange(33, dtype=np.float32), path)
    nr = ig.int8_kernels(path).nr
    assert packed.data.shape == (1 if nr >= 33 else -(-33 // nr), 2, nr, 4)
    assert packed.kp == 8
    flat = packed.data.transpose(0, 2, 1, 3).reshape(-1, 8)
    assert_array_equal(flat[:33, :7], w)
    assert not flat[33:].any() and not flat[:, 7].any()
    assert_array_equal(packed.colsum, w.astype(np.int32).sum(1))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mkn", [(1, 5, 1), (3, 767, 33), (17, 64, 130), (50, 200, 600)])
def test_dequantized_f32(path: str, mkn: tuple[int, int, int]) -> None:
    m, k, n = mkn
    x = RNG.standard_normal((m, k)).astype(np.float32)
    w = _weights(path, n, k)
    sw = RNG.uniform(0.001, 0.02, n).astype(np.float32)
    bias = RNG.standard_normal(n).astype(np.float32)
    xq, sx, zp = ig.quantize_dynamic(x)
    packed = ig.pack_int8_weights(w, sw, path)
    acc = _ref_acc(xq, w) - zp[:, None].astype(np.int64) * packed.colsum[None, :]
    ref = (sx[:, None] * sw[None, :]) * acc.astype(np.float32) + bias
    for parallel in twins(path):
        y = ig.int8_gemm_dequant(xq, sx, zp, packed, path, bias=bias, parallel=parallel)
        assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    # each activation moves by at most half its scale when quantized: that bounds the distance to fp32
    w_real = w.astype(np.float64) * sw[:, None]
    bound = (sx[:, None].astype(np.float64) / 2) * np.abs(w_real).sum(axis=1)[None, :]
    exact = x.astype(np.float64) @ w_real.T + bias
    assert np.all(np.abs(y - exact) <= bound * (1 + 1e-4) + 1e-5)


@pytest.mark.parametrize("path", PATHS)
def test_epilogue_stages(path: str) -> None:
    """Per-channel add and mul, a residual and relu run on each dequantized tile as in the fp32 GEMM."""
    m, k, n = 17, 40, 130
    w = _weights(path, n, k)
    xq, sx, zp = ig.quantize_dynamic(RNG.standard_normal((m, k)).astype(np.float32))
    packed = ig.pack_int8_weights(w, 0.01, path)
    vecs = RNG.standard_normal((2, n)).astype(np.float32)
    res = RNG.standard_normal((m, n)).astype(np.float32)
    epi = Epilogue(n, [Stage(StageKind.ADD, vecs[0]), Stage(StageKind.MUL, vecs[1]), Stage(StageKind.RESIDUAL),
                       Stage(StageKind.RELU), Stage(StageKind.CLIP, params=(-1.0, 2.5))])
    plain = ig.int8_gemm_dequant(xq, sx, zp, packed, path)
    for parallel in twins(path):
        y = ig.int8_gemm_dequant(xq, sx, zp, packed, path, parallel=parallel, stages=epi.codes(),
                                 vecs=epi.vectors(), params=epi.params(), res=res)
        ref = np.minimum(np.maximum((plain + vecs[0]) * vecs[1] + res, F0), np.float32(2.5))
        assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("path", "qtype"), [(p, np.uint8) for p in PATHS] + [(NATIVE, np.int8)] * bool(PATHS))
def test_requantize_saturates(path: str, qtype: type) -> None:
    """Every path requantizes to u8; s8 output (the same requant_tile, another signature) on the native path."""
    m, k, n = 17, 33, 70
    w = _weights(path, n, k)
    xq, sx, zp = ig.quantize_dynamic(RNG.standard_normal((m, k)).astype(np.float32) * 4)
    packed = ig.pack_int8_weights(w, 0.05, path)
    y = ig.int8_gemm_dequant(xq, sx, zp, packed, path)
    s_out = RNG.uniform(0.002, 0.02, n).astype(np.float32)
    zp_out = RNG.integers(0, 30, n).astype(np.int32)
    info = np.iinfo(qtype)
    ref = np.clip(np.rint(y / s_out).astype(np.float32) + zp_out, info.min, info.max).astype(qtype)
    assert (ref == info.max).any() and (ref == info.min).any(), "the scales must drive some values to both bounds"
    for parallel in twins(path):
        q = ig.int8_gemm_dequant(xq, sx, zp, packed, path, parallel=parallel, requant=(s_out, zp_out, np.dtype(qtype)))
        assert q.dtype == qtype
        assert_array_equal(q, ref)


@pytest.mark.parametrize("parallel", [False, True])
def test_dynamic_quantization_per_row(parallel: bool) -> None:
    x = RNG.standard_normal((17, 767)).astype(np.float32) * 3
    x[1] = np.abs(x[1])          # no negative values: zero point 0
    x[2] = -np.abs(x[2])         # no positive values: zero point 255
    x[3] = 0                     # all zero: scale 1
    x[4, :4] = [0.25, 0.75, 1.25, -0.5]
    x[4, 4:] = 0
    x[4, 5] = 127.0              # range 127.5: scale 0.5, zero point 1, x / scale 0.5, 1.5, 2.5 round to even
    xq, scale, zp = ig.quantize_dynamic(x, parallel=parallel)
    assert xq.shape == (17, 768) and not xq[:, 767].any()
    for r in range(17):
        q, s, z = np_quantize(x[r])
        assert_array_equal(xq[r, :767], q)
        assert scale[r] == s and zp[r] == z
    assert zp[1] == 0 and zp[2] == 255 and scale[3] == 1
    assert scale[4] == 0.5 and zp[4] == 1 and list(xq[4, :4]) == [1, 3, 3, 0]


def test_dynamic_quantization_per_tensor() -> None:
    x = RNG.standard_normal((9, 13)).astype(np.float32)
    xq, scale, zp = ig.quantize_dynamic(x, per_row=False, parallel=True)
    q, s, z = np_quantize(x)
    assert_array_equal(xq[:, :13], q)
    assert (scale == s).all() and (zp == z).all()


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("shape", [(1024, 16), (3, 5000), (1, 64), (2, 4096)])
def test_unpadded_per_tensor_quantization_runs_flat_across_chunks(parallel: bool, shape: tuple[int, int]) -> None:
    """Without padding columns the tensor is one run cut into TENSOR_CHUNK pieces: its range spans every piece
    (the extremes in the last, partial one), and NaN / infinities in other pieces quantize as the reference's."""
    m, k = shape
    x = RNG.standard_normal((m, k)).astype(np.float32)
    flat = x.reshape(-1)
    flat[-1], flat[-2] = 7.5, -3.25  # the range lies in the last piece
    if flat.size > 8:
        flat[[1, 3, 5]] = [np.nan, np.inf, -np.inf]
    xq = np.empty((m, k), np.uint8)
    scale, zp = np.empty(m, np.float32), np.empty(m, np.int32)
    iq.quantize_tensor.call(parallel, x, xq, scale, zp, writes=(xq, scale, zp))
    finite = x[np.isfinite(x)]
    q, s, z = np_quantize(finite)
    assert (scale == s).all() and (zp == z).all()
    assert_array_equal(xq[np.isfinite(x)], q)
    assert_array_equal(xq[np.isnan(x)], z)
    assert (xq[x == np.inf] == 255).all() and (xq[x == -np.inf] == 0).all()


def test_path_choice() -> None:
    assert best_int8_path() == PATHS[0]
    assert int8_paths({"avx2": True}) == ("avx2",)
    assert int8_paths({"avx512f": True, "avx512bw": True, "avx2": True}) == ("avx512bw", "avx2")
    assert best_int8_path({}) is None
    amx_host = dict.fromkeys(("amx-int8", "amx-tile", "avx512f", "avx512bw", "avx512vnni", "avx2"), True)
    assert int8_paths(amx_host) == ("amx", "avx512vnni", "avx512bw", "avx2")
    without_vnni = {**amx_host, "avx512vnni": False}
    assert int8_paths(without_vnni) == ("avx512bw", "avx2")  # AMX tails run on VNNI
    avx2_vnni = {"avx2": True, "avxvnni": True}  # AVX2-only CPUs with AVX-VNNI (Alder Lake, Sierra Forest)
    assert int8_paths(avx2_vnni) == ("avxvnni", "avx2")
    assert int8_paths({**amx_host, "avxvnni": True}) == ("amx", "avx512vnni", "avxvnni", "avx512bw", "avx2")
    assert unavailable_int8_paths({"avx2": True})["amx"].startswith("needs CPU features amx-int8, amx-tile")
    assert "avx2" not in unavailable_int8_paths({"avx2": True})
    assert set(unavailable_int8_paths()) | set(PATHS) == set(INT8_PATH_FEATURES)
    assert set(PATHS) <= set(INT8_PATH_FEATURES)


def test_missing_path_is_refused() -> None:
    with pytest.raises(Int8PathError, match="avx512vnni.*lacks"):
        check_int8_path("avx512vnni", {"avx2": True})
    with pytest.raises(Int8PathError, match="unknown int8 GEMM path 'sse2'"):
        ig.int8_kernels("sse2")
    lacking = [p for p in INT8_PATH_FEATURES if p not in PATHS]
    for p in lacking:
        with pytest.raises(Int8PathError, match="lacks"):
            ig.int8_kernels(p)


def test_operand_checks() -> None:
    path = PATHS[0]
    packed = ig.pack_int8_weights(_weights(path, 4, 6), 1.0, path)
    with pytest.raises(ValueError, match=r"uint8 \[M, 8\]"):
        ig.int8_gemm_i32(np.zeros((2, 6), np.uint8), packed, path)
    other = [p for p in PATHS if p != path]
    if other:
        with pytest.raises(ValueError, match="packed for path"):
            ig.int8_gemm_i32(np.zeros((2, 8), np.uint8), packed, other[0])


def test_paths_compile_apart() -> None:
    """Each path's kernels are separate functions with their own names: separate code and cache entries."""
    names = set()
    for p in PATHS:
        k = ig.int8_kernels(p)
        for d in (k.gemm_i32.serial, k.gemm_i32.parallel, k.gemm_dequant.serial, k.gemm_dequant.parallel):
            assert p in d.py_func.__qualname__
            names.add(d.py_func.__qualname__)
    assert len(names) == 4 * len(PATHS)


def test_amx_is_offered_only_when_linux_grants_the_tile_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host reporting AMX whose kernel refuses the tile state runs the next path and says why AMX does not."""
    from tensorsmith.backends.numba import cpu_features

    amx_host = dict.fromkeys(("amx-int8", "amx-tile", "avx512f", "avx512bw", "avx512vnni", "avxvnni", "avx2"), True)
    monkeypatch.setattr(cpu_features, "host_features", lambda: amx_host)
    monkeypatch.setattr(cpu_features, "request_tile_state", lambda: "Linux refused the AMX tile state (test)")
    assert cpu_features.int8_paths() == ("avx512vnni", "avxvnni", "avx512bw", "avx2")
    assert cpu_features.unavailable_int8_paths() == {"amx": "Linux refused the AMX tile state (test)"}
    with pytest.raises(Int8PathError, match="'amx' cannot run here: Linux refused the AMX tile state"):
        check_int8_path("amx")
    monkeypatch.setattr(cpu_features, "request_tile_state", lambda: None)
    assert cpu_features.best_int8_path() == "amx"


@pytest.mark.parametrize("path", [NATIVE] * bool(PATHS))
def test_products_split_by_rows_between_threads(path: str) -> None:
    """Split by rows (`tiling.split_rows`), each thread takes its rows and every panel, exactly (on the native path,
    whose parallel twin the runtime runs; the tiling is the same on every path)."""
    m, k, n = 131, 200, 300
    panels = -(-n // ig.SHAPES[path].nr)
    assert ig.int8_tiles(m, n, path, 2, True, rows=True) == (66, panels)
    assert ig.int8_tiles(m, n, path, 2, True) == (m, -(-panels // 2))
    w, xq = _weights(path, n, k), _acts(m, k)
    packed = ig.pack_int8_weights(w, 1.0, path)
    out = np.empty((m, n), np.int32)
    scratch = np.empty(ig.scratch_size(m, n, path, 66, panels), np.int32)
    ig.int8_kernels(path).gemm_i32.call(True, xq, packed.data, out, 66, panels, scratch, writes=(out, scratch))
    assert_array_equal(out, _ref_acc(xq, w))
