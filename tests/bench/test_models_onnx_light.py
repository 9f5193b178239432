"""ONNX light models in the zoo: imported with from_onnx and checked against onnx's stored outputs."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.backends import reference
from tensorsmith.bench.models import list_models, load_model
from tensorsmith.bench.models.onnx_light import LIGHT_MODELS, dummy_input, light_dir


def test_every_light_model_is_listed_and_available() -> None:
    infos = {m.name: m for m in list_models()}
    for name in LIGHT_MODELS:
        info = infos[f"onnx-{name.replace('_', '-')}"]
        assert info.available, info.reason
        assert (light_dir() / f"light_{name}.onnx").is_file()


def test_dummy_input_is_the_onnx_runner_input() -> None:
    x = dummy_input((1, 2, 2))
    np.testing.assert_array_equal(x, np.array([[[0, 0.25], [0.5, 0.75]]], np.float32))


@pytest.mark.parametrize("name", ["onnx-squeezenet", "onnx-shufflenet"])
def test_light_model_matches_stored_output(name: str) -> None:
    m = load_model(name)
    assert m.metric_name == "max_abs_err"
    assert m.quality(lambda i: reference.run(m.graph, i)) <= 1e-5
    expected = m.info["expected"]
    out = m.graph.outputs[0].name
    # the metric sees a wrong answer
    assert m.quality(lambda i: {out: np.zeros(expected.shape, np.float32)}) == pytest.approx(np.abs(expected).max())
