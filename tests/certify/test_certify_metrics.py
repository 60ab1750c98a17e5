"""Certified accuracy (>= comparator, abstentions wrong), envelope, robust score, pA-R curves."""

from __future__ import annotations

import numpy as np
import pytest

from bbdefense.certify import Certificate, make_noise
from bbdefense.certify.metrics import (
    certified_accuracy,
    curve_from_certificates,
    envelope,
    pa_r_curves,
    radius_grid,
    robust_score,
)
from bbdefense.errors import InputError


def _cert(label: int, r: float) -> Certificate:
    ab = label < 0
    return Certificate(label, 0.9, {"l2": 0.0 if ab else r}, [0, 0], 10, 100, ab)


def test_certified_accuracy_uses_ge_and_counts_abstain_wrong() -> None:
    certs = [_cert(1, 0.5), _cert(2, 0.25), _cert(-1, 0.0), _cert(0, 1.0)]
    labels = [1, 2, 1, 1]  # the last one is certified but wrong
    acc = curve_from_certificates(certs, labels, "l2", [0.0, 0.25, 0.5, 0.75])
    assert acc.tolist() == [0.5, 0.5, 0.25, 0.0]
    assert certified_accuracy([0.5], [True], [0.5]).tolist() == [1.0]  # radius == r counts


def test_envelope_and_robust_score_of_known_curves() -> None:
    g = radius_grid(2.0, 81)
    c1 = np.where(g <= 1.0, 1.0, 0.0)
    c2 = np.where(g <= 2.0, 0.5, 0.0)
    env = envelope({0.25: c1, 0.5: c2})
    assert env[0] == 1.0 and env[-1] == 0.5
    s = robust_score({0.25: c1, 0.5: c2}, g)
    # area = 1 * 1 + 0.5 * 1 up to one trapezoid of the step at r = 1 (width 0.025, height 0.5)
    assert s["score"] == pytest.approx(1.5, abs=0.5 * 0.025 + 1e-9)
    assert s["r_max"] == 2.0 and s["steps"] == 81
    with pytest.raises(InputError):
        robust_score(c1[:-1], g)


def test_pa_r_curves_closed_and_numerical() -> None:
    ps = [0.6, 0.8, 0.95]
    series = pa_r_curves([make_noise("gaussian", sigma=0.5), make_noise("cauchy", sigma=0.5)], ["l2"], 4, ps,
                         numerical_kw={"n_mc": 500, "particles": 1, "pso_iters": 0})
    by = {(s["noise"], s["method"]): s for s in series}
    assert set(by) == {("gaussian", "closed"), ("cauchy", "numerical")}
    assert not by[("gaussian", "closed")]["approximate"] and by[("cauchy", "numerical")]["approximate"]
    ys = by[("cauchy", "numerical")]["y"]
    assert ys == sorted(ys) and ys[0] > 0
    with pytest.raises(InputError, match="p_grid"):
        pa_r_curves([make_noise("gaussian")], ["l2"], 4, [0.4])
