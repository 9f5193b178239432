"""Conformance against ONNX's own test data (shipped in the onnx wheel) and generated node cases."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter

import pytest
from tensorsmith.bench.onnx_conformance import KINDS, collect_cases, run_case

LIGHT = collect_cases(["light"])
PYTORCH = collect_cases([k for k in KINDS if k.startswith("pytorch")])
F64_CASES = {"test_operator_add_broadcast", "test_operator_add_size1_broadcast",
             "test_operator_add_size1_right_broadcast", "test_operator_add_size1_singleton_broadcast",
             "test_operator_addconstant"}
"""pytorch-operator cases whose inputs and outputs are float64."""
ORT_CANNOT_RUN = {"test_PReLU_1d_multiparam", "test_PReLU_2d_multiparam", "test_PReLU_3d_multiparam"}
"""Opset-6 PRelu with a per-channel slope: ONNX Runtime has no opset-6 kernel, and onnx's version converter
keeps the slope [C], which opset 7's unidirectional broadcasting then aligns with the last axis."""


def test_the_nine_light_models_are_there() -> None:
    assert sorted(c.name for c in LIGHT) == ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2",
                                             "resnet50", "shufflenet", "squeezenet", "vgg19", "zfnet512"]


@pytest.mark.parametrize("case", LIGHT, ids=[c.name for c in LIGHT])
def test_light_model_matches_expected_output(case: object) -> None:
    r = run_case(case)  # type: ignore[arg-type]
    assert r.status == "pass", r.detail


@pytest.mark.parametrize("case", PYTORCH, ids=[c.name for c in PYTORCH])
def test_pytorch_case(case: object) -> None:
    r = run_case(case)  # type: ignore[arg-type]
    assert r.status == "pass", r.detail


@pytest.mark.parametrize("case", PYTORCH, ids=[c.name for c in PYTORCH])
def test_pytorch_case_on_numba(case: object) -> None:
    r = run_case(case, backend="numba")  # type: ignore[arg-type]
    assert r.status == "pass", r.detail


def test_the_float64_cases_are_float64() -> None:
    f64 = {c.name for c in PYTORCH if any(a.dtype == "float64" for a in c.inputs + c.expected)}
    assert f64 == F64_CASES


def test_onnxruntime_agrees_on_every_pytorch_case_it_can_run() -> None:
    """In a process of its own: ONNX Runtime and Numba's thread pools never share one."""
    cmd = [sys.executable, "-m", "tensorsmith.bench.onnx_conformance", "--kinds", "pytorch-converted,pytorch-operator",
           "--ort"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    agree = re.search(r"onnxruntime: agrees on (\d+) of the (\d+) passing cases", out)
    assert agree is not None, out[-2000:]
    assert agree.group(1) == agree.group(2), out[-2000:]
    cannot = {line.split()[2] for line in out.splitlines() if "[onnxruntime: cannot run" in line}
    assert cannot == ORT_CANNOT_RUN
    assert int(agree.group(2)) == len(PYTORCH) - len(ORT_CANNOT_RUN)


def test_pytorch_pass_rate_over_supported_cases() -> None:
    results = [run_case(c) for c in PYTORCH]
    supported = [r for r in results if r.status != "unsupported"]
    rate = sum(r.status == "pass" for r in supported) / len(supported)
    assert rate >= 0.9, rate


def test_node_cases_pass_or_are_refused_with_a_reason() -> None:
    """ONNX's generated per-operator cases: no case gives a wrong result or crashes; a case that
    does not pass is refused at import (unsupported dtype, run-time comparison, training mode...)."""
    results = [run_case(c) for c in collect_cases(["node"])]
    status = Counter(r.status for r in results)
    wrong = [f"{r.case.name}: {r.detail}" for r in results if r.status == "fail"
             and not r.detail.startswith("OnnxImportError")]
    assert not wrong, "\n".join(wrong)
    assert status["pass"] >= 400, status
