"""Every registered op has a rule in every per-op table, or is listed here with the reason it has none."""

from __future__ import annotations

import pytest
from tensorsmith.backends.cost.rules import COST_RULES
from tensorsmith.backends.numba import NUMBA_LOWERINGS
from tensorsmith.backends.reference import REFERENCE_RULES
from tensorsmith.ir import OPS
from tensorsmith.ir.onnx_export import EXPORTERS

TABLES = {"reference": REFERENCE_RULES, "numba": NUMBA_LOWERINGS, "cost": COST_RULES, "onnx export": EXPORTERS}
WITHOUT_RULE = {
    ("onnx export", "fused"): "ONNX has no regions: to_onnx inlines them and exports their equations",
    ("onnx export", "exit"): "ONNX cannot stop part of a batch early: to_onnx refuses graphs with exits",
    ("onnx export", "exit_select"): "ONNX cannot stop part of a batch early: to_onnx refuses graphs with exits",
}
"""(table, op) pairs deliberately absent, with the reason."""


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_op_has_a_rule_or_a_reason(table: str) -> None:
    rules = TABLES[table]
    missing = sorted(op for op in OPS if op not in rules and (table, op) not in WITHOUT_RULE)
    assert not missing, f"ops without a rule in the {table} table: {missing}"


@pytest.mark.parametrize("table", sorted(TABLES))
def test_tables_name_only_registered_ops_and_the_exceptions_are_real(table: str) -> None:
    assert not set(TABLES[table]) - set(OPS)
    for (name, op), _reason in WITHOUT_RULE.items():
        if name == table:
            assert op in OPS and op not in TABLES[table], f"{op} is listed without a {table} rule but has one"
