"""Reports: Markdown and a self-contained HTML page, as **pure functions of the records**.

``render_report(run_dir)`` reads ``record.json`` and writes ``report.md`` (with its plots as PNG files under
``report_files/``) and ``report.html``: the same Markdown rendered by a real CommonMark parser
(markdown-it-py, with tables), so the escaping of table cells and the emphasis of section texts are right,
with every plot embedded as a base64 PNG (no external resource).

Layout, for a reader who has 30 seconds: title, a table of contents (links to every section), then the
sections in the order of ``record.sections`` (a "Results at a glance" section, which
:func:`bbdefense.evaluation.report.add_glance_table` puts first, leads), then the sanity checks, and the
bookkeeping last (scalar metrics such as queries and seconds, environment, seeds, configuration). Every
metric stays in ``record.json``; the report does not repeat all of them in an "All metrics" table.

Section texts are Markdown written by the library; table cells, table titles and captions are data and are
escaped (a ``|`` in ``max |diff|`` cannot break a row, ``**`` in a value stays literal).
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

from .plots import plot_png
from .record import RunRecord, load_record

# backslash-escaped in data: every character that can start Markdown syntax inline, and ``_`` where it can
# (CommonMark never emphasises an intraword ``_``, so ``abstain_rate`` stays readable in the .md)
# (likewise ``]`` only where a link or image could close: ``[0.1, 0.9]`` stays as it is)
_MD_SPECIAL = re.compile(r"([\\`*<>|#]|\](?=[(\[])|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")
CHECKS, BOOKKEEPING, CONTENTS = "Sanity checks", "Bookkeeping", "Contents"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:  # NaN
            return "-"
        if v == int(v) and abs(v) < 1e6 and not (0 < abs(v) < 1):
            return f"{v:.1f}" if abs(v) < 100 else f"{int(v)}"
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def escape_md(text: Any) -> str:
    """``text`` as literal Markdown inline content (CommonMark backslash escapes; newlines become spaces)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _cell(v: Any) -> str:
    return escape_md(_fmt(v))


