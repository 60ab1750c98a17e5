"""Certification and a registered attack through HttpBlackBox give exactly the local results.

These run once the certify and attack parts are merged next to serving (skipped before): they are the
"run unchanged against a remote API" promise, checked on the real code of those parts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bbdefense.models import load_blackbox
from bbdefense.serve import HttpBlackBox

SHAPE = (1, 8, 8)


def _pair(tiny_ckpt: Path, make_client: Any) -> tuple[HttpBlackBox, Any]:
    served = load_blackbox(tiny_ckpt, output="probs")
    c = make_client(served)
    return HttpBlackBox("http://testserver", "bob-secret", client=c), load_blackbox(tiny_ckpt, output="probs")


def test_certification_through_http_equals_local(tiny_ckpt: Path, make_client: Any) -> None:
    certify = pytest.importorskip("bbdefense.certify")
    if not hasattr(certify, "Smooth") or not hasattr(certify, "make_noise"):
        pytest.skip("bbdefense.certify.Smooth not merged yet")
    remote, local = _pair(tiny_ckpt, make_client)
    x = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(0))
    out = []
    for bb in (remote, local):
        smooth = certify.Smooth(bb, certify.make_noise("gaussian", sigma=0.25), clip=True)  # an API takes [0, 1]
        certs = smooth.certify(x, n0=20, n=100, alpha=0.01, batch_size=50, seed=0)
        out.append([(c.label, c.pA_lower, c.radius) for c in certs])
    assert out[0] == out[1]
    assert remote.stats.queries == local.stats.queries == remote.usage()["used"] > 0


def test_registered_attack_through_http_equals_local(tiny_ckpt: Path, make_client: Any) -> None:
    attacks = pytest.importorskip("bbdefense.attacks")
    if "square" not in list(getattr(attacks, "ATTACKS", {})):  # (`in` on a Registry raises for unknown names)
        pytest.skip("the square attack is not merged yet")
    remote, local = _pair(tiny_ckpt, make_client)
    x = torch.rand(3, *SHAPE, generator=torch.Generator().manual_seed(1))
    y = local.predict_label(x)
    local.reset_stats()
    res = [attacks.ATTACKS["square"](eps=0.1, max_queries=100, seed=0).run(bb, x, y) for bb in (remote, local)]
    assert torch.equal(res[0].x_adv, res[1].x_adv) and torch.equal(res[0].success, res[1].success)
    assert torch.equal(res[0].queries, res[1].queries)
    assert int(res[0].queries.sum()) == remote.stats.queries == local.stats.queries == remote.usage()["used"]
