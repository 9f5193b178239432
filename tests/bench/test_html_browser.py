"""The HTML report in headless Chromium: it loads, renders a page that is not blank, logs no console message."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from tensorsmith.bench.html_report import HtmlTable, write_html

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome"))
                 if p), None)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")


def _page(tmp_path: Path) -> Path:
    """A report page with a table, a failed row and one embedded figure."""
    figure = []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(3, 2))
        ax.bar(["a", "b"], [1.0, 2.0])
        fig.savefig(tmp_path / "bars.png")
        plt.close(fig)
        figure = [tmp_path / "bars.png"]
    except ImportError:
        pass
    table = HtmlTable("measured on this CPU", ["model", "configuration", "median ms"],
                      [["mlp", "numba fp32", "0.1"], ["mlp", "block-sparse", "FAILED"]], [False, True])
    page = tmp_path / "report.html"
    write_html(page, "tensorsmith bench", [table], figure, ["failed: mlp / block-sparse: cosine 0.5"],
               {"cpu": "test", "threads": 1})
    return page


def _load(page: Path, shot: Path) -> list[str]:
    """Load `page` in headless Chromium, screenshot it to `shot`; returns the console messages it logged."""
    assert CHROMIUM is not None
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", f"--user-data-dir={shot.parent / 'profile'}", f"--screenshot={shot}",
                           "--window-size=1000,800", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


def test_console_messages_are_caught(tmp_path: Path) -> None:
    page = tmp_path / "noisy.html"
    page.write_text('<!DOCTYPE html><html><body><script>console.error("broken-report")</script></body></html>')
    assert any("broken-report" in line for line in _load(page, tmp_path / "noisy.png"))


def test_report_renders_in_headless_chromium_without_console_messages(tmp_path: Path) -> None:
    image = pytest.importorskip("matplotlib.image", reason="reading the screenshot needs matplotlib")
    shot = tmp_path / "shot.png"
    assert _load(_page(tmp_path), shot) == []
    pixels = np.asarray(image.imread(shot))
    assert pixels.shape[0] >= 700 and pixels.shape[1] >= 900
    assert float(pixels[..., :3].std()) > 0.01  # text and table borders on the white page: not blank
