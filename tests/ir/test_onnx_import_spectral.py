"""DFT and STFT imported as products with constant DFT matrices: against numpy's FFT (the operator's definition)
and ONNX Runtime, on the reference and Numba backends; refusals named."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.ir import from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError

from .test_onnx_import import make_model, ort_outputs

RNG = np.random.default_rng(61)


def _run_both(model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    """The graph's first output on the reference backend, checked equal within float rounding on Numba."""
    g = from_onnx(model)
    ours = reference.run(g, feeds)[g.outputs[0].name]
    fast = runtime.compile(g, backend="numba").run(feeds)[g.outputs[0].name]
    np.testing.assert_allclose(fast, ours, rtol=1e-5, atol=1e-5)
    return [ours]


def _complex(y: np.ndarray) -> np.ndarray:
    return y[..., 0] + 1j * y[..., 1]


def dft_model(x: np.ndarray, opset: int, axis: int, n: int | None = None, **attrs: int):  # type: ignore[no-untyped-def]
    inits = {} if n is None else {"n": np.array(n, np.int64)}
    names = ["x", "n" if n is not None else ""]
    if opset >= 20:
        inits["axis"] = np.array(axis, np.int64)
        names.append("axis")
    else:
        attrs = {"axis": axis, **attrs}
    return make_model([helper.make_node("DFT", names, ["y"], **attrs)], {"x": x}, ["y"], inits, opset=opset)


@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize(("complex_in", "axis", "n"), [(True, 1, None), (False, 1, 12), (True, 2, 5), (False, 2, None)])
@pytest.mark.parametrize("inverse", [0, 1])
def test_dft_matches_numpy(opset: int, complex_in: bool, axis: int, n: int | None, inverse: int) -> None:
    x = RNG.standard_normal((2, 8, 6, 2 if complex_in else 1)).astype(np.float32)
    model = dft_model(x, opset, axis, n, inverse=inverse)
    (got,) = _run_both(model, {"x": x})
    signal = _complex(x) if complex_in else x[..., 0]
    want = (np.fft.ifft if inverse else np.fft.fft)(signal.astype(np.complex128), n=n, axis=axis)
    np.testing.assert_allclose(_complex(got), want, rtol=1e-4, atol=1e-5)
    theirs = ort_outputs(model, {"x": x})
    if theirs is not None:
        np.testing.assert_allclose(got, theirs[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n", [None, 10, 9])
def test_one_sided_forward_and_inverse(n: int | None) -> None:
    x = RNG.standard_normal((3, 10, 1)).astype(np.float32)
    (spec,) = _run_both(dft_model(x, 20, 1, n, onesided=1), {"x": x})
    want = np.fft.rfft(x[..., 0].astype(np.float64), n=n, axis=1)
    np.testing.assert_allclose(_complex(spec), want, rtol=1e-4, atol=1e-5)
    length = n if n is not None else 10
    (back,) = _run_both(dft_model(spec, 20, 1, length, onesided=1, inverse=1), {"x": spec})
    np.testing.assert_allclose(back[..., 0], np.fft.irfft(want, n=length, axis=1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("window", [False, True])
@pytest.mark.parametrize("onesided", [1, 0])
def test_stft(window: bool, onesided: int) -> None:
    x = RNG.standard_normal((2, 40, 1)).astype(np.float32)
    feeds = {"x": x}
    inits = {"step": np.array(6, np.int64), "length": np.array(16, np.int64)}
    names = ["x", "step", "w" if window else "", "length"]
    if window:
        feeds["w"] = np.hanning(16).astype(np.float32)  # a run-time window
    model = make_model([helper.make_node("STFT", names, ["y"], onesided=onesided)], feeds, ["y"], inits, opset=17)
    (got,) = _run_both(model, feeds)
    frames = np.stack([x[:, f * 6:f * 6 + 16, 0] for f in range(1 + (40 - 16) // 6)], axis=1)
    if window:
        frames = frames * feeds["w"]
    want = (np.fft.rfft if onesided else np.fft.fft)(frames.astype(np.float64), axis=-1)
    np.testing.assert_allclose(_complex(got), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("x", "attrs", "message"), [
    (np.zeros((1, 4, 2), np.float32), {"axis": 2}, "real / imaginary axis"),
    (np.zeros((1, 4, 3), np.float32), {"axis": 1}, "1 or 2 wide"),
    (np.zeros((1, 4, 2), np.float32), {"axis": 1, "onesided": 1}, "real signal"),
])
def test_malformed_dft_is_refused(x: np.ndarray, attrs: dict[str, int], message: str) -> None:
    model = make_model([helper.make_node("DFT", ["x"], ["y"], **attrs)], {"x": x}, ["y"], opset=17)
    with pytest.raises(OnnxImportError, match=message):
        from_onnx(model)
