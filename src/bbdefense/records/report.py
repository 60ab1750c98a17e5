"""Reports: Markdown and a self-contained HTML page, as **pure functions of the records**.

``render_report(run_dir)`` reads ``record.json`` and writes ``report.md`` (with its plots as PNG
files under ``report_files/``) and ``report.html`` (plots embedded as base64 PNG, no external
resource). Tables and plots are grouped by their ``section`` key, in the order given by
``record.sections`` and then by first appearance.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from .record import RunRecord, load_record


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v == int(v) and abs(v) < 1e6 and not (0 < abs(v) < 1):
            return f"{v:.1f}" if abs(v) < 100 else f"{int(v)}"
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def plot_png(spec: dict[str, Any]) -> bytes:
    """Render one plot spec to PNG bytes with matplotlib (Agg; deterministic metadata)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.8), dpi=100)
    kind = spec.get("kind", "line")
    series = spec.get("series", [])
    if kind == "bar":
        n = max(len(series), 1)
        width = 0.8 / n
        labels = [str(x) for x in (series[0]["x"] if series else [])]
        for i, s in enumerate(series):
            pos = [j + (i - (n - 1) / 2) * width for j in range(len(s["x"]))]
            ax.bar(pos, [0 if v is None else v for v in s["y"]], width=width, label=s.get("label"))
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    else:
        for s in series:
            ax.plot(s["x"], [float("nan") if v is None else v for v in s["y"]], marker=s.get("marker", "o"),
                    markersize=3, label=s.get("label"), drawstyle=s.get("drawstyle", "default"))
        ax.set_xscale(spec.get("xscale", "linear"))
    ax.set_title(spec.get("title", ""), fontsize=10)
    ax.set_xlabel(spec.get("xlabel", ""))
    ax.set_ylabel(spec.get("ylabel", ""))
    ax.grid(alpha=0.3)
    if any(s.get("label") for s in series):
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _split_metrics(metrics: dict[str, Any]) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Scalar metrics split into the headline ones (plain keys) and per-part details (dotted keys,
    e.g. ``attacks.robust_accuracy.square``), which go to an "All metrics" table at the end."""
    items = [(k, v) for k, v in metrics.items() if not isinstance(v, (dict, list))]
    return [kv for kv in items if "." not in kv[0]], [kv for kv in items if "." in kv[0]]


def _grouped(rec: RunRecord) -> list[tuple[str, str, list[dict[str, Any]], list[dict[str, Any]]]]:
    order: list[str] = [s["title"] for s in rec.sections]
    texts = {s["title"]: s.get("text", "") for s in rec.sections}
    for item in [*rec.tables, *rec.plots]:
        sec = item.get("section", "")
        if sec not in order:
            order.append(sec)
    return [(sec, texts.get(sec, ""), [t for t in rec.tables if t.get("section", "") == sec],
             [p for p in rec.plots if p.get("section", "") == sec]) for sec in order]


def render_markdown(rec: RunRecord, plot_paths: list[str]) -> str:
    """Markdown for ``rec``; ``plot_paths[i]`` is the image file of ``rec.plots[i]``."""
    lines = [f"# {rec.name}", "", f"Run kind `{rec.kind}`, status **{rec.status}**, schema {rec.schema_version}.", ""]
    head, rest = _split_metrics(rec.metrics)
    if head:
        lines += ["## Summary", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in head]
        lines.append("")
    plot_index = {id(p): i for i, p in enumerate(rec.plots)}
    for sec, text, tables, plots in _grouped(rec):
        if sec:
            lines += [f"## {sec}", ""]
        if text:
            lines += [text, ""]
        for t in tables:
            lines += [f"### {t['title']}", ""]
            lines.append("| " + " | ".join(map(str, t["columns"])) + " |")
            lines.append("|" + "---|" * len(t["columns"]))
            lines += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in t["rows"]]
            if t.get("caption"):
                lines += ["", f"_{t['caption']}_"]
            lines.append("")
        for p in plots:
            lines += [f"![{p['title']}]({plot_paths[plot_index[id(p)]]})", ""]
    if rest:
        lines += ["## All metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in rest]
        lines.append("")
    if rec.checks:
        lines += ["## Sanity checks", "", "| check | passed | message |", "|---|---|---|"]
        lines += [f"| {c['name']} | {_fmt(c['passed'])} | {c['message']} |" for c in rec.checks]
        lines.append("")
    lines += ["## Environment", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rec.environment.items()]
    if rec.seeds:
        lines += ["", "Seeds: " + ", ".join(f"{k}={v}" for k, v in rec.seeds.items())]
    lines += ["", "Configuration:", "", "```json", _json(rec.config), "```", ""]
    return "\n".join(lines)


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2, sort_keys=True)


def render_html(rec: RunRecord, pngs: list[bytes]) -> str:
    """A self-contained HTML page (inline CSS, plots as base64 PNG)."""
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'>", f"<title>{e(rec.name)}</title>",
           "<style>body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}"
           "table{border-collapse:collapse;margin:.5em 0 1.2em}td,th{border:1px solid #ccc;padding:.25em .6em;"
           "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
           "img{max-width:100%}.fail{color:#b00}.ok{color:#070}pre{background:#f6f6f6;padding:.6em;overflow:auto}"
           "caption{caption-side:bottom;font-style:italic;font-size:.9em}</style></head><body>",
           f"<h1>{e(rec.name)}</h1><p>Run kind <code>{e(rec.kind)}</code>, status <b>{e(rec.status)}</b>.</p>"]
    head, rest = _split_metrics(rec.metrics)
    if head:
        out.append("<h2>Summary</h2><table><tr><th>metric</th><th>value</th></tr>")
        out += [f"<tr><td>{e(k)}</td><td>{e(_fmt(v))}</td></tr>" for k, v in head]
        out.append("</table>")
    plot_index = {id(p): i for i, p in enumerate(rec.plots)}
    for sec, text, tables, plots in _grouped(rec):
        if sec:
            out.append(f"<h2>{e(sec)}</h2>")
        if text:
            out.append(f"<p>{e(text)}</p>")
        for t in tables:
            out.append(f"<h3>{e(t['title'])}</h3><table>")
            if t.get("caption"):
                out.append(f"<caption>{e(t['caption'])}</caption>")
            out.append("<tr>" + "".join(f"<th>{e(str(c))}</th>" for c in t["columns"]) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{e(_fmt(v))}</td>" for v in r) + "</tr>" for r in t["rows"]]
            out.append("</table>")
        for p in plots:
            b64 = base64.b64encode(pngs[plot_index[id(p)]]).decode()
            out.append(f"<figure><img alt='{e(p['title'])}' src='data:image/png;base64,{b64}'></figure>")
    if rest:
        out.append("<h2>All metrics</h2><table><tr><th>metric</th><th>value</th></tr>")
        out += [f"<tr><td>{e(k)}</td><td>{e(_fmt(v))}</td></tr>" for k, v in rest]
        out.append("</table>")
    if rec.checks:
        out.append("<h2>Sanity checks</h2><table><tr><th>check</th><th>passed</th><th>message</th></tr>")
        out += [f"<tr><td>{e(c['name'])}</td><td class='{'ok' if c['passed'] else 'fail'}'>{_fmt(c['passed'])}</td>"
                f"<td>{e(c['message'])}</td></tr>" for c in rec.checks]
        out.append("</table>")
    out.append("<h2>Environment</h2><table>")
    out += [f"<tr><td>{e(k)}</td><td>{e(str(v))}</td></tr>" for k, v in rec.environment.items()]
    out.append(f"</table><h3>Configuration</h3><pre>{e(_json(rec.config))}</pre></body></html>")
    return "\n".join(out)


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
    for i, png in enumerate(pngs):
        name = f"report_files/plot_{i}.png"
        (run_dir / name).write_bytes(png)
        names.append(name)
    md = run_dir / "report.md"
    md.write_text(render_markdown(rec, names))
    page = run_dir / "report.html"
    page.write_text(render_html(rec, pngs))
    return md, page
