"""Pass reports in one shape: a short summary line per pass, counters, and the full text on demand."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import PassRecord

SUMMARY_WIDTH = 96
"""Longest summary a report table shows on a pass's row; the full text stays in `PassRecord.report`."""


def summarize(report: str, width: int = SUMMARY_WIDTH) -> str:
    """The first clause of `report` that fits `width` characters: its first line, cut at '; ' then ': '."""
    text = report.strip().splitlines()[0] if report.strip() else ""
    for sep in ("; ", ": "):
        if len(text) > width and sep in text:
            text = text.split(sep, 1)[0]
    return text if len(text) <= width else text[: width - 3] + "..."


def detail_lines(report: str) -> list[str]:
    """The full report as short lines: one per line of the text, long lines split at '; '."""
    out: list[str] = []
    for line in report.strip().splitlines():
        out += [part.strip() for part in line.split("; ")] if len(line) > SUMMARY_WIDTH else [line.rstrip()]
    return [line for line in out if line]


def format_records(records: list[PassRecord], details: bool = False) -> str:
    """A table with a row per pass (changed, ms, summary); `details` adds each pass's full report beneath it."""
    width = max([len(r.name) for r in records] + [4])
    lines = [f"{'pass':<{width}}  {'changed':<7} {'ms':>9}  summary"]
    for r in records:
        lines.append(f"{r.name:<{width}}  {'yes' if r.changed else 'no':<7} {r.seconds * 1e3:9.2f}  {r.summary}")
        if details:
            lines += [f"{'':<{width}}    {line}" for line in detail_lines(r.report)]
            shown = ", ".join(f"{k}={_number(v)}" for k, v in r.stats.items())
            if shown:
                lines.append(f"{'':<{width}}    stats: {shown}")
    return "\n".join(lines)


def _number(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
