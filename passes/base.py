"""Pass, PassResult, the pass registry and the pass context."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..ir.graph import Graph

if TYPE_CHECKING:
    from .calibration import CalibrationStats
    from .instruments import Instrument


@dataclass
class PassResult:
    """What a pass returns: the graph, whether it changed, a report a person can read, and counters.

    `report` is the full text (every layer, every reason); `summary` is one short line for the report
    table (derived from `report` when empty); `stats` holds counters by name (`removed`, `layers`, ...).
    """

    graph: Graph
    changed: bool
    report: str = ""
    stats: dict[str, float] = field(default_factory=dict)
    summary: str = ""


class TargetRequiredError(ValueError):
    """A pass with these options asks the cost model and no target was given; `pass_text` names the pass."""

    def __init__(self, pass_text: str, why: str) -> None:
        super().__init__(f"{pass_text} needs a target{why}: run_pipeline(..., target='gpu-a100') or "
                         "PassContext(target=...); see tensorsmith.backends.cost.list_targets()")
        self.pass_text = pass_text


class Pass:
    """Base of all passes: subclasses set `name` and implement `run`; options are fields.

    `register_pass` turns a subclass into a frozen dataclass, so options are typed fields
    with defaults, and `name{opt=value}` in a pipeline string builds an instance.
    `exact` says whether the pass preserves outputs bit for bit; a lossy pass states its
    bound in `tolerance` as (rtol, atol), which the numeric-check instrument enforces.
    """

    name: ClassVar[str] = ""
    exact: ClassVar[bool] = True
    tolerance: ClassVar[tuple[float, float]] = (0.0, 0.0)

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        """Transform `graph` (in place or not) and say what changed."""
        raise NotImplementedError(f"pass {self.name!r} does not implement run()")

    def options(self) -> dict[str, Any]:
        """The pass's options as a dict (its dataclass fields)."""
        if dataclasses.is_dataclass(self):
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {}

    def __str__(self) -> str:
        """The pass in pipeline syntax, e.g. `prune{sparsity=0.9}` (non-default options only)."""
        shown = []
        if dataclasses.is_dataclass(self):
            for f in dataclasses.fields(self):
                v = getattr(self, f.name)
                if f.default is dataclasses.MISSING or v != f.default:
                    shown.append(f"{f.name}={_fmt_option(v)}")
        return self.name + ("{" + ",".join(shown) + "}" if shown else "")


def _fmt_option(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "x".join(str(x) for x in v)
    return str(v)


PASSES: dict[str, type[Pass]] = {}
_KEBAB = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make `cls` a frozen dataclass and register it under `cls.name`."""
    if not (isinstance(cls, type) and issubclass(cls, Pass)):
        raise TypeError(f"register_pass: {cls!r} is not a subclass of Pass")
    if not _KEBAB.match(cls.name or ""):
        raise ValueError(f"register_pass: {cls.__name__}.name = {cls.name!r} must be kebab-case")
    if cls.name in PASSES and PASSES[cls.name].__qualname__ != cls.__qualname__:
        raise ValueError(f"register_pass: a pass named {cls.name!r} is already registered "
                         f"({PASSES[cls.name].__module__}.{PASSES[cls.name].__qualname__})")
    if "__dataclass_fields__" not in cls.__dict__:
        cls = dataclass(frozen=True)(cls)
    PASSES[cls.name] = cls
    return cls


@dataclass
class PassRecord:
    """One pass run as the context logged it: full report, one-line summary and counters.

    `stats` holds the pass's own counters plus `nodes_before` / `nodes_after` and `constant_bytes_before` /
    `constant_bytes_after`, which the driver measures for every pass.
    """

    name: str
    changed: bool
    report: str
    seconds: float
    stats: dict[str, float] = field(default_factory=dict)
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The record as plain data (pass, changed, seconds, summary, report, and the counters)."""
        return {"pass": self.name, "changed": self.changed, "seconds": self.seconds, "summary": self.summary,
                "report": self.report, **self.stats}


@dataclass
class PassContext:
    """What passes can see besides the graph: target, calibration data, instruments, options.

    `verify_each` runs `verify` after every pass (on by default); `records` logs every pass.
    `calibration_stats` holds the streamed activation statistics `quantize` observed on `calibration`
    (keyed by value name); later quantize runs with this context reuse them instead of recalibrating.
    """

    target: str | None = None
    calibration: list[Mapping[str, np.ndarray]] | None = None
    instruments: list[Instrument] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    verify_each: bool = True
    records: list[PassRecord] = field(default_factory=list)
    calibration_stats: CalibrationStats | None = None
    measure: Callable[[Graph], float] | None = None
    """Seconds one run of a graph takes on this machine (`runtime.graph_timer(backend)` makes one): passes that
    predict a speed-up (prune) time the layers they change with it and report the measured speed-up beside."""

    def report(self, details: bool = False) -> str:
        """Every pass run so far as a table: pass, changed, ms and a one-line summary; `details=True` adds each
        pass's full report (short lines) and its counters beneath its row."""
        from .report_table import format_records

        return format_records(self.records, details)

    def stats(self) -> list[dict[str, Any]]:
        """Every pass run so far as a dict (pass, changed, seconds, summary, report, counters): for scripts."""
        return [r.to_dict() for r in self.records]
