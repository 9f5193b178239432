"""The ONNX "light" models shipped with the onnx package (onnx/backend/test/data/light), imported with from_onnx."""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .registry import Model, RunFn, register_model

LIGHT_MODELS = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
                "squeezenet", "vgg19", "zfnet512")
"""The light models onnx's own backend tests run (onnx/backend/test/case/model)."""


def light_dir() -> Path:
    """The folder of the light models inside the installed onnx package."""
    return Path(str(importlib.resources.files("onnx"))) / "backend" / "test" / "data" / "light"


def _from_onnx() -> Callable[..., Any] | None:
    try:
        from ...ir import from_onnx
    except ImportError:
        try:
            from ...ir.onnx_import import from_onnx
        except ImportError:
            return None
    return from_onnx


def dummy_input(shape: tuple[int, ...]) -> np.ndarray:
    """The input onnx's backend test runner feeds the light models: arange(n) / n in float32."""
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def _check(model_name: str) -> Callable[[], str]:
    def check() -> str:
        if _from_onnx() is None:
            return "the ONNX importer (tensorsmith.ir.from_onnx) is not available"
        f = light_dir() / f"light_{model_name}.onnx"
        if not f.is_file():
            return f"{f} is missing from the installed onnx package"
        return ""

    return check


def load_light(model_name: str) -> Model:
    """Import light_<model_name>.onnx; inputs are the runner's dummy data, quality = max |out - stored output|."""
    import onnx
    from onnx import numpy_helper

    from_onnx = _from_onnx()
    if from_onnx is None:
        raise ImportError("the ONNX importer (tensorsmith.ir.from_onnx) is not available")
    path = light_dir() / f"light_{model_name}.onnx"
    expected = numpy_helper.to_array(onnx.load_tensor(str(path.with_name(f"light_{model_name}_output_0.pb"))))
    graph = from_onnx(str(path), name=model_name)
    if len(graph.outputs) != 1:
        raise ValueError(f"{path}: expected one output, the imported graph has {len(graph.outputs)}")
    inputs = {v.name: dummy_input(v.type.shape) for v in graph.inputs}
    out_name = graph.outputs[0].name

    def quality(run: RunFn) -> float:
        got = np.asarray(run(inputs)[out_name], np.float64).reshape(expected.shape)
        return float(np.max(np.abs(got - expected)))

    return Model(f"onnx-{model_name.replace('_', '-')}", graph, inputs,
                 f"ONNX light {model_name} (onnx backend tests), dummy input; max abs err to the stored output",
                 "max_abs_err", quality, info={"onnx_file": str(path), "expected": expected})


def _register(model_name: str) -> None:
    name = f"onnx-{model_name.replace('_', '-')}"
    desc = f"ONNX light {model_name} (onnx backend tests), dummy input; max abs err to the stored output"
    register_model(name, desc, check=_check(model_name))(lambda: load_light(model_name))


for _m in LIGHT_MODELS:
    _register(_m)
