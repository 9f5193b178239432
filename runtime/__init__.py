"""Compile graphs to Executables on a backend and run them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..ir.graph import Graph
from ..ir.verify import verify
from ..passes import run_pipeline
from .executable import Executable, NodeProfile, Profile
from .reference_exec import ReferenceExecutable

BackendFactory = Callable[..., Executable]

BACKENDS: dict[str, BackendFactory] = {"reference": ReferenceExecutable}
"""Backends by name: `factory(graph, **options) -> Executable`."""


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make `compile(graph, backend=name)` use `factory`."""
    BACKENDS[name] = factory


def load_optional_backends() -> None:
    """Register the backends whose dependencies are installed (the Numba backend needs numba)."""
    try:
        from . import numba_exits  # noqa: F401  (registers "numba")
    except ImportError:
        pass


BACKEND_PIPELINES: dict[str, tuple[str, ...]] = {"numba": ("fuse",)}
"""Passes `compile` runs on (a copy of) the graph before a backend lowers it. The Numba backend fuses:
products with their epilogues and elementwise chains become regions, each one kernel."""


def compile(graph: Graph, backend: str = "reference", *, fuse: bool = True, **options: Any) -> Executable:  # noqa: A001
    """Verify `graph`, run the backend's pipeline (`BACKEND_PIPELINES`) and compile it for `backend`.

    `fuse=False` leaves `fuse` out of that pipeline (to measure what fusion buys); regions already
    in the graph stay regions.
    """
    if backend not in BACKENDS:
        load_optional_backends()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(sorted(BACKENDS))}")
    verify(graph)
    passes = [p for p in BACKEND_PIPELINES.get(backend, ()) if fuse or p != "fuse"]
    if passes:
        graph = run_pipeline(graph, ",".join(passes))
    return BACKENDS[backend](graph, **options)


from .timing import graph_timer  # noqa: E402  (it compiles through `compile` above)

__all__ = ["BACKENDS", "BACKEND_PIPELINES", "Executable", "NodeProfile", "Profile", "compile", "graph_timer",
           "register_backend"]
