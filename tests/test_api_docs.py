"""docs/api.md: every example runs in order, prints what it shows, and the page covers each class's public API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_api_examples_run_and_print(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", API.read_text(), flags=re.S)
    assert len(blocks) >= 5, "docs/api.md lost its examples"
    ns: dict = {}
    for block in blocks:
        exec(compile(block, str(API), "exec"), ns)  # noqa: S102 - the page is ours
        assert capsys.readouterr().out.strip(), f"an example prints nothing:\n{block}"


def test_every_public_member_is_on_the_page() -> None:
    from tensorsmith.ir import Graph, GraphBuilder, Node, Value
    from tensorsmith.passes import PassContext
    from tensorsmith.runtime import Executable

    text = API.read_text()
    for cls in (GraphBuilder, Graph, Node, Value, PassContext, Executable):
        public = [m for m in vars(cls) if not m.startswith("_") and m not in GraphBuilder.op_methods()]
        public += list(getattr(cls, "__dataclass_fields__", {}))
        missing = sorted({m for m in public if not re.search(rf"[`.]{m}\b", text)})
        assert not missing, f"docs/api.md does not mention {cls.__name__}.{missing}"
