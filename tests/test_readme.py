"""The README's Python examples run as written (all but the one that needs a user's ONNX file)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    """The ```python blocks of the README, in order."""
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_examples_run() -> None:
    from tensorsmith.passes import FUSION_PATTERNS

    blocks = [b for b in python_blocks() if "model.onnx" not in b]
    assert len(blocks) >= 3, "the README lost its examples"
    ns: dict = {}
    registered = list(FUSION_PATTERNS)
    try:
        for block in blocks:
            exec(compile(block, str(README), "exec"), ns)  # noqa: S102 - the README is ours
    finally:
        FUSION_PATTERNS[:] = registered  # the README registers a pattern of its own
    assert "recognized: attention x1" in ns["fctx"].report() and ns["exe"].stats["fused"]
    y = ns["y"]
    assert y.shape == (1, 10) and np.all(np.isfinite(y))
    from tensorsmith.backends import reference

    want = reference.run(ns["g"], {"x": np.ones((1, 64), np.float32)})["y"]
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-4)
    assert "drop-dropout" in ns["ctx"].report()
    found = ns["found"]
    assert (found.pass_name, found.pass_index, found.node_op) == ("relu-to-sigmoid", 3, "sigmoid")
    assert found.node == next(n for n in ns["g"].nodes if n.op == "relu").outputs[0].name
    stored = [v for n in ns["g4"].nodes for v in n.inputs if v.is_constant and v.type.sparsity is not None]
    assert stored and all(v.type.sparsity.pattern == "nm" and v.type.dtype.name == "i8" for v in stored)
    assert "2:4" in ns["hw"].report() and "int8" in ns["hw"].report()


def test_readme_commands_match_ci() -> None:
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    test_cmd = re.search(r"^(pip install -e \"\.\[dev,models\]\" && python -m pytest -n 2)", text, flags=re.M)
    assert test_cmd and test_cmd.group(1) in ci, "the README's test command must be what .ci/run runs"
