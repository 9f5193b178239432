"""ONNX import under malformed input: seeded mutations of the light and pytorch test models fail only with
OnnxImportError (never a numpy, protobuf or Python exception, never a hang), and sizes are checked before
anything is allocated."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from tensorsmith.bench.fuzz_import import (
    FUZZ_MAX_BYTES,
    ONNX_MUTATIONS,
    Outcome,
    base_models,
    counts,
    onnx_cases,
    report,
)
from tensorsmith.ir import from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError

CASES = 13 * 80
"""Seeded cases per run: 80 per mutation (about 4 s on one idle core)."""
CASE_LIMIT_S = 5.0


@pytest.fixture(scope="module")
def models() -> list[tuple[str, onnx.ModelProto]]:
    return base_models(("squeezenet",), pytorch_every=3)


def test_mutated_models_fail_only_with_import_errors(models: list[tuple[str, onnx.ModelProto]],
                                                     record_property: Callable[[str, object], None]) -> None:
    assert len(models) > 30 and models[0][0] == "light_squeezenet"
    outcomes = onnx_cases(models, CASES, seed=20261201, limit=CASE_LIMIT_S)
    print(report("ONNX import", outcomes))
    table = counts(outcomes)
    record_property("onnx_fuzz_counts", {k: dict(v) for k, v in table.items()})
    bad = [o for o in outcomes if not o.allowed]
    assert not bad, report("ONNX import", bad)
    assert table["total"]["timeout"] == 0
    for mutation in ONNX_MUTATIONS:  # every mutation really breaks some models
        assert table[mutation]["OnnxImportError"] > 0, mutation
    assert table["total"]["ok"] > 0  # and some mutations are harmless (e.g. an unused attribute)


def test_the_judge_rejects_foreign_errors(models: list[tuple[str, onnx.ModelProto]], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tensorsmith.bench import fuzz_import

    def crash(*args: object, **kw: object) -> None:
        raise KeyError("x")

    monkeypatch.setattr(fuzz_import, "from_onnx", crash)
    out: list[Outcome] = onnx_cases(models[:1], 2, seed=0)
    assert [o.kind for o in out] == ["KeyError", "KeyError"] and not any(o.allowed for o in out)


def model(nodes: list[onnx.NodeProto], inputs: dict[str, list[int]], outputs: list[str],
          inits: list[onnx.TensorProto] = ()) -> onnx.ModelProto:  # type: ignore[assignment]
    ins = [helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, s) for k, s in inputs.items()]
    outs = [helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, None) for k in outputs]
    return helper.make_model(helper.make_graph(nodes, "g", ins, outs, list(inits)),
                             opset_imports=[helper.make_opsetid("", 13)])


def refused_fast(m: onnx.ModelProto | bytes, match: str, **kw: object) -> OnnxImportError:
    t0 = time.perf_counter()
    with pytest.raises(OnnxImportError, match=match) as info:
        from_onnx(m, **kw)  # type: ignore[arg-type]
    assert time.perf_counter() - t0 < 2.0
    return info.value


def test_an_input_dim_of_2_pow_40_is_refused_at_once() -> None:
    m = model([helper.make_node("Relu", ["x"], ["y"])], {"x": [2**40, 3]}, ["y"])
    refused_fast(m, r"graph input 'x' of shape \[1099511627776, 3\] \(f32\) would take 13194139533312 bytes")


@pytest.mark.parametrize("shape", [[2**20, 2**20], [2**62, 4]])
def test_folded_tensors_are_sized_before_allocating(shape: list[int]) -> None:
    s = numpy_helper.from_array(np.array(shape, np.int64), "s")
    m = model([helper.make_node("ConstantOfShape", ["s"], ["c"], name="fill"),
               helper.make_node("Add", ["x", "c"], ["y"])], {"x": [1]}, ["y"], [s])
    e = refused_fast(m, r"node #0 'fill' \(ConstantOfShape.*over the limit of 1000 bytes", max_bytes=1000)
    assert len(e.problems) == 1


def test_expand_and_tile_are_sized_before_allocating() -> None:
    s = numpy_helper.from_array(np.array([2**20, 2**20], np.int64), "s")
    m = model([helper.make_node("Expand", ["x", "s"], ["y"], name="grow")], {"x": [1, 1]}, ["y"], [s])
    refused_fast(m, r"node #0 'grow' \(Expand.*would take \d+ bytes, over the limit")
    m = model([helper.make_node("Tile", ["x", "s"], ["y"], name="tile")], {"x": [2, 2]}, ["y"], [s])
    refused_fast(m, r"node #0 'tile' \(Tile.*would take \d+ bytes, over the limit")


def test_an_initializer_bigger_than_the_limit_is_refused_before_reading() -> None:
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    m = model([helper.make_node("Add", ["x", "w"], ["y"])], {"x": [4, 4]}, ["y"], [w])
    assert from_onnx(m, max_bytes=64)
    refused_fast(m, r"initializer 'w' of shape \[4, 4\] \(float32\) would take 64 bytes, over the limit of 63",
                 max_bytes=63)
    m.graph.initializer[0].dims[:] = [2**40, 2**40]
    refused_fast(m, r"initializer 'w' of shape \[1099511627776, 1099511627776\]")


def test_malformed_initializer_data_names_the_tensor() -> None:
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "conv1/w:0")
    w.raw_data = w.raw_data[:-3]
    m = model([helper.make_node("Add", ["x", "conv1/w:0"], ["y"])], {"x": [4, 4]}, ["y"], [w])
    e = refused_fast(m, r"initializer 'conv1/w:0' \(FLOAT\[4, 4\]\): cannot read its data")
    assert isinstance(e.__cause__, type(None)) and "ValueError" in str(e)


def test_names_that_are_not_utf8_and_bytes_that_are_not_a_model() -> None:
    m = model([helper.make_node("Relu", ["x"], ["y"])], {"x": [2]}, ["y"])
    data = m.SerializeToString().replace(b"\x12\x01y", b"\x12\x01\xff")  # node output "y" -> byte 0xff
    refused_fast(data, r"node #0: name b'\\xff' is not valid UTF-8")
    refused_fast(b"\x08\x07\x12\xff\xff\xff", r"cannot parse ONNX model bytes")


def test_every_mutation_is_named_and_seeded(models: list[tuple[str, onnx.ModelProto]]) -> None:
    a = onnx_cases(models, 24, seed=5, max_bytes=FUZZ_MAX_BYTES)
    b = onnx_cases(models, 24, seed=5, max_bytes=FUZZ_MAX_BYTES)
    assert [(o.source, o.mutation, o.kind, o.message) for o in a] == [(o.source, o.mutation, o.kind, o.message)
                                                                      for o in b]
    assert {o.mutation for o in a} == set(ONNX_MUTATIONS)


def test_a_graph_output_that_is_an_unsupported_constant_is_reported() -> None:
    w = numpy_helper.from_array(np.ones(3, np.uint16), "w")
    m = model([helper.make_node("Relu", ["x"], ["y"])], {"x": [3]}, ["y", "w"], [w])
    e = refused_fast(m, r"graph output 'w': constant 'w' has numpy dtype uint16, which has no IR dtype")
    assert len(e.problems) == 1
    m.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    e = refused_fast(m, r"graph output 'y' is declared FLOAT16, but the model computes f32 for it")
    assert len(e.problems) == 2
