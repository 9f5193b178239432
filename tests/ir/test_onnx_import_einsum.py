"""ONNX Einsum as transposes, reshapes, reduce-sums and batched matmuls, against numpy.einsum, ONNX's reference
evaluator and ONNX Runtime on both backends."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from tensorsmith.ir import from_onnx
from tensorsmith.ir.onnx_context import OnnxImportError

from .test_onnx_import import make_model
from .test_onnx_import_logic import _agree

RNG = np.random.default_rng(37)
SHAPES = {"b": 2, "h": 3, "q": 4, "k": 5, "d": 6, "i": 3, "j": 4, "l": 2}

CASES = [
    "bhqd,bhkd->bhqk",  # attention scores (TensorFlow's BERT export)
    "bhqk,bhkd->bhqd",  # attention times values
    "bqhd,bkhd->bhqk",  # heads in another axis
    "ij,jk",  # implicit output: matmul
    "ij->ji",  # transpose
    "ij->",  # total sum
    "i,i->",  # inner product
    "i,j->ij",  # outer product
    "bij,bjk,bkl->bil",  # three operands, folded left to right
    "...ij,...jk->...ik",  # ellipsis batch
    "bid,d->bi",  # matrix-vector with a batch
    "ijk->kj",  # a label summed out before the transpose
    "ii->i", "ii->", "...ii->...i", "iii->i", "iji->ij",  # a label repeated in one operand: its diagonal
    "bii,bj->bij", "ij,jj->i",  # a diagonal, then contracted as any other label
]


def _operand(term: str) -> np.ndarray:
    dims = [SHAPES.get(c, 2) for c in term.replace("...", "lb")]
    return RNG.standard_normal(dims).astype(np.float32)


@pytest.mark.parametrize("equation", CASES)
def test_einsum_matches_numpy(equation: str) -> None:
    terms = equation.split("->")[0].split(",")
    feeds = {f"x{i}": _operand(t) for i, t in enumerate(terms)}
    model = make_model([helper.make_node("Einsum", list(feeds), ["y"], equation=equation)], feeds, ["y"], opset=12)
    got = _agree(model, feeds, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["y"], np.einsum(equation, *feeds.values()), rtol=1e-5, atol=1e-5)
    assert "einsum" not in {n.op for n in from_onnx(model).nodes}


def test_a_repeated_label_of_two_sizes_is_refused_with_the_equation() -> None:
    feeds = {"x": RNG.standard_normal((3, 4)).astype(np.float32)}
    model = make_model([helper.make_node("Einsum", ["x"], ["y"], equation="ii->i")], feeds, ["y"], opset=12)
    with pytest.raises(OnnxImportError, match=r"Einsum 'ii->i': label 'i' repeats with sizes \[3, 4\]"):
        from_onnx(model)
