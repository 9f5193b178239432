"""The AMX A/B benchmark: both options run, check every output against numpy and print a ratio per shape."""

from __future__ import annotations

import re

import pytest
from tensorsmith.backends.numba.cpu_features import int8_paths
from tensorsmith.bench import amx_tiles

pytestmark = pytest.mark.skipif("amx" not in int8_paths(), reason="this host does not execute the amx path")


@pytest.mark.parametrize(("option", "threads"), [("prefetch", 1), ("epilogue", 1)])
def test_both_variants_are_timed_and_checked(option: str, threads: int, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(amx_tiles, "SHAPES", ((40, 200, 300),))
    assert amx_tiles.main(["--option", option, "--threads", str(threads), "--repeats", "1", "--rounds", "1",
                           "--panels", "3"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(r"40x200x300: .+ \d+  .+ \d+  ratio \d+\.\d\d", line), line
