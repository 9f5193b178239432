"""Imports only go down the layers of docs/architecture.md: ir < backends < passes < runtime < bench."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("ir", "backends", "passes", "runtime", "bench")

ALLOWED = {
    "ir": {"ir"},
    "backends": {"ir", "backends"},
    # passes may ask the cost model, use the reference backend (numpy golden semantics)
    # to fold constants and check numerics, and price node orders with the arena planner;
    # never the executing JIT backends.
    "passes": {"ir", "passes", "backends.cost", "backends.reference", "backends.arena"},
    "runtime": {"ir", "passes", "backends", "runtime"},
    "bench": set(FOLDERS),
}


def _imports(path: Path, folder: str) -> list[str]:
    """Project-internal modules imported by `path`, as dotted paths under the namespace."""
    tree = ast.parse(path.read_text())
    rel_parts = path.relative_to(ROOT).with_suffix("").parts  # e.g. ("passes", "cse")
    pkg = list(rel_parts[:-1]) if path.name != "__init__.py" else list(rel_parts[:-1])
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else pkg
                mod = ".".join(base + ([node.module] if node.module else []))
                out += [f"{mod}.{a.name}" for a in node.names]
            elif node.module and node.module.startswith("tensorsmith."):
                mod = node.module.removeprefix("tensorsmith.")
                out += [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            out += [a.name.removeprefix("tensorsmith.") for a in node.names if a.name.startswith("tensorsmith.")]
    return out


def _allowed(folder: str, module: str) -> bool:
    return any(module == a or module.startswith(a + ".") for a in ALLOWED[folder])


def test_imports_follow_the_layering() -> None:
    bad = []
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            for mod in _imports(path, folder):
                if mod.split(".")[0] in FOLDERS and not _allowed(folder, mod):
                    bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_the_checker_sees_relative_imports() -> None:
    mods = _imports(ROOT / "passes" / "fold_constants.py", "passes")
    assert "backends.reference.evaluate_node" in mods and "ir.graph.Graph" in mods
    assert not _allowed("ir", "passes.base.Pass") and _allowed("passes", "backends.cost.targets")
