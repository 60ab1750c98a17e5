"""The server with a stateful detector: 403 attack_suspected, audited, charged or not, bans that
persist (also across kill -9 of a real server), log mode, no 5xx under fuzzing, and the attacks'
view (QueryRejected, OARS adapting, the Sybil split)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given

from bbdefense.attacks import ATTACKS
from bbdefense.attacks.oars import OARS, sybil_blackbox
from bbdefense.defenses.stateful import Blacklight
from bbdefense.errors import QueryRejected
from bbdefense.models import BlackBox
from bbdefense.serve import HttpBlackBox, ServeLimits
from bbdefense.serve.audit import detections_per_key, verify_audit
from bbdefense.serve.local import local_accounts

from .serve_helpers import BOB, SHAPE, NoisyInput, Server, free_port
from .test_fuzz import SETTINGS, _check, bodies

CFG = {"window": 8, "top_k": 20, "threshold": 10}  # Blacklight scaled to 8x8 test images


def _x(seed: int) -> torch.Tensor:
    return torch.rand(1, *SHAPE, generator=torch.Generator().manual_seed(seed))


def _near(x: torch.Tensor, k: int = 0) -> torch.Tensor:
    y = x.clone()
    y[0, 0, k % 8, (3 * k) % 8] = 1 - y[0, 0, k % 8, (3 * k) % 8]
    return y


def _body(x: torch.Tensor) -> dict[str, Any]:
    return {"inputs": x.tolist()}


def _client(make_client: Any, bb: BlackBox, tmp_path: Path, **kw: Any) -> Any:
    det = Blacklight(db_path=tmp_path / "state.sqlite3", **CFG)
    return make_client(bb, detector=det, **kw)


@pytest.mark.parametrize("charge", [True, False])
def test_reject_is_403_audited_and_charged_as_configured(make_client: Any, tiny_bb: BlackBox, tmp_path: Path,
                                                          charge: bool) -> None:
    c = _client(make_client, tiny_bb, tmp_path, charge_rejected=charge)
    x = _x(0)
    assert c.post("/v1/predict", json=_body(x), headers=BOB).status_code == 200
    r = c.post("/v1/predict", json=_body(_near(x)), headers=BOB)
    assert r.status_code == 403 and r.json()["code"] == "attack_suspected" and "bob" in r.json()["detail"]
    assert c.post("/v1/predict", json=_body(_x(1)), headers=BOB).status_code == 200  # reject: not a ban
    assert c.get("/v1/usage", headers=BOB).json()["used"] == (3 if charge else 2)
    db = tmp_path / "state.sqlite3"
    assert all(v["consistent"] for v in verify_audit(db).values())
    outcomes = [row["outcome"] for row in c.app.state.store.audit_rows()]
    assert outcomes == ["charged", "attack_suspected", "charged"]
    d = detections_per_key(db)["bob"]
    assert d["rejected"] == 1 and d["charged"] == (1 if charge else 0) and d["banned"] is None
    assert c.get("/v1/info").json()["stateful_detector"] == "blacklight"


def test_ban_persists_across_a_restart(make_client: Any, tiny_bb: BlackBox, tmp_path: Path) -> None:
    c = _client(make_client, tiny_bb, tmp_path, on_detect="ban")
    bob = HttpBlackBox("http://testserver", "bob-secret", client=c, retries=0)
    bob.query(_x(0))
    with pytest.raises(QueryRejected) as info:
        bob.query(_near(_x(0)))
    assert info.value.banned
    c.app.state.store.close()
    c.app.state.detector.close()
    c2 = _client(make_client, tiny_bb, tmp_path, on_detect="ban")  # the same state file: a restart
    r = c2.post("/v1/predict", json=_body(_x(5)), headers=BOB)  # an unrelated image: still banned
    assert r.status_code == 403 and "banned" in r.json()["detail"]
    assert c2.post("/v1/predict", json=_body(_x(5)), headers={"X-API-Key": "alice-secret"}).status_code == 200
    assert detections_per_key(tmp_path / "state.sqlite3")["bob"]["banned"]


def test_log_mode_answers_and_records(make_client: Any, tiny_bb: BlackBox, tmp_path: Path) -> None:
    c = _client(make_client, tiny_bb, tmp_path, on_detect="log")
    x = _x(0)
    for k in range(4):
        assert c.post("/v1/predict", json=_body(_near(x, k)), headers=BOB).status_code == 200
    d = detections_per_key(tmp_path / "state.sqlite3")["bob"]
    assert d["logged"] >= 2 and d["rejected"] == 0 and d["charged"] == d["images"]


@pytest.fixture
def det_client(make_client: Any, tiny_bb: BlackBox, tmp_path: Path) -> Any:
    return _client(make_client, tiny_bb, tmp_path, on_detect="ban",
                   limits=ServeLimits(max_batch=8, max_body_bytes=64 * 1024, max_json_images=4))


@SETTINGS
@given(body=bodies)
def test_fuzzed_bodies_with_a_detector_never_5xx(det_client: Any, body: Any) -> None:
    headers = {**BOB, "content-type": "application/json"}
    _check(det_client.post("/v1/predict", content=json.dumps(body), headers=headers))


def test_oars_gets_past_rejections_where_the_plain_attack_stops(tiny_bb: BlackBox) -> None:
    x = _x(3)
    y = tiny_bb.predict_label(x)
    atk = ATTACKS["square"](eps=0.3, max_queries=60, seed=0)
    with local_accounts(tiny_bb, detector="blacklight", detector_config=CFG) as (bb,), pytest.raises(QueryRejected):
        atk.run(bb, x, y)
    with local_accounts(tiny_bb, detector="blacklight", detector_config=CFG) as (bb,):
        res = OARS(atk, seed=0).run(bb, x, y)
    assert res.result is not None and res.rejected >= 1 and res.first_rejection is not None
    assert res.sent > int(res.result.queries.sum())  # rejected requests were sent (and charged) too


@pytest.mark.parametrize(("scope", "caught"), [("global", True), ("account", False)])
def test_sybil_split_is_caught_by_the_global_scope_only(tiny_bb: BlackBox, scope: str, caught: bool) -> None:
    x = _x(4)
    with local_accounts(tiny_bb, 2, detector="blacklight", detector_config={**CFG, "scope": scope}) as bbs:
        split = sybil_blackbox(list(bbs))
        split.query(x)  # key 0
        try:
            split.query(_near(x))  # key 1: a near-duplicate of key 0's query
            got = False
        except QueryRejected:
            got = True
    assert got is caught


def test_detector_state_and_bans_survive_kill9(tiny_ckpt: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [{"name": "eve", "key": "eve-secret"}, {"name": "mallory", "key": "m-secret"},
                                         {"name": "alice", "key": "alice-secret"}]}))
    cfg = tmp_path / "detector.json"
    cfg.write_text(json.dumps(CFG))
    db = tmp_path / "state.sqlite3"
    args = ["--model", str(tiny_ckpt), "--keys", str(keys), "--db", str(db), "--detector", "blacklight",
            "--detector-config", str(cfg), "--on-detect", "ban"]
    x0, x1 = _x(10), _x(11)
    srv = Server(args, free_port()).start()
    try:
        eve = HttpBlackBox(srv.url, "eve-secret", retries=0)
        eve.query(x0)
        with pytest.raises(QueryRejected):
            eve.query(_near(x0))
        HttpBlackBox(srv.url, "m-secret", retries=0).query(x1)  # mallory's first query, remembered
        srv.kill9()
    finally:
        srv.stop()
    srv2 = Server(args, free_port()).start()
    try:
        with pytest.raises(QueryRejected, match="banned"):
            HttpBlackBox(srv2.url, "eve-secret", retries=0).query(_x(12))
        with pytest.raises(QueryRejected):  # matched against the query stored before the kill
            HttpBlackBox(srv2.url, "m-secret", retries=0).query(_near(x1, 2))
        HttpBlackBox(srv2.url, "alice-secret", retries=0).query(_x(13))
    finally:
        srv2.stop()
    assert all(v["consistent"] for v in verify_audit(db).values())


def test_detector_works_in_front_of_a_randomized_owner_defense(linear_model: torch.nn.Module) -> None:
    defended = BlackBox.from_module(NoisyInput(linear_model, sigma=0.1), input_shape=SHAPE, output="probs")
    assert defended.randomized
    with local_accounts(defended, detector="blacklight", detector_config={**CFG, "allow_repeats": False}) as (bb,):
        x = _x(6)
        bb.query(x)
        with pytest.raises(QueryRejected):
            bb.query(x)  # an exact repeat is an EOT sample of a randomized model: matched here
        with pytest.raises(QueryRejected):
            bb.query(_near(x))


def test_hit_rule_state_survives_kill9(tiny_ckpt: Path, tmp_path: Path) -> None:
    """The hit rule's state (the account's recent hits, rows of the state file) outlives a SIGKILL: two hits
    before the kill and the third after it reach ``min_hits=3``."""
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [{"name": "eve", "key": "eve-secret"}]}))
    cfg = tmp_path / "detector.json"
    cfg.write_text(json.dumps({**CFG, "min_hits": 3, "hit_window": 4}))
    db = tmp_path / "state.sqlite3"
    args = ["--model", str(tiny_ckpt), "--keys", str(keys), "--db", str(db), "--detector", "blacklight",
            "--detector-config", str(cfg), "--on-detect", "reject"]
    x0 = _x(20)
    srv = Server(args, free_port()).start()
    try:
        eve = HttpBlackBox(srv.url, "eve-secret", retries=0)
        for q in (x0, _near(x0, 1), _near(x0, 2)):  # the 2nd and 3rd are hits, not yet 3 of them
            eve.query(q)
        srv.kill9()
    finally:
        srv.stop()
    srv2 = Server(args, free_port()).start()
    try:
        with pytest.raises(QueryRejected):  # the third hit: counted with the two before the kill
            HttpBlackBox(srv2.url, "eve-secret", retries=0).query(_near(x0, 3))
    finally:
        srv2.stop()
