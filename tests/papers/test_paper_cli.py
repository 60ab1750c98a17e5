"""``bbdefense paper --list`` and the command's input checks."""

from __future__ import annotations

from bbdefense.cli import main


def test_list_names_every_suite_with_its_paper_and_tables(capsys) -> None:
    assert main(["paper", "--list"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].startswith("name | paper | tables reproduced | quick time | full time")
    names = [ln.split(" | ")[0] for ln in lines[1:]]
    assert names == ["ducd", "irs-net", "rfd", "unig", "zo-ae-ds"]
    assert "Table 2, Table 6, Table 7" in out and "TABLE II, TABLE IV" in out


def test_unknown_suite_and_missing_name_are_input_errors(capsys, tmp_path) -> None:
    assert main(["paper", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "unknown paper suite 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert main(["paper"]) == 2
