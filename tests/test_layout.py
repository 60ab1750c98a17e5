"""Repository hygiene that keeps the test suite collectable."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_test_module_basenames_are_unique():
    # Test directories are not packages (rootdir-relative imports of helper modules), so two test
    # files with the same basename would collide at collection time.
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
