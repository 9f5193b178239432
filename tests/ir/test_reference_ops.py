"""Every registered op has a reference-backend test against an independent computation."""

from __future__ import annotations

from tensorsmith.ir import OPS

from . import (  # noqa: F401  (importing the modules registers their tests in COVERED)
    test_exits,
    test_reference_attention,
    test_reference_conv_pool,
    test_reference_elementwise,
    test_reference_integer,
    test_reference_logic,
    test_reference_nn,
    test_reference_quant,
    test_reference_shape,
    test_regions,
)
from .refcase import COVERED


def test_every_registered_op_has_a_reference_test() -> None:
    missing = sorted(set(OPS) - set(COVERED))
    assert not missing, f"ops without a reference test (add one decorated @covers(op)): {missing}"


def test_covered_names_are_registered_ops() -> None:
    assert not set(COVERED) - set(OPS)
