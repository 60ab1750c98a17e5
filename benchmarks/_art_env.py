"""The one place that builds the peer environment for the ``*_vs_art.py`` benchmarks.

``.cache/art-venv`` is a self-contained venv with IBM ART (pinned below), the dependencies ART's
certification needs but does not declare (statsmodels), our pinned torch/numpy/scipy (through
``constraints.txt``, so the CPU build of torch is used) and bbdefense itself (editable), so that the
worker scripts can load our checkpoints. It is created on first use (a minute or two) and reused
while its stamp matches ``ART_VERSION``. Not part of the library.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ART_VENV = ROOT / ".cache" / "art-venv"
ART_VERSION = "1.20.1"
_STAMP = ART_VENV / ".installed"


def ensure_art_venv() -> Path:
    """Create ``.cache/art-venv`` if needed and return its python."""
    py = ART_VENV / "bin" / "python"
    if _STAMP.exists() and _STAMP.read_text().strip() == ART_VERSION and py.exists():
        return py
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(ART_VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"),
                    f"adversarial-robustness-toolbox=={ART_VERSION}", "statsmodels", "tqdm", "six",
                    "-e", str(ROOT)], check=True)
    _STAMP.write_text(ART_VERSION + "\n")
    return py


def art_site_packages() -> Path:
    """Site-packages of the ART venv (for scripts that import ART in-process, appended to ``sys.path``)."""
    ensure_art_venv()
    return next((ART_VENV / "lib").glob("python*/site-packages"))
