"""Pass instruments: hooks around every pass (timing, IR printing, dumps, checks)."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TextIO

import numpy as np

from ..ir.graph import Graph
from ..ir.verify import VerificationError, verify
from .base import Pass, PassContext, PassResult


class PassCheckError(RuntimeError):
    """A pass broke the graph: it no longer verifies, or its outputs moved beyond the bound."""


class Instrument:
    """Base instrument: override any of should_run, before_pass, after_pass."""

    def should_run(self, graph: Graph, p: Pass, ctx: PassContext) -> bool:
        """Return False to skip the pass."""
        return True

    def before_pass(self, graph: Graph, p: Pass, ctx: PassContext) -> None:
        """Called before each pass runs."""

    def after_pass(self, graph: Graph, p: Pass, result: PassResult, ctx: PassContext) -> None:
        """Called after each pass with its result."""


class Timing(Instrument):
    """Measures the wall time of each pass; `summary()` prints them."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []
        self._t0 = 0.0

    def before_pass(self, graph: Graph, p: Pass, ctx: PassContext) -> None:
        """Start the clock."""
        self._t0 = time.perf_counter()

    def after_pass(self, graph: Graph, p: Pass, result: PassResult, ctx: PassContext) -> None:
        """Stop the clock and record."""
        self.times.append((str(p), time.perf_counter() - self._t0))

    def summary(self) -> str:
        """One line per pass with milliseconds, and the total."""
        lines = [f"{name:<40} {t * 1e3:9.2f} ms" for name, t in self.times]
        lines.append(f"{'total':<40} {sum(t for _, t in self.times) * 1e3:9.2f} ms")
        return "\n".join(lines)


class PrintIRAfter(Instrument):
    """Prints the IR after every pass, or only after the passes named in `only`."""

    def __init__(self, only: Iterable[str] | None = None, stream: TextIO | None = None,
                 changed_only: bool = False) -> None:
        self.only = set(only) if only is not None else None
        self.stream = stream
        self.changed_only = changed_only

    def after_pass(self, graph: Graph, p: Pass, result: PassResult, ctx: PassContext) -> None:
        """Print `// after <pass>` and the graph (constants elided)."""
        if self.only is not None and p.name not in self.only:
            return
        if self.changed_only and not result.changed:
            return
        out = self.stream or sys.stdout
        out.write(f"// -----// IR after {p} //----- //\n{result.graph}")


class DumpIR(Instrument):
    """Writes the input graph and the graph after each pass to numbered files in `folder`."""

    def __init__(self, folder: str | Path, constants: str = "full") -> None:
        self.folder = Path(folder)
        self.constants = constants
        self.count = 0

    def _write(self, graph: Graph, label: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", label)
        (self.folder / f"{self.count:03d}_{safe}.ir").write_text(graph.to_text(self.constants))
        self.count += 1

    def before_pass(self, graph: Graph, p: Pass, ctx: PassContext) -> None:
        """Dump the input once, as 000_input.ir."""
        if self.count == 0:
            self._write(graph, "input")

    def after_pass(self, graph: Graph, p: Pass, result: PassResult, ctx: PassContext) -> None:
        """Dump the result as NNN_<pass>.ir."""
        self._write(result.graph, p.name)


class VerifyEach(Instrument):
    """Runs `verify` after each pass and names the pass that broke the graph."""

    def after_pass(self, graph: Graph, p: Pass, result: PassResult, ctx: PassContext) -> None:
        """Verify the result."""
        try:
            verify(result.graph)
        except VerificationError as e:
            raise PassCheckError(f"pass {p} produced an invalid graph:\n{e}") from e


class NumericCheck(Instrument):
    """Compares each pass's outputs against the reference backend on fixed `inputs`.

    Exact passes must reproduce the outputs bit for bit (NaNs included); a lossy pass may
    move them by its stated `tolerance` (rtol, atol), or by `bounds[pass name]` if given.
    """

    def __init__(self, inputs: Mapping[str, np.ndarray],
                 bounds: Mapping[str, tuple[float, float]] | None = None) -> None:
        self.inputs = dict(inputs)
        self.bounds = dict(bounds or {})
        self._before: dict[str, np.ndarray] | None = None
        self.max_errors: list[tuple[str, float]] = []

    def _run(self, graph: Graph) -> list[np.ndarray]:
        from ..backends import reference  # the golden semantics (numpy)

        out = reference.run(graph, self.inputs)
        return [out[v.name] for v in graph.outputs]

    def before_pass(self, graph: Graph, p: Pass, ctx: PassContext) -> None:
        """Record the reference outputs before the pass."""
        self._before = self._run(graph)

    def after_pass(self, graph: Graph, p: Pass, result: PassResult, ctx: PassContext) -> None:
        """Compare against the outputs before the pass."""
        assert self._before is not None
        after = self._run(result.graph)
        rtol, atol = self.bounds.get(p.name, p.tolerance)
        worst = 0.0
        for i, (a, b) in enumerate(zip(self._before, after)):
            if a.shape != b.shape:
                raise PassCheckError(f"pass {p}: output {i} changed shape {a.shape} -> {b.shape}")
            if rtol == 0 and atol == 0 and p.exact:
                if not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                    diff = np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64)))
                    raise PassCheckError(f"pass {p} is exact but changed output {i} "
                                         f"(max abs difference {diff:.3g})")
            elif not np.allclose(b, a, rtol=rtol, atol=atol, equal_nan=True):
                diff = float(np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64))))
                raise PassCheckError(f"pass {p}: output {i} moved by up to {diff:.3g}, beyond its "
                                     f"bound rtol={rtol}, atol={atol}")
            if a.size:
                worst = max(worst, float(np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64)))))
        self.max_errors.append((str(p), worst))
