"""Conformance against ONNX's own test data (shipped in the onnx wheel) and generated node cases."""

from __future__ import annotations

from collections import Counter

import pytest
from tensorsmith.bench.onnx_conformance import KINDS, collect_cases, run_case

LIGHT = collect_cases(["light"])
PYTORCH = collect_cases([k for k in KINDS if k.startswith("pytorch")])
NO_F64_IN_IR = {"test_operator_add_broadcast", "test_operator_add_size1_broadcast",
                "test_operator_add_size1_right_broadcast", "test_operator_add_size1_singleton_broadcast",
                "test_operator_addconstant"}
"""pytorch-operator cases whose inputs are float64, which the IR does not have."""


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
    if r.case.name in NO_F64_IN_IR:
        assert r.status == "fail" and "element type DOUBLE has no IR dtype" in r.detail
    else:
        assert r.status == "pass", r.detail


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
