"""Run records: streamed rows, resume without loss or duplication, atomic record, pure reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from bbdefense import ConfigError
from bbdefense.records import RowWriter, RunDir, line_plot, load_record, read_rows, render_report, table


def test_rowwriter_resume_skips_done_and_refuses_duplicates(tmp_path):
    p = tmp_path / "rows.jsonl"
    with RowWriter(p) as w:
        for i in range(3):
            assert w.write({"idx": i, "v": i * 2})
    with RowWriter(p) as w:
        assert w.done == {0, 1, 2}
        assert not w.write({"idx": 1, "v": 99})
        w.write({"idx": 3, "v": 6})
    assert [r["idx"] for r in read_rows(p)] == [0, 1, 2, 3]


def test_rowwriter_truncates_torn_last_line(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text('{"idx": 0}\n{"idx": 1}\n{"idx": 2, "v"')
    w = RowWriter(p)
    assert w.done == {0, 1}
    w.write({"idx": 2, "v": 1})
    w.close()
    assert [r["idx"] for r in read_rows(p)] == [0, 1, 2]


def test_kill_during_run_then_resume_loses_and_duplicates_nothing(tmp_path):
    """A real kill -9 of a process streaming rows, then a resumed run completing the set."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.path.abspath("src")!r})
        from bbdefense.records import RunDir
        run = RunDir({str(tmp_path / "run")!r}, kind="t", config={{"n": 200}})
        w = run.rows("ex")
        for i in range(200):
            if i in w.done:
                continue
            w.write({{"idx": i, "sq": i * i}})
            if i == 40 and sys.argv[1] == "kill":
                print("ready", flush=True)
                time.sleep(60)
        run.finish()
    """)
    f = tmp_path / "job.py"
    f.write_text(script)
    proc = subprocess.Popen([sys.executable, str(f), "kill"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rows = list(read_rows(tmp_path / "run" / "rows" / "ex.jsonl"))
    assert [r["idx"] for r in rows] == list(range(41))
    subprocess.run([sys.executable, str(f), "resume"], check=True)
    rows = list(read_rows(tmp_path / "run" / "rows" / "ex.jsonl"))
    assert [r["idx"] for r in rows] == list(range(200))
    assert all(r["sq"] == r["idx"] ** 2 for r in rows)
    assert load_record(tmp_path / "run").status == "complete"


def test_rundir_refuses_resume_with_other_config(tmp_path):
    RunDir(tmp_path, kind="attack", config={"eps": 0.1})
    with pytest.raises(ConfigError, match=r"cannot resume .* another config"):
        RunDir(tmp_path, kind="attack", config={"eps": 0.2})
    r = RunDir(tmp_path, kind="attack", config={"eps": 0.2}, resume=False)
    assert not r.resumed


def test_record_numbers_stay_numbers(tmp_path):
    run = RunDir(tmp_path, kind="k", config={"eps": 8 / 255})
    run.set_metrics(acc=0.5, bad=float("nan"))
    d = json.loads((tmp_path / "record.json").read_text())
    assert d["schema_version"] == 1 and d["config"]["eps"] == pytest.approx(8 / 255)
    assert d["metrics"] == {"acc": 0.5, "bad": None}
    assert {"python", "torch"} <= set(d["environment"])


def test_report_is_a_pure_function_of_the_record(tmp_path):
    run = RunDir(tmp_path, kind="demo", name="Demo", config={"a": 1})
    run.record.sections.append({"title": "S", "text": "hello"})
    run.add_table({**table("T", ["x", "y"], [[1, 0.5], [2, 0.25]], "cap"), "section": "S"})
    run.add_plot({**line_plot("P", [{"label": "l", "x": [1, 2], "y": [0.5, 0.25]}], xlabel="x", ylabel="y"),
                  "section": "S"})
    run.add_check("abstain_rate", True, "2% abstained")
    run.finish()
    md1, html1 = render_report(tmp_path)
    a, b = md1.read_text(), html1.read_text()
    png = (tmp_path / "report_files" / "plot_0.png").read_bytes()
    md2, html2 = render_report(tmp_path)
    assert md2.read_text() == a and html2.read_text() == b
    assert (tmp_path / "report_files" / "plot_0.png").read_bytes() == png
    assert "## S" in a and "| 1 | 0.5 |" in a and "![P](report_files/plot_0.png)" in a and "abstain_rate" in a
    body = b.split("<body>")[1].split("Environment")[0]
    assert "data:image/png;base64," in b and "<h2 id=\"s\">S</h2>" in b and "http" not in body
