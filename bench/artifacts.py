"""Write what `bench` measured: JSON, PNG figures and the HTML report, each when asked for."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from .html_report import HtmlTable, write_html
from .report import MEASURED_COLUMNS, estimate_cells, failures, measured_cells, to_json, write_json
from .suite import ModelRun


def html_tables(rows: Sequence[Any], targets: Sequence[str]) -> list[HtmlTable]:
    """The measured table and the emulated per-target table as HTML tables."""
    from ..backends.cost import EMULATED_LABEL

    tables = [HtmlTable("measured on this CPU", MEASURED_COLUMNS, [measured_cells(r) for r in rows],
                        [bool(r.error) for r in rows])]
    priced = [r for r in rows if r.estimate_ms or r.estimate_errors]
    if targets and priced:
        tables.append(HtmlTable(f"cost model per target ({EMULATED_LABEL}): latency, bound, energy",
                                ["model", "configuration", *targets], [estimate_cells(r, targets) for r in priced]))
    return tables


def write_outputs(runs: Sequence[ModelRun], env: dict[str, Any], settings: dict[str, Any], json_path: str | None,
                  plot_dir: str | None, html_path: str | None, console: Console,
                  title: str = "tensorsmith bench", extra: dict[str, Any] | None = None) -> None:
    """JSON to `json_path`, figures into `plot_dir`, the page to `html_path` (figures made for it when needed)."""
    rows = [r for run in runs for r in run.rows]
    targets = list(settings.get("targets", []))
    images: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="tensorsmith-plots-") as tmp:
        if plot_dir or html_path:
            from .plots import write_plots

            try:
                images = write_plots(runs, targets, plot_dir or tmp)
            except ImportError as e:
                console.print(f"[yellow]no figures: {e}[/yellow]")
        if plot_dir:
            console.print(f"figures: {len(images)} PNG in {plot_dir}")
        if html_path:
            notes = [*(extra or {}).get("verdicts", []), *(f"failed: {f}" for f in failures(rows))]
            write_html(html_path, title, html_tables(rows, targets), images, notes, env)
            console.print(f"report: {html_path}")
    if json_path:
        write_json(to_json(rows, env, settings, extra), json_path)
        console.print(f"json: {json_path}")
