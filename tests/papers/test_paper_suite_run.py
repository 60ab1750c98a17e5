"""One suite end to end at a tiny scale (``unig``, on a 1-epoch target), resume included; and every
``--quick`` suite through the CLI (slow)."""

from __future__ import annotations

import json

import pytest

from bbdefense.experiments.papers import run_paper, unig
from bbdefense.experiments.papers.owner import OwnerScale


@pytest.fixture
def tiny_unig(monkeypatch, trained_smallcnn, mnist_splits):
    from bbdefense.models import load_checkpoint

    module, meta = load_checkpoint(trained_smallcnn[0])
    monkeypatch.setattr(unig, "QUICK", OwnerScale(n=4, budgets=(10, 20), eot_m=2, eot_budget=20, n_clean=20,
                                                  clean_passes=1))
    monkeypatch.setattr(unig, "demo_target", lambda cache_dir, on_event=None: (module, meta, mnist_splits))
    calls: list[str] = []
    from bbdefense.evaluation import owner

    real = owner.run_attack

    def counted(*a, **k):
        calls.append(k.get("defense_name", "?"))
        return real(*a, **k)

    monkeypatch.setattr(owner, "run_attack", counted)
    return calls


def _rows(path) -> list[dict]:
    return [json.loads(ln) for ln in (path / "rows" / "owner_eval.jsonl").read_text().splitlines()]


def test_unig_suite_end_to_end_and_resume(tmp_path, tiny_unig) -> None:
    out = tmp_path / "paper-unig"
    run_paper("unig", out, quick=True)
    rec = json.loads((out / "record.json").read_text())
    assert rec["status"] == "complete" and rec["kind"] == "paper"
    # undefended: Square@10, @20; UniG (randomized): the same and EOT-2 Square at 20 queries
    assert len(tiny_unig) == 5
    rows = _rows(out)
    assert sorted(r["key"] for r in rows if r["attack"] != "clean") == sorted(
        ["undefended|square|10", "undefended|square|20", "unig{delta=0.2,lr=1}|square|10",
         "unig{delta=0.2,lr=1}|square|20", "unig{delta=0.2,lr=1}|eot2-square|20"])
    comp = rec["tables"][[t["title"] for t in rec["tables"]].index(
        "UniG: Unifying Gradients: the paper's figures beside ours")]
    cells = {(r[1], r[2]): r for r in comp["rows"]}
    robust = {r["key"]: r.get("robust_accuracy") for r in rows}
    assert cells[("UniG", "Square@100")][3] == 81.90
    assert cells[("UniG", "Square@100")][4] == pytest.approx(100 * robust["unig{delta=0.2,lr=1}|square|10"])
    assert cells[("Vanilla", "Square@2500")][4] == pytest.approx(100 * robust["undefended|square|20"])
    assert "4 test images" in cells[("UniG", "Square@100")][7] and "20 (paper 2500)" in cells[("UniG", "Square@100")][7]
    md = (out / "report.md").read_text()
    assert md.index("## Paper vs ours") < md.index("## UniG Table 1 layout")
    assert "| Table 1 | UniG | Square@100 | 81.9 |" in md
    # resume: nothing is attacked again, no row is duplicated, the same figures come back
    before = (out / "rows" / "owner_eval.jsonl").read_text()
    run2 = run_paper("unig", out, quick=True)
    assert run2.resumed and len(tiny_unig) == 5
    assert (out / "rows" / "owner_eval.jsonl").read_text() == before
    assert json.loads((out / "record.json").read_text())["tables"][-1]["rows"] == comp["rows"]


def test_interrupted_suite_resumes_where_it_stopped(tmp_path, tiny_unig, monkeypatch) -> None:
    from bbdefense.evaluation import owner

    counted = owner.run_attack

    def dies_on_eot(*a, **k):
        if k.get("eot_m"):
            raise KeyboardInterrupt
        return counted(*a, **k)

    monkeypatch.setattr(owner, "run_attack", dies_on_eot)
    with pytest.raises(KeyboardInterrupt):
        run_paper("unig", tmp_path / "p", quick=True)
    assert len(tiny_unig) == 4 and len([r for r in _rows(tmp_path / "p") if r["attack"] != "clean"]) == 4
    monkeypatch.setattr(owner, "run_attack", counted)
    run_paper("unig", tmp_path / "p", quick=True)
    assert len(tiny_unig) == 5  # only the EOT run was left


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rfd", "unig", "ducd", "zo-ae-ds", "irs-net"])
def test_every_quick_suite_runs(tmp_path, name: str) -> None:
    from bbdefense.cli import main

    assert main(["paper", name, "--quick", "--out", str(tmp_path / name), "--no-progress"]) == 0
    rec = json.loads((tmp_path / name / "record.json").read_text())
    assert rec["status"] == "complete"
    comp = next(t for t in rec["tables"] if t["title"].endswith("the paper's figures beside ours"))
    assert any(r[4] is not None for r in comp["rows"])  # ours is beside the paper somewhere
