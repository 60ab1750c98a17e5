"""Certification as an evaluation (bbdefense.evaluation.certification): rows equal Smooth's certificates,
chunking and resume do not change them, and the certified-accuracy table of a linear model has exact radii."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from scipy.stats import beta, norm
from torch import nn

from bbdefense.certify import Smooth, make_noise
from bbdefense.evaluation.certification import (
    RADII,
    certified_accuracy,
    certified_accuracy_ci,
    certify_rows,
    default_grid,
    rows_from_certificates,
    table_radii,
)
from bbdefense.evaluation.report import CertifiedSetting, add_certification
from bbdefense.events import Event
from bbdefense.models import BlackBox
from bbdefense.records import RowWriter, RunDir, read_rows

SHAPE = (1, 2, 2)
SIGMA, N0, N, ALPHA = 0.05, 20, 100, 0.01


class HalfPlane(nn.Module):
    """Two classes split by ``sum(x) = 2`` (mean pixel 0.5): logits ``[0, sum(x) - 2]``. Under Gaussian
    noise sigma the margin's std is ``2 sigma = 0.1``, so an image of constant pixels 0.1 or 0.9 is 16
    std from the boundary: every noisy draw keeps its class, and its certificate is exact."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1).sum(1, keepdim=True) - 2.0
        return torch.cat([torch.zeros_like(s), s], dim=1)


def _setup() -> tuple[Smooth, torch.Tensor, torch.Tensor]:
    bb = BlackBox.from_module(HalfPlane(), input_shape=SHAPE, num_classes=2)
    pixels = [0.0, 1.0, 0.1, 0.9, 0.5]
    x = torch.stack([torch.full(SHAPE, p) for p in pixels])
    y = torch.tensor([0, 1, 0, 0, 1])  # image 3 (pixels 0.9, class 1) carries a wrong label; image 4 is on the line
    return Smooth(bb, make_noise("gaussian", sigma=SIGMA)), x, y


def _strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_rows_are_smooths_certificates_whatever_the_chunking() -> None:
    sm, x, y = _setup()
    certs = sm.certify(x, n0=N0, n=N, alpha=ALPHA, seed=7, indices=[10, 11, 12, 13, 14])
    res = certify_rows(sm, x, y, [10, 11, 12, 13, 14], n0=N0, n=N, alpha=ALPHA, seed=7, chunk=2)
    assert [r["idx"] for r in res.rows] == [10, 11, 12, 13, 14] and res.new == 5
    assert res.queries == 5 * (N0 + N) and all(r["queries"] == N0 + N for r in res.rows)
    for r, c, t in zip(res.rows, certs, y.tolist(), strict=True):
        assert (r["predict"], r["abstain"], r["pA_lower"]) == (c.label, c.abstain, c.pA_lower)
        assert {k: r[f"radius_{k}"] for k in c.radius} == c.radius and r["correct"] == (c.label == t)
    assert _strip(rows_from_certificates(certs, y, [10, 11, 12, 13, 14])) == _strip(res.rows)
    other = certify_rows(sm, x, y, [10, 11, 12, 13, 14], n0=N0, n=N, alpha=ALPHA, seed=7, chunk=5, batch_size=7)
    assert _strip(other.rows) == _strip(res.rows)


