"""Helpers every `bench` subcommand shares: argument types and checks, target checks, the progress bar."""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Iterator
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


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (a count of repeats, rounds, threads, a size)."""
    return _int_at_least(text, 1)


def nonnegative_int(text: str) -> int:
    """An argparse type: an integer >= 0 (a warm-up count, or a thread count where 0 means the default)."""
    return _int_at_least(text, 0)


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (seconds, a tolerance)."""
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def positive_ints(text: str) -> list[int]:
    """An argparse type: a non-empty comma-separated list of integers >= 1 (sizes, thread counts)."""
    items = split_csv(text)
    if not items:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return [_int_at_least(x, 1, text) for x in items]


def floats(text: str) -> list[float]:
    """An argparse type: a comma-separated list of finite numbers, possibly empty."""
    return [_finite_float(x, text) for x in split_csv(text)]


def positive_floats(text: str) -> list[float]:
    """An argparse type: a comma-separated list of finite numbers > 0, possibly empty."""
    values = floats(text)
    bad = [x for x, v in zip(split_csv(text), values) if v <= 0]
    if bad:
        raise argparse.ArgumentTypeError(f"expected numbers > 0, got {bad[0]!r} in {text!r}")
    return values


def _int_at_least(text: str, low: int, whole: str | None = None) -> int:
    """`text` as an int >= `low`, else an ArgumentTypeError naming it (and the list `whole` it came from)."""
    value: int | None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low:
        where = f" in {whole!r}" if whole is not None else ""
        raise argparse.ArgumentTypeError(f"expected {'an integer' if whole is None else 'integers'} >= {low}, "
                                         f"got {text!r}{where}")
    return value


def _finite_float(text: str, whole: str | None = None) -> float:
    """`text` as a finite float, else an ArgumentTypeError naming it (and the list `whole` it came from)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        where = f" in {whole!r}" if whole is not None else ""
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}{where}")
    return value


def reject_unknown(parser: argparse.ArgumentParser, flag: str, names: Iterable[str], known: Iterable[str],
                   what: str = "name") -> None:
    """Exit through `parser.error` (status 2) when one of `names` is not in `known`, naming it and the known ones."""
    choices = list(known)
    bad = [n for n in names if n not in choices]
    if bad:
        parser.error(f"argument {flag}: unknown {what}{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))}; "
                     f"known: {', '.join(choices) or 'none'}")


def check_models(parser: argparse.ArgumentParser, flag: str, names: Iterable[str], extra: Iterable[str] = (),
                 unavailable_ok: bool = False) -> None:
    """Exit through `parser.error` on a name neither in the zoo nor `extra`, or on a zoo model not loadable here."""
    from .models import list_models

    wanted, zoo = list(names), list_models()
    reject_unknown(parser, flag, wanted, dict.fromkeys([*extra, *(m.name for m in zoo)]), "model")
    why = {m.name: m.reason for m in zoo if not m.available}
    missing = [n for n in wanted if n in why]
    if missing and not unavailable_ok:
        parser.error(f"argument {flag}: model {missing[0]!r} is not available here: {why[missing[0]] or 'unknown'}")


def check_threads(parser: argparse.ArgumentParser, flag: str, counts: Iterable[int]) -> None:
    """Exit through `parser.error` when a thread count is above the most Numba can run (NUMBA_NUM_THREADS)."""
    import numba

    most = numba.config.NUMBA_NUM_THREADS
    over = [c for c in counts if c > most]
    if over:
        parser.error(f"argument {flag}: {over[0]} threads is more than Numba can run here ({most}, "
                     f"NUMBA_NUM_THREADS)")


def check_int8_paths(parser: argparse.ArgumentParser, flag: str, paths: Iterable[str]) -> None:
    """Exit through `parser.error` when one of `paths` is no int8 GEMM path, or one this host cannot execute (why)."""
    from ..backends.numba.cpu_features import INT8_PATH_FEATURES, int8_paths, unavailable_int8_paths

    wanted = list(paths)
    reject_unknown(parser, flag, wanted, INT8_PATH_FEATURES, "int8 path")
    lacking = [p for p in wanted if p not in int8_paths()]
    if lacking:
        why = unavailable_int8_paths().get(lacking[0], "unavailable")
        parser.error(f"argument {flag}: this host cannot execute the int8 path {lacking[0]!r} ({why}); paths it "
                     f"executes: {', '.join(int8_paths()) or 'none'}")


def runtime_backends() -> list[str]:
    """The names `runtime.compile` accepts as a backend here (optional ones whose packages are installed)."""
    from .. import runtime

    runtime.load_optional_backends()
    return sorted(runtime.BACKENDS)


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
