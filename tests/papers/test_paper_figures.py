"""Each suite's paper figures are data copied from its paper: well formed, citing a table of the paper."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest

from bbdefense.experiments.papers import PAPERS, PaperSuite, comparison_table

PAPER_FILES = {"rfd": "randomized-feature-defense.md", "unig": "unig-unifying-gradients.md",
               "ducd": "ducd-privacy-preserving-universal-defense.md",
               "zo-ae-ds": "zo-ae-ds-robustify-black-box-models.md",
               "irs-net": "irs-net-improved-randomized-smoothing.md"}
PAPERS_DIR = Path(os.environ.get("BBDEFENSE_PAPERS_DIR", "/work/shared/papers"))


def test_the_five_suites_are_registered() -> None:
    assert sorted(PAPERS) == ["ducd", "irs-net", "rfd", "unig", "zo-ae-ds"]


@pytest.mark.parametrize("name", sorted(PAPER_FILES))
def test_figures_are_well_formed(name: str) -> None:
    suite: PaperSuite = PAPERS[name]
    assert suite.name == name and suite.title and suite.citation and suite.figures and suite.tables
    keys = set()
    for f in suite.figures:
        assert re.fullmatch(r"(Table|TABLE) [0-9IVX]+", f.table), f
        assert f.table in suite.tables, f"{name}: {f.table} is not among the tables the suite reproduces"
        assert isinstance(f.value, float) and math.isfinite(f.value), f
        assert f.method and f.metric and f.setting and f.ours and f.unit, f
        if f.unit == "%":
            assert 0.0 <= f.value <= 100.0, f
        keys.add((f.table, f.method, f.metric))
    assert len(keys) == len(suite.figures), f"{name}: a (table, method, metric) is given twice"


@pytest.mark.parametrize("name", sorted(PAPER_FILES))
def test_figures_occur_in_their_table_of_the_paper(name: str) -> None:
    """Each number is in the paper's text, after the caption or the body of the table it cites."""
    path = PAPERS_DIR / PAPER_FILES[name]
    if not path.is_file():
        pytest.skip(f"{path} not available (set BBDEFENSE_PAPERS_DIR)")
    text = path.read_text()
    for f in PAPERS[name].figures:
        assert f.table in text, f"{name}: {f.table} is not in the paper"
        shown = repr(f.value)  # 81.9 also matches the paper's "81.90"
        assert re.search(rf"(?<![1-9.]){re.escape(shown)}", text), f"{name}: {f.value} ({f}) is not in the paper"


def test_comparison_table_puts_paper_beside_ours() -> None:
    suite = PAPERS["unig"]
    t = comparison_table(suite, {"unig|square@min": 0.5, "unig|logit_diff": 3.0}, {"Table 1": "MNIST"})
    by = {(r[1], r[2]): r for r in t["rows"]}
    assert t["columns"][3:5] == ["paper", "ours"]
    assert by[("UniG", "Square@100")][3:6] == [81.90, 50.0, "%"]
    assert by[("UniG", "logit diff")][3:5] == [1.09, 3.0]
    assert by[("Vanilla", "Square@2500")][4] is None  # not run: the cell stays empty
    assert all(r[7] == "MNIST" for r in t["rows"])
