"""Compile graphs to Executables on a backend and run them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..ir.graph import Graph
from ..ir.verify import verify
from .executable import Executable, NodeProfile, Profile
from .reference_exec import ReferenceExecutable

BackendFactory = Callable[..., Executable]

BACKENDS: dict[str, BackendFactory] = {"reference": ReferenceExecutable}
"""Backends by name: `factory(graph, **options) -> Executable`."""


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make `compile(graph, backend=name)` use `factory`."""
    BACKENDS[name] = factory


def _load_optional_backends() -> None:
    try:
        from . import numba_exec  # noqa: F401  (registers "numba")
    except ImportError:
        pass


def compile(graph: Graph, backend: str = "reference", **options: Any) -> Executable:  # noqa: A001
    """Verify `graph` and compile it for `backend` ("reference" or "numba")."""
    if backend not in BACKENDS:
        _load_optional_backends()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(sorted(BACKENDS))}")
    verify(graph)
    return BACKENDS[backend](graph, **options)


__all__ = ["BACKENDS", "Executable", "NodeProfile", "Profile", "compile", "register_backend"]
