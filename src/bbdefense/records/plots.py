"""Plot specs (data, see :mod:`.record`) drawn to PNG with matplotlib, for reports a reader takes in at a glance.

Rules every figure follows:

* an accuracy axis (a ``ylabel`` containing "accuracy") is fixed to ``[0, 1]`` unless the spec sets ``ylim``,
  so no figure auto-scales to 0.8-1.0 next to others on 0-1;
* every series of a figure has its own line style *and* marker (and bar hatch), so curves that overlap
  (one under an envelope, two defenses on top of each other) stay visible in print and in grey;
* the legend sits outside the data (to the right of the axes);
* deterministic output: Agg, no timestamp metadata, the same spec gives the same bytes.
"""

from __future__ import annotations

import io
import math
from typing import Any

LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "x", "P", "*")
HATCHES = ("", "//", "..", "xx", "\\\\", "--", "oo", "++")


def series_style(i: int) -> dict[str, Any]:
    """Line style and marker of the ``i``-th series: all pairs differ for the first 8 series."""
    return {"linestyle": LINESTYLES[i % len(LINESTYLES)], "marker": MARKERS[i % len(MARKERS)]}


def _ylim(spec: dict[str, Any]) -> tuple[float, float] | None:
    if spec.get("ylim") is not None:
        lo, hi = spec["ylim"]
        return float(lo), float(hi)
    if "accuracy" in str(spec.get("ylabel", "")).lower() and spec.get("yscale", "linear") == "linear":
        return -0.02, 1.02
    return None


def _finite(v: Any) -> float:
    return float("nan") if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def plot_png(spec: dict[str, Any]) -> bytes:
    """Render one plot spec to PNG bytes with matplotlib (Agg; deterministic metadata)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = spec.get("series", [])
    labelled = any(s.get("label") for s in series) or bool(spec.get("refs"))
    fig, ax = plt.subplots(figsize=(7.6 if labelled else 6.0, 3.8), dpi=100)
    if spec.get("kind", "line") == "bar":
        n = max(len(series), 1)
        width = 0.8 / n
        labels = [str(x) for x in (series[0]["x"] if series else [])]
        for i, s in enumerate(series):
            pos = [j + (i - (n - 1) / 2) * width for j in range(len(s["x"]))]
            ax.bar(pos, [0 if v is None else v for v in s["y"]], width=width, label=s.get("label"),
                   hatch=HATCHES[i % len(HATCHES)], edgecolor="black", linewidth=0.4)
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    else:
        for i, s in enumerate(series):
            st = series_style(i)
            x, y = s["x"], [_finite(v) for v in s["y"]]
            # dense curves (certified accuracy on an 80-point grid) get about 8 markers, not 80
            every = max(1, len(x) // 8) if s.get("marker", "o") == "" else 1
            ax.plot(x, y, linestyle=st["linestyle"], marker=st["marker"], markevery=every, markersize=4,
                    linewidth=1.4, label=s.get("label"), drawstyle=s.get("drawstyle", "default"), alpha=0.9)
        for r in spec.get("refs", []):
            ax.plot(r["x"], r["y"], color="grey", linestyle=r.get("style", ":"), linewidth=1.0, label=r.get("label"))
        ax.set_xscale(spec.get("xscale", "linear"))
        ax.set_yscale(spec.get("yscale", "linear"))
        if spec.get("shade_x"):
            lo, hi = spec["shade_x"]
            ax.axvspan(lo, hi, color="0.88", zorder=0, label="below resolution (1 / non-members)")
    if spec.get("xlim") is not None:
        ax.set_xlim(*spec["xlim"])
    ylim = _ylim(spec)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(spec.get("title", ""), fontsize=10)
    ax.set_xlabel(spec.get("xlabel", ""))
    ax.set_ylabel(spec.get("ylabel", ""))
    ax.grid(alpha=0.3)
    if labelled:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


__all__ = ["HATCHES", "LINESTYLES", "MARKERS", "plot_png", "series_style"]
