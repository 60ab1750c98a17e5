"""`bbdefense privacy` end to end on a tiny configuration (plumbing: records, report, exit codes)."""

from __future__ import annotations

import json

import torch

from bbdefense.cli import main
from bbdefense.models import CheckpointMeta, save_checkpoint
from bbdefense.models.zoo import build_model


def test_privacy_cli_writes_rows_and_report(tmp_path, capsys) -> None:
    kw = {"num_classes": 10, "in_channels": 1, "image_size": 28, "mean": [0.1307], "std": [0.3081]}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = build_model("smallcnn", **kw)
    ck = save_checkpoint(tmp_path / "t", m, CheckpointMeta(arch="smallcnn", arch_kwargs=kw, dataset="mnist5k",
                                                           num_classes=10, input_shape=[1, 28, 28]))
    out = tmp_path / "run"
    code = main(["privacy", "--model", str(ck.with_suffix("")), "-n", "20", "--sources", "disjoint", "--budget", "100",
                 "--epochs", "1", "--n-smooth", "4", "--overfit-n", "20", "--overfit-epochs", "2", "--no-shadow",
                 "--n-boot", "20", "--out", str(out), "--no-progress"])
    cap = capsys.readouterr()
    assert code in (0, None), cap.err
    rows = [json.loads(s) for s in (out / "rows" / "privacy.jsonl").read_text().splitlines()]
    models = {r["model"] for r in rows}
    assert models == {"target", "target+RS", "DUCD-disjoint", "DUCD-disjoint+RS", "overfit (control)", "overfit+RS"}
    assert {r["queries"] for r in rows if r["model"] == "target+RS"} == {40 * 4}  # 20+20 images x 4 draws
    assert {r["queries"] for r in rows if r["model"] == "DUCD-disjoint"} == {100 + 40}
    assert (out / "report.md").is_file() and "DUCD Fig. 9" in (out / "report.md").read_text()
    assert "gap (label-only)" in cap.out


def test_privacy_cli_bad_source_is_one_line_error(tmp_path, capsys) -> None:
    code = main(["privacy", "--model", str(tmp_path / "missing"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "missing" in err and "Traceback" not in err
