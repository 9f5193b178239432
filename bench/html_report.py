"""`bench --html`: one self-contained page with the tables and the figures embedded as base64 PNG."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0}td.l,th.l{text-align:left}tr.fail td{color:#b00}
img{max-width:900px;display:block;margin:1em 0}pre{background:#f7f7f7;padding:1em;font-size:12px}"""


@dataclass
class HtmlTable:
    """A table of the report: a title, column names and rows of cell text; `failed` marks rows shown in red."""

    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    failed: Sequence[bool] = ()


def _table(t: HtmlTable) -> str:
    head = "".join(f'<th class="{"l" if i < 2 else ""}">{html.escape(c)}</th>' for i, c in enumerate(t.header))
    body = []
    for j, row in enumerate(t.rows):
        cls = ' class="fail"' if j < len(t.failed) and t.failed[j] else ""
        cells = "".join(f'<td class="{"l" if i < 2 else ""}">{html.escape(str(c))}</td>' for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return (f"<h2>{html.escape(t.title)}</h2>\n<table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">' \
           f"<figcaption>{html.escape(path.stem)}</figcaption></figure>"


def render_html(title: str, tables: Sequence[HtmlTable], images: Sequence[Path], notes: Sequence[str],
                environment: dict[str, Any]) -> str:
    """The page: title, notes (failures first), tables, figures, and the environment as JSON."""
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    if notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    parts += [_table(t) for t in tables]
    if images:
        parts.append("<h2>figures</h2>")
        parts += [_image(p) for p in images]
    parts.append(f"<h2>environment</h2><pre>{html.escape(json.dumps(environment, indent=2))}</pre></body></html>")
    return "\n".join(parts)


def write_html(path: str | Path, title: str, tables: Sequence[HtmlTable], images: Sequence[Path],
               notes: Sequence[str], environment: dict[str, Any]) -> None:
    """Write the page of `render_html` to `path`."""
    Path(path).write_text(render_html(title, tables, images, notes, environment), encoding="utf-8")
