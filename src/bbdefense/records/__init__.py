"""Run records (JSON + streamed JSONL rows with resume) and reports rendered from them."""

from .record import SCHEMA_VERSION, RowWriter, RunDir, RunRecord, line_plot, load_record, read_rows, table
from .report import render_html, render_markdown, render_report

__all__ = ["SCHEMA_VERSION", "RowWriter", "RunDir", "RunRecord", "line_plot", "load_record", "read_rows",
           "render_html", "render_markdown", "render_report", "table"]
