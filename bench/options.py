"""Helpers every `bench` subcommand shares: list arguments, target checks, the progress bar."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

DEFAULT_MODELS = ("mlp", "cnn", "transformer-block")
"""What plain `bench` runs: the built-in models, which need no optional package."""

DEFAULT_TARGETS = ("cpu-host", "gpu-a100", "tpu-v4", "npu-edge", "fpga-u250")
"""What plain `bench` estimates: this CPU (to compare with the measurement) and one target per family."""


def split_csv(csv: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated string."""
    return [x.strip() for x in csv.split(",") if x.strip()]


def unknown_targets(targets: list[str]) -> str | None:
    """None when every target loads, else one message naming those that do not."""
    from ..backends.cost import TargetError, load_target

    bad = []
    for t in targets:
        try:
            load_target(t)
        except (TargetError, OSError) as e:
            bad.append(f"{t}: {e}")
    return "; ".join(bad) or None


@contextmanager
def progress_bar(console: Console, total: int) -> Iterator[Any]:
    """A rich progress bar on a terminal (nothing elsewhere); yields `advance(label)`: one more step done."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal)
    with bar:
        task = bar.add_task("starting", total=total)

        def advance(label: str) -> None:
            bar.update(task, advance=1, description=label)

        yield advance