def slug(title: str, seen: dict[str, int] | None = None) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to ``-``; repeats get ``-1``, ``-2``."""
    s = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
    if seen is None:
        return s
    n = seen.get(s, 0)
    seen[s] = n + 1
    return s if n == 0 else f"{s}-{n}"


def _split_metrics(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    """The scalar top-level metrics (plain keys: queries, seconds, ...) for the bookkeeping table; dotted keys
    (per-part details) and structured values stay in record.json."""
    return [(k, v) for k, v in metrics.items() if not isinstance(v, (dict, list)) and "." not in k]


def _grouped(rec: RunRecord) -> list[tuple[str, str, list[dict[str, Any]], list[dict[str, Any]]]]:
    order: list[str] = [s["title"] for s in rec.sections]
    texts = {s["title"]: s.get("text", "") for s in rec.sections}
    for item in [*rec.tables, *rec.plots]:
        sec = item.get("section", "")
        if sec not in order:
            order.append(sec)
    return [(sec, texts.get(sec, ""), [t for t in rec.tables if t.get("section", "") == sec],
             [p for p in rec.plots if p.get("section", "") == sec]) for sec in order]


def _table_md(columns: list[Any], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(escape_md(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [_cell(v) for v in r][:len(columns)]
        cells += [""] * (len(columns) - len(cells))  # a short row still has every cell
        out.append("| " + " | ".join(cells) + " |")
    return out


def render_markdown(rec: RunRecord, plot_paths: list[str]) -> str:
    """Markdown for ``rec``; ``plot_paths[i]`` is the image file of ``rec.plots[i]``."""
    body: list[str] = []
    heads: list[str] = []
    plot_index = {id(p): i for i, p in enumerate(rec.plots)}
    for sec, text, tables, plots in _grouped(rec):
        if sec:
            body += [f"## {escape_md(sec)}", ""]
            heads.append(sec)
        if text:
            body += [text, ""]
        for t in tables:
            body += [f"### {escape_md(t['title'])}", "", *_table_md(t["columns"], t["rows"]), ""]
            if t.get("caption"):
                body += [f"*{escape_md(t['caption'])}*", ""]
        for p in plots:
            body += [f"![{escape_md(p['title'])}]({plot_paths[plot_index[id(p)]]})", ""]
    if rec.checks:
        failed = sum(1 for c in rec.checks if not c["passed"])
        body += [f"## {CHECKS}", "", f"{len(rec.checks) - failed} of {len(rec.checks)} passed.", "",
                 *_table_md(["check", "passed", "message"],
                            [[c["name"], c["passed"], c["message"]] for c in rec.checks]), ""]
        heads.append(CHECKS)
    body += [f"## {BOOKKEEPING}", ""]
    heads.append(BOOKKEEPING)
    head = _split_metrics(rec.metrics)
    if head:
        body += ["### Metrics", "", *_table_md(["metric", "value"], [list(kv) for kv in head]), "",
                 "*Every metric, also the per-part ones, is in record.json.*", ""]
    body += ["### Environment", "", *_table_md(["key", "value"], [[k, v] for k, v in rec.environment.items()]), ""]
    if rec.seeds:
        body += ["Seeds: " + escape_md(", ".join(f"{k}={v}" for k, v in rec.seeds.items())), ""]
    body += ["### Configuration", "", "```json", json.dumps(rec.config, indent=2, sort_keys=True), "```", ""]
    seen: dict[str, int] = {}
    toc = [f"- [{escape_md(h)}](#{slug(h, seen)})" for h in heads]
    top = [f"# {escape_md(rec.name)}", "",
           f"Run kind `{rec.kind}`, status **{escape_md(rec.status)}**, schema {rec.schema_version}.", "",
           f"**{CONTENTS}**", "", *toc, ""]
    return "\n".join(top + body)


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1040px;margin:2em auto;padding:0 1em;color:#222;"
        "line-height:1.45}table{border-collapse:collapse;margin:.5em 0 .4em;font-size:.9em}td,th{border:1px solid #ccc;"
        "padding:.25em .6em;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%}pre{background:#f6f6f6;padding:.6em;overflow:auto}h2{border-bottom:1px solid #ddd;"
        "padding-bottom:.2em;margin-top:1.6em}em{color:#555;font-size:.92em}")


def _markdown_it() -> Any:
    from markdown_it import MarkdownIt

    # CommonMark + GFM tables; raw HTML in the text is escaped, not passed through
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def _plain(inline: Any) -> str:
    return "".join(c.content for c in (inline.children or []) if c.type in ("text", "code_inline"))


def render_html(rec: RunRecord, pngs: list[bytes], plot_paths: list[str] | None = None) -> str:
    """A self-contained HTML page: :func:`render_markdown` rendered by markdown-it-py, headings given the
    ids the table of contents links to, plots as base64 PNG."""
    paths = plot_paths if plot_paths is not None else [f"report_files/plot_{i}.png" for i in range(len(pngs))]
    uris = {p: "data:image/png;base64," + base64.b64encode(b).decode() for p, b in zip(paths, pngs, strict=True)}
    md = _markdown_it()
    tokens = md.parse(render_markdown(rec, paths))
    seen: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.tag == "h2":
            tok.attrSet("id", slug(_plain(tokens[i + 1]), seen))
        if tok.type == "inline":
            for c in tok.children or []:
                if c.type == "image" and c.attrGet("src") in uris:
                    c.attrSet("src", uris[str(c.attrGet("src"))])
    page = md.renderer.render(tokens, md.options, {})
    return ("<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(rec.name)}</title><style>{_CSS}</style></head>\n<body>\n{page}</body></html>\n")


def render_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` (+ ``report_files/plot_*.png``) and ``report.html`` into ``run_dir``.

    A pure function of ``run_dir/record.json``: the same record gives the same files.
    """
    run_dir = Path(run_dir)
    rec = load_record(run_dir)
    pngs = [plot_png(p) for p in rec.plots]
    files = run_dir / "report_files"
    names: list[str] = []
    if pngs:
        files.mkdir(exist_ok=True)
    for old in files.glob("plot_*.png") if files.is_dir() else []:
        old.unlink()  # a re-render with fewer plots leaves no stale file behind
    for i, png in enumerate(pngs):
        name = f"report_files/plot_{i}.png"
        (run_dir / name).write_bytes(png)
        names.append(name)
    md = run_dir / "report.md"
    md.write_text(render_markdown(rec, names))
    page = run_dir / "report.html"
    page.write_text(render_html(rec, pngs, names))
    return md, page


__all__ = ["escape_md", "plot_png", "render_html", "render_markdown", "render_report", "slug"]
