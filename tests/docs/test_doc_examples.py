"""Every workflow page in docs/ has a complete Python example, and it runs as written (in a scratch directory)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
MARKER = "<!-- runnable: tests/docs/test_doc_examples.py runs this block -->"
WORKFLOW_PAGES = sorted(p.name for p in DOCS.glob("*.md") if p.name != "DEVELOPING.md")
NEEDS = {"serving.md": "fastapi", "scale-out.md": "ray"}  # the [serve] and [ray] extras


def examples(page: str) -> list[str]:
    return re.findall(re.escape(MARKER) + r"\n```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)


def test_every_workflow_page_has_a_runnable_example():
    assert WORKFLOW_PAGES
    missing = [p for p in WORKFLOW_PAGES if not examples(p)]
    assert not missing, f"docs pages without a runnable example: {missing}"


@pytest.mark.parametrize("page", WORKFLOW_PAGES)
def test_doc_example_runs(page, tmp_path, monkeypatch):
    need = NEEDS.get(page)
    if need and importlib.util.find_spec(need) is None:
        pytest.skip(f"{page}'s example needs {need} (an extra: pip install 'bbdefense[all]')")
    monkeypatch.chdir(tmp_path)
    for code in examples(page):
        exec(compile(code, str(DOCS / page), "exec"), {"__name__": "__doc_example__"})