def test_certified_accuracy_of_a_linear_model_has_exact_radii(tmp_path: Path) -> None:
    sm, x, y = _setup()
    rows = certify_rows(sm, x, y, n0=N0, n=N, alpha=ALPHA, seed=0).rows
    p_low = ALPHA ** (1 / N)  # cp_lower(n, n, alpha): every draw of a far image votes for its class
    r_l2 = SIGMA * float(norm.ppf(p_low))
    for r in rows[:4]:
        assert not r["abstain"] and r["nA"] == N and r["pA_lower"] == pytest.approx(p_low, rel=1e-12)
        assert r["radius_l2"] == pytest.approx(r_l2, rel=1e-9)
        assert r["radius_linf"] == pytest.approx(r_l2 / 2, rel=1e-9)  # Gaussian: l2 / sqrt(d), d = 4
    assert rows[4]["abstain"] and rows[4]["predict"] == -1  # on the boundary: pA ~ 1/2
    assert [r["correct"] for r in rows] == [True, True, True, False, False]
    radii = [0.0, r_l2 / 2, r_l2 * (1 - 1e-9), r_l2 * 1.001]
    assert certified_accuracy(rows, "l2", radii) == pytest.approx([3 / 5, 3 / 5, 3 / 5, 0.0])
    assert certified_accuracy(rows, "linf", [r_l2 / 2 * 0.999, r_l2 / 2 * 1.001]) == pytest.approx([0.6, 0.0])
    # intervals: the exact two-sided 95% Clopper-Pearson interval of k of 5
    ci = certified_accuracy_ci(rows, "l2", [0.0, r_l2 * 1.001])
    assert (ci[0]["k"], ci[0]["n"], ci[1]["k"]) == (3, 5, 0)
    assert ci[0]["low"] == pytest.approx(beta.ppf(0.025, 3, 3))
    assert ci[0]["high"] == pytest.approx(beta.ppf(0.975, 4, 2))
    assert ci[1]["low"] == 0.0 and ci[1]["high"] == pytest.approx(1 - 0.025 ** (1 / 5))
    # the record: one table row per norm, the r=0 interval next to the figure, a plot per norm
    run = RunDir(tmp_path / "run", kind="test", config={})
    curves = add_certification(run, [CertifiedSetting("gaussian 0.05", SIGMA, ("l2", "linf"), rows)], d=4,
                               section="Certification")
    tab = run.record.tables[-1]
    assert [r[:2] for r in tab["rows"]] == [["gaussian 0.05", "l2"], ["gaussian 0.05", "linf"]]
    assert tab["rows"][0][2] == pytest.approx(0.6) and tab["rows"][0][3] == [round(ci[0]["low"], 4),
                                                                             round(ci[0]["high"], 4)]
    c2 = curves["gaussian 0.05"][0]
    assert c2.grid == pytest.approx(default_grid("l2", SIGMA, 4).tolist()) and c2.r_max == pytest.approx(4 * SIGMA)
    area = sum(0.6 * (b - a) for a, b in itertools.pairwise(c2.grid) if b <= r_l2)  # steps of the curve, exactly
    assert c2.score == pytest.approx(area, abs=0.6 * (c2.grid[1] - c2.grid[0]))
    assert len(run.record.plots) == 2 and run.record.metrics["certified.l2.robust_score"] == c2.score


class _Interrupt(Exception):
    pass


def test_resume_by_image_index_gives_the_same_rows(tmp_path: Path) -> None:
    sm, x, y = _setup()
    path = tmp_path / "rows.jsonl"
    full = certify_rows(sm, x, y, n0=N0, n=N, alpha=ALPHA, seed=3, chunk=2).rows

    def stop(ev: Event) -> None:
        if ev.kind == "advance" and ev.task == "certify":
            raise _Interrupt

    with pytest.raises(_Interrupt), RowWriter(path) as w:
        certify_rows(sm, x, y, n0=N0, n=N, alpha=ALPHA, seed=3, chunk=2, writer=w, on_event=stop)
    assert len(list(read_rows(path))) == 2
    q0 = sm.model.stats.queries
    with RowWriter(path) as w:
        again = certify_rows(sm, x, y, n0=N0, n=N, alpha=ALPHA, seed=3, chunk=2, writer=w)
    assert again.new == 3 and sm.model.stats.queries - q0 == 3 * (N0 + N)
    on_disk = list(read_rows(path))
    assert sorted(r["idx"] for r in on_disk) == [0, 1, 2, 3, 4] == [r["idx"] for r in again.rows]
    assert _strip(again.rows) == _strip(full)


def test_radius_grids_are_defined_once() -> None:
    assert RADII == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert default_grid("l2", 0.25, 784)[-1] == pytest.approx(1.0) and len(default_grid("l2", 0.25, 784)) == 81
    assert default_grid("linf", 0.25, 784)[-1] == pytest.approx(1.0 / 28)
    assert table_radii("l2", 784) == [0.25 * i for i in range(1, 9)]
    assert table_radii("linf", 784)[-1] == pytest.approx(2.0 / math.sqrt(784), abs=1e-5)
    assert math.isnan(certified_accuracy([], "l2", [0.0])[0])
