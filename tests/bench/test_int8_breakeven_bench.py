"""`bench.int8_breakeven`: one-layer graphs f32 against int8, with the default rule's decision per shape."""

from __future__ import annotations

import pytest
from tensorsmith.backends.numba.cpu_features import int8_paths
from tensorsmith.bench import int8_breakeven


@pytest.mark.skipif(not int8_paths(), reason="this host executes no int8 path")
def test_each_shape_is_timed_with_the_rules_decision(capsys: pytest.CaptureFixture[str]) -> None:
    shapes = "linear:16x27x16,linear:16x128x128"
    assert int8_breakeven.main(["--repeats", "2", "--rounds", "1", "--shapes", shapes]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("linear:")}
    assert rows["linear:16x27x16"][1:4] == ["27", "16", "20"] and rows["linear:16x27x16"][-1] == "f32"
    assert rows["linear:16x128x128"][1:4] == ["128", "128", "128"] and rows["linear:16x128x128"][-1] == "int8"
    assert all(float(r[6]) > 0 for r in rows.values())  # f32 / int8 measured


@pytest.mark.parametrize("shapes", ["conv:3x8", "pool:1x2x3", "linear:0x4x4"])
def test_a_bad_shape_is_a_usage_error_naming_it(shapes: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        int8_breakeven.main(["--shapes", shapes])
    assert e.value.code == 2 and f"shape {shapes!r}" in capsys.readouterr().err
