"""The HTML report as a browser sees it: every image loads, Markdown is rendered (never shown literally), tables
are well formed, the table of contents resolves, the at-a-glance table leads and bookkeeping comes last.

With headless Chromium on the PATH the page is also screenshotted (console errors fail the test); without it
that part is skipped with the reason and the HTML is checked by parsing alone."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bbdefense.evaluation.report import GLANCE, add_glance_table, glance_accuracy, glance_value
from bbdefense.records import RunDir, line_plot, render_report, table
from bbdefense.records.plots import plot_png, series_style


class PageParser(HTMLParser):
    """Collects what the checks need: image sources, ids, links, table shapes, text outside code."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.tables: list[list[int]] = []  # per table, the cell count of each row
        self.text: list[str] = []
        self.headings: list[str] = []
        self._code = 0
        self._h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "img":
            self.imgs.append(str(a.get("src")))
        elif tag == "a" and a.get("href"):
            self.links.append(str(a["href"]))
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append(0)
        elif tag in ("td", "th"):
            self.tables[-1][-1] += 1
        elif tag in ("code", "pre"):
            self._code += 1
        elif tag == "h2":
            self._h2 = True
            self.headings.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("code", "pre"):
            self._code -= 1
        elif tag == "h2":
            self._h2 = False

    def handle_data(self, data: str) -> None:
        if self._h2:
            self.headings[-1] += data
        if not self._code:
            self.text.append(data)


def _record(path: Path) -> Path:
    run = RunDir(path, kind="demo", name="A report", config={"a": 1})
    run.record.sections.append({"title": "Privacy", "text": "Surrogates from **disjoint** data; `n_smooth` draws."})
    run.add_table({**table("Serve check", ["quantity", "max |diff|"], [["probs", 0.0], ["a|b **c**", "`x`"]],
                           "max |diff| over 200 images"), "section": "Privacy"})
    run.add_plot({**line_plot("Curves", [{"label": f"s{i}", "x": [0, 1, 2], "y": [0.9, 0.8, 0.7]} for i in range(3)],
                              xlabel="radius", ylabel="certified accuracy"), "section": "Privacy"})
    run.add_check("abstain_rate", False, "60% abstained")
    run.set_metrics(target_queries=123, seconds_total=4.5)
    glance_accuracy(run, "target", "clean accuracy", 19, 20)
    glance_value(run, "target", "MIA AUC, strongest attack", 0.61, 0.5, 0.7, n=100, note="loss")
    add_glance_table(run)
    run.finish()
    render_report(path)
    return path / "report.html"


def test_html_report_renders_markdown_and_resolves_everything(tmp_path):
    page = _record(tmp_path)
    p = PageParser()
    p.feed(page.read_text())
    assert p.imgs and all(s.startswith("data:image/png;base64,") or (tmp_path / s).is_file() for s in p.imgs)
    text = " ".join(p.text)
    prose = text.replace("a|b **c**", "").replace("`x`", "")  # without the two cells whose data has them
    assert "**" not in prose and "`" not in prose  # emphasis and code of section texts rendered, not shown
    assert "<strong>disjoint</strong>" in page.read_text()
    assert "`x`" in text and "a|b **c**" in text  # cell data shown literally, its pipe did not split the row
    assert p.tables and all(len(set(rows)) == 1 for rows in p.tables)  # every row has the header's cell count
    anchors = [h[1:] for h in p.links if h.startswith("#")]
    assert anchors and all(a in p.ids for a in anchors)
    assert p.headings[0] == GLANCE and p.headings[-1] == "Bookkeeping"
    assert "0.950 [0.751, 0.999] n=20" in text  # the Clopper-Pearson interval of 19/20
    assert "0.610 [0.500, 0.700] n=100 (loss)" in text


def test_markdown_report_keeps_cells_escaped(tmp_path):
    _record(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| a\\|b \\*\\*c\\*\\* | \\`x\\` |" in md and "- [Results at a glance](#results-at-a-glance)" in md


def test_plots_fix_accuracy_axes_and_give_every_series_its_own_style():
    import matplotlib

    matplotlib.use("Agg")
    styles = {(series_style(i)["linestyle"], series_style(i)["marker"]) for i in range(8)}
    assert len(styles) == 8
    png = plot_png(line_plot("P", [{"label": "a", "x": [0, 1], "y": [0.9, 0.95]}], xlabel="r",
                             ylabel="certified accuracy"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_page_in_headless_chromium(tmp_path):
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if exe is None:
        pytest.skip("no headless Chromium on this machine (chromium, chromium-browser, google-chrome): the page is "
                    "checked by HTML parsing in test_html_report_renders_markdown_and_resolves_everything")
    page = _record(tmp_path)
    shot = tmp_path / "shot.png"
    out = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                          f"--screenshot={shot}", "--window-size=1100,2400", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert "Uncaught" not in out.stderr and "Failed to load resource" not in out.stderr
