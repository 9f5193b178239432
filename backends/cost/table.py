"""CostTable: the per-node and total cost of a graph on a target, printable and convertible to JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .model import NodeCost

EMULATED_LABEL = "emulated: predicted by the cost model, not measured"


@dataclass
class CostTotals:
    """Graph totals: latency under the schedule, serial latency, expected latency with early exits."""

    latency_s: float
    serial_latency_s: float
    expected_latency_s: float
    energy_j: float
    expected_energy_j: float
    macs: int
    flops: int
    bytes: dict[str, int]
    schedule: str  # "serial" or "parallel (N streams)"
    bounds: dict[str, int]  # how many nodes are compute-, memory-, overhead-bound
    exit_probabilities: list[float] = field(default_factory=list)

    @property
    def dram_bytes(self) -> int:
        """Bytes at the outermost memory level."""
        return list(self.bytes.values())[-1] if self.bytes else 0


def _fmt_s(s: float) -> str:
    if s == 0:
        return "0"
    if s < 1e-3:
        return f"{s * 1e6:.2f} us"
    if s < 1:
        return f"{s * 1e3:.3f} ms"
    return f"{s:.3f} s"


def _fmt_j(j: float) -> str:
    if j < 1e-6:
        return f"{j * 1e9:.2f} nJ"
    if j < 1e-3:
        return f"{j * 1e6:.2f} uJ"
    return f"{j * 1e3:.3f} mJ"


def _fmt_b(b: float) -> str:
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if b >= k:
            return f"{b / k:.2f} {unit}"
    return f"{int(b)} B"


@dataclass
class CostTable:
    """Per-node costs and totals of one graph on one target."""

    graph: str
    target: str
    rows: list[NodeCost]
    total: CostTotals
    label: str = EMULATED_LABEL

    def __getitem__(self, name: str) -> NodeCost:
        """The row of the node called `name`."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no node {name!r} in the cost table of {self.graph!r}")

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def to_dicts(self) -> list[dict[str, Any]]:
        """One dict per node, then one for the total (`"name": "<total>"`)."""
        out = []
        for r in self.rows:
            d = asdict(r)
            d.update(flops=r.flops, dram_bytes=r.dram_bytes, target=self.target)
            out.append(d)
        t = asdict(self.total)
        t.update(name="<total>", target=self.target, dram_bytes=self.total.dram_bytes, label=self.label)
        out.append(t)
        return out

    def to_json(self, indent: int | None = 2) -> str:
        """The table as JSON: {"graph", "target", "label", "nodes": [...], "total": {...}}."""
        rows = self.to_dicts()
        return json.dumps({"graph": self.graph, "target": self.target, "label": self.label,
                           "nodes": rows[:-1], "total": rows[-1]}, indent=indent)

    def table(self, max_rows: int | None = None) -> str:
        """Plain-text table, one line per node, then the totals."""
        rows = self.rows if max_rows is None else self.rows[:max_rows]
        w = max([len(r.name) for r in rows] + [4])
        head = (f"{'node':<{w}}  {'op':<12} {'prec':<5} {'latency':>10} {'bound':<8} {'GFLOP':>8} "
                f"{'DRAM':>9} {'energy':>10} {'util':>5}  notes")
        lines = [f"{self.graph} on {self.target} ({self.label})", head, "-" * len(head)]
        for r in rows:
            note = "; ".join(r.notes[:2])
            lines.append(f"{r.name:<{w}}  {r.op:<12} {r.precision:<5} {_fmt_s(r.latency_s):>10} {r.bound:<8} "
                         f"{r.flops / 1e9:8.3f} {_fmt_b(r.dram_bytes):>9} {_fmt_j(r.energy_j):>10} "
                         f"{r.utilization:5.0%}  {note}")
        if max_rows is not None and len(self.rows) > max_rows:
            lines.append(f"... {len(self.rows) - max_rows} more nodes")
        t = self.total
        lines.append("-" * len(head))
        lines.append(f"total: latency {_fmt_s(t.latency_s)} ({t.schedule}; serial {_fmt_s(t.serial_latency_s)}), "
                     f"energy {_fmt_j(t.energy_j)}, {t.flops / 1e9:.3f} GFLOP, DRAM {_fmt_b(t.dram_bytes)}, "
                     f"bounds {t.bounds}")
        if t.exit_probabilities:
            lines.append(f"early exit: expected latency {_fmt_s(t.expected_latency_s)}, expected energy "
                         f"{_fmt_j(t.expected_energy_j)} (exit probabilities {t.exit_probabilities})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_rich(self):  # type: ignore[no-untyped-def]
        """The table as a rich.table.Table (rich is a core dependency)."""
        from rich.table import Table

        t = Table(title=f"{self.graph} on {self.target} ({self.label})")
        for col in ("node", "op", "prec", "latency", "bound", "GFLOP", "DRAM", "energy", "util", "notes"):
            t.add_column(col, justify="right" if col in ("latency", "GFLOP", "DRAM", "energy", "util") else "left")
        for r in self.rows:
            t.add_row(r.name, r.op, r.precision, _fmt_s(r.latency_s), r.bound, f"{r.flops / 1e9:.3f}",
                      _fmt_b(r.dram_bytes), _fmt_j(r.energy_j), f"{r.utilization:.0%}", "; ".join(r.notes[:2]))
        tot = self.total
        t.add_row("total", "", "", _fmt_s(tot.latency_s), tot.schedule, f"{tot.flops / 1e9:.3f}",
                  _fmt_b(tot.dram_bytes), _fmt_j(tot.energy_j), "", "")
        return t
