"""Cost-model estimates for `bench`: each model on each target, next to the measured CPU time."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.table import Table

from ..backends.cost import EMULATED_LABEL, CostError, estimate
from ..ir import Graph

DEFAULT_TARGETS = ("cpu-host", "gpu-a100", "tpu-v4", "npu-edge", "fpga-u250")
"""What plain `bench` estimates: this CPU (to compare with the measurement) and one target per family."""

_BOUND_SHORT = {"compute": "cmp", "memory": "mem", "overhead": "ovh"}


@dataclass
class EstimateRow:
    """One model's predicted latency and energy per target, beside its measured CPU latency."""

    model: str
    measured_backend: str | None
    measured_ms: float | None
    latency_ms: dict[str, float] = field(default_factory=dict)
    energy_mj: dict[str, float] = field(default_factory=dict)
    bound: dict[str, str] = field(default_factory=dict)  # the bound of most of the latency
    errors: dict[str, str] = field(default_factory=dict)  # target -> why it could not be priced

    def error_vs_measured(self, target: str = "cpu-host") -> float | None:
        """(predicted - measured) / measured for `target`, when both exist."""
        if self.measured_ms is None or target not in self.latency_ms:
            return None
        return (self.latency_ms[target] - self.measured_ms) / self.measured_ms


def estimate_model(name: str, graph: Graph, targets: list[str], measured_backend: str | None,
                   measured_ms: float | None) -> EstimateRow:
    """Price `graph` on every target; a target that cannot price it is recorded with the reason."""
    row = EstimateRow(name, measured_backend, measured_ms)
    for t in targets:
        try:
            table = estimate(graph, t)
        except CostError as e:
            row.errors[t] = str(e)
            continue
        row.latency_ms[t] = table.total.latency_s * 1e3
        row.energy_mj[t] = table.total.energy_j * 1e3
        by_bound: dict[str, float] = {}
        for r in table.rows:
            by_bound[r.bound] = by_bound.get(r.bound, 0.0) + r.latency_s
        row.bound[t] = max(by_bound, key=by_bound.__getitem__) if by_bound else "-"
    return row


def render_estimates(rows: list[EstimateRow], targets: list[str]) -> Table:
    """A rich table: measured CPU latency, then each target's predicted latency (bound) and energy."""
    t = Table(title=f"cost model per target ({EMULATED_LABEL}); latency (bound of most of it), energy")
    t.add_column("model")
    t.add_column("measured CPU ms", justify="right")
    for tg in targets:
        t.add_column(tg + (" (err vs measured)" if tg == "cpu-host" else ""), justify="right")
    for r in rows:
        measured = f"{r.measured_ms:.3f} ({r.measured_backend})" if r.measured_ms is not None else "-"
        cells = [r.model, measured]
        for tg in targets:
            if tg in r.errors:
                cells.append("n/a")
                continue
            cell = f"{r.latency_ms[tg]:.3g} ms {_BOUND_SHORT.get(r.bound[tg], r.bound[tg])}, {r.energy_mj[tg]:.3g} mJ"
            err = r.error_vs_measured(tg) if tg == "cpu-host" else None
            if err is not None:
                cell += f" ({err:+.0%})"
            cells.append(cell)
        t.add_row(*cells)
    return t
