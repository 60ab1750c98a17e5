"""The real server (``bbdefense serve`` under uvicorn on 127.0.0.1): budgets across kill -9, an attack
through HttpBlackBox."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bbdefense.errors import BBDefenseError, QueryBudgetExceeded
from bbdefense.models import BlackBox, load_blackbox
from bbdefense.serve import HttpBlackBox
from bbdefense.serve.audit import verify_audit

from .serve_helpers import Server, free_port

SHAPE = (1, 8, 8)


def _x(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


class Scenario:
    """The state of the kill -9 scenario, shared by the tests of this module (two server starts in all)."""

    def __init__(self, db: Path, srv: Server, answered: int, answered_before: int) -> None:
        self.db, self.srv, self.answered, self.answered_before = db, srv, answered, answered_before


@pytest.fixture(scope="module")
def scenario(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """Start the real server, charge alice 37 images, hammer it from a second client, kill -9 it in the
    middle of that, and restart it on the same state file."""
    tmp = tmp_path_factory.mktemp("e2e")
    keys = tmp / "keys.json"
    keys.write_text(json.dumps({"keys": [{"name": "alice", "key": "alice-secret", "budget": 50},
                                         {"name": "hammer", "key": "hammer-secret", "budget": 100000},
                                         {"name": "attacker", "key": "attacker-secret", "budget": 5000}]}))
    db = tmp / "state.sqlite3"
    args = ["--model", str(tiny_ckpt), "--keys", str(keys), "--db", str(db), "--output", "probs"]
    srv = Server(args, free_port()).start()
    answered = {"n": 0}
    try:
        alice = HttpBlackBox(srv.url, "alice-secret")
        alice.query(_x(20, 1))
        alice.query(_x(17, 2))
        assert alice.usage()["used"] == 37
        hammer = HttpBlackBox(srv.url, "hammer-secret", retries=0, timeout=10.0)

        def loop() -> None:
            i = 0
            while True:
                try:
                    hammer.query(_x(1, 100 + i))
                except BBDefenseError:
                    return
                answered["n"] += 1
                i += 1

        t = threading.Thread(target=loop)
        t.start()
        t0 = time.monotonic()
        while answered["n"] < 5 and time.monotonic() - t0 < 60:
            time.sleep(0.02)
        srv.kill9()  # SIGKILL while the hammer has requests in flight
        t.join(timeout=30)
        assert not t.is_alive()
    finally:
        srv.stop()
    srv2 = Server(args, free_port()).start()
    try:
        yield Scenario(db, srv2, answered["n"], 37)
    finally:
        srv2.stop()


def test_budgets_survive_kill9_and_restart_exactly(scenario: Scenario) -> None:
    url = scenario.srv.url
    alice = HttpBlackBox(url, "alice-secret")
    assert alice.usage()["used"] == 37  # exactly what was charged before the kill
    hammered = HttpBlackBox(url, "hammer-secret").usage()["used"]
    # every answered query was charged; at most the one request in flight at the kill was charged unanswered
    assert scenario.answered >= 1 and scenario.answered <= hammered <= scenario.answered + 1
    assert all(v["consistent"] for v in verify_audit(scenario.db).values())
    alice.query(_x(13, 3))
    with pytest.raises(QueryBudgetExceeded, match="50 of 50"):
        alice.query(_x(1, 4))
    assert alice.usage() == {"key": "alice", "used": 50, "budget": 50, "remaining": 0, "rate": None, "burst": None}


def random_search(bb: BlackBox, x: torch.Tensor, y: torch.Tensor, *, eps: float = 0.3, iters: int = 20,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A minimal score-based linf random-search attack (written for this test; the attack suite is not
    in this branch): propose a random vertex of the eps-box, keep it when it lowers the margin
    p_y - max_{j != y} p_j; only unbroken images are queried."""
    g = torch.Generator().manual_seed(seed)

    def margin(p: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
        py = p.gather(1, yy[:, None])[:, 0]
        return py - p.scatter(1, yy[:, None], -1.0).max(1).values

    x_adv = x.clone()
    best = margin(bb.query(x), y)
    for _ in range(iters):
        idx = (best > 0).nonzero()[:, 0]
        if len(idx) == 0:
            break
        delta = eps * (torch.randint(0, 2, (len(idx), *x.shape[1:]), generator=g).float() * 2 - 1)
        cand = (x[idx] + delta).clamp(0, 1)
        m = margin(bb.query(cand), y[idx])
        better = m < best[idx]
        x_adv[idx[better]] = cand[better]
        best[idx[better]] = m[better]
    return x_adv, best <= 0


def test_attack_through_the_real_server_matches_the_local_run(scenario: Scenario, tiny_ckpt: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BBDEFENSE_API_KEY", "attacker-secret")
    remote = load_blackbox(scenario.srv.url)  # an http:// spec: HttpBlackBox, output from the server (probs)
    assert isinstance(remote, HttpBlackBox) and remote.output == "probs"
    local = load_blackbox(tiny_ckpt, output="probs")
    x = _x(12, 5)
    y = local.predict_label(x)
    local.reset_stats()
    xa_r, ok_r = random_search(remote, x, y)
    xa_l, ok_l = random_search(local, x, y)
    assert torch.equal(xa_r, xa_l) and torch.equal(ok_r, ok_l)  # same trajectory, bit for bit
    assert remote.stats.queries == local.stats.queries == remote.usage()["used"]
    assert ok_r.sum() >= 3 and (xa_r - x).abs().max() <= 0.3 + 1e-6
    assert bool((local.predict_label(xa_r)[ok_r] != y[ok_r]).all())
