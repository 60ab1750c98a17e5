"""Budgets and audit log in SQLite: exact, atomic, persistent, append-only."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from bbdefense.errors import ConfigError
from bbdefense.serve.audit import export_jsonl, iter_audit, verify_audit
from bbdefense.serve.store import KeySpec, KeyStore, hash_key, load_keys_file, parse_keys

KEYS = [KeySpec("alice", key="a", budget=10), KeySpec("bob", key="b")]


def test_charge_is_exact_at_the_boundary_and_audited(tmp_path: Path) -> None:
    st = KeyStore(tmp_path / "s.db", keys=KEYS)
    h = hash_key("a")
    assert st.charge(h, 7, "d1").ok
    refused = st.charge(h, 4, "d2")
    assert not refused.ok and refused.used == 7 and refused.remaining == 3
    ok = st.charge(h, 3, "d3")
    assert ok.ok and ok.used == 10 and ok.remaining == 0
    assert not st.charge(h, 1, "d4").ok
    rows = st.audit_rows()
    assert [(r["images"], r["outcome"], r["used_after"]) for r in rows] == [
        (7, "charged", 7), (4, "budget_exceeded", 7), (3, "charged", 10), (1, "budget_exceeded", 10)]
    assert [r["sha256"] for r in rows] == ["d1", "d2", "d3", "d4"]
    st.close()


def test_usage_persists_and_key_sync_keeps_used(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    st = KeyStore(db, keys=KEYS)
    st.charge(hash_key("a"), 6, "x")
    st.close()
    # restart with a new file: alice's budget raised, bob removed, carol added
    st = KeyStore(db, keys=[KeySpec("alice", key="a", budget=20), KeySpec("carol", key="c", budget=1)])
    assert st.lookup("a").used == 6 and st.lookup("a").budget == 20  # type: ignore[union-attr]
    assert st.lookup("b") is None  # deactivated
    assert st.usage()["bob"] == {"used": 0, "budget": None, "active": False}
    st.close()
    st = KeyStore(db)  # keys=None keeps the stored keys
    assert st.lookup("a").used == 6 and not st.open  # type: ignore[union-attr]
    st.close()


def test_audit_is_append_only(tmp_path: Path) -> None:
    st = KeyStore(tmp_path / "s.db", keys=KEYS)
    st.charge(hash_key("a"), 1, "x")
    st.close()
    db = sqlite3.connect(tmp_path / "s.db")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit SET images = 0")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit")
    db.close()


def test_concurrent_charges_never_overspend(tmp_path: Path) -> None:
    st = KeyStore(tmp_path / "s.db", keys=[KeySpec("alice", key="a", budget=50)], synchronous="NORMAL")
    h = hash_key("a")
    oks: list[bool] = []

    def worker() -> None:
        for _ in range(20):
            oks.append(st.charge(h, 3, "x").ok)

    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sum(oks) == 16 and st.lookup("a").used == 48  # type: ignore[union-attr]  # 16 * 3 <= 50 < 17 * 3
    st.close()
    assert verify_audit(tmp_path / "s.db")["alice"] == {"used": 48, "audited": 48, "consistent": True}


def test_refund_and_export(tmp_path: Path) -> None:
    st = KeyStore(tmp_path / "s.db", keys=KEYS)
    st.charge(hash_key("b"), 5, "x")
    st.refund(hash_key("b"), 5, "x")
    assert st.lookup("b").used == 0  # type: ignore[union-attr]
    st.close()
    assert [e.outcome for e in iter_audit(tmp_path / "s.db")] == ["charged", "refunded"]
    assert verify_audit(tmp_path / "s.db")["bob"]["consistent"]
    assert export_jsonl(tmp_path / "s.db", tmp_path / "audit.jsonl") == 2
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 2


def test_open_store_has_one_anonymous_account(tmp_path: Path) -> None:
    st = KeyStore(tmp_path / "s.db", anonymous_budget=3)
    assert st.open
    rec = st.lookup(None)
    assert rec is not None and rec.name == "anonymous" and rec.budget == 3
    st.close()


@pytest.mark.parametrize("doc,match", [
    ({"keys": []}, "non-empty list"),
    ({"keys": [{"name": "x"}]}, "needs 'key'"),
    ({"keys": [{"name": "x", "key": "k", "budget": -1}]}, "budget must be an integer >= 0"),
    ({"keys": [{"name": "x", "key": "k", "rate": 0}]}, "rate must be a number > 0"),
    ({"keys": [{"name": "x", "key": "k", "colour": "red"}]}, "unknown field"),
    ({"keys": [{"name": "x", "key": "k"}, {"name": "y", "key": "k"}]}, "same key appears twice"),
    ({"keys": [{"name": "x", "key": "k1"}, {"name": "x", "key": "k2"}]}, "key name 'x' appears 2 times"),
    ({"keys": [{"name": "anonymous", "key": "k1"}]}, "reserved for the open API"),
])
def test_bad_keys_documents(doc: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_keys(doc)


def test_keys_file_yaml(tmp_path: Path) -> None:
    p = tmp_path / "keys.yaml"
    p.write_text("keys:\n  - {name: alice, key: s3cret, budget: 5, rate: 2}\n")
    (spec,) = load_keys_file(p)
    assert spec.key_hash == hash_key("s3cret") and spec.budget == 5 and spec.rate == 2
    with pytest.raises(ConfigError, match="not found"):
        load_keys_file(tmp_path / "nope.json")


def test_serve_audit_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bbdefense.cli import main

    st = KeyStore(tmp_path / "s.db", keys=KEYS)
    st.charge(hash_key("a"), 4, "x")
    st.close()
    assert main(["serve-audit", "--db", str(tmp_path / "s.db"), "--jsonl", str(tmp_path / "a.jsonl")]) == 0
    outp = capsys.readouterr().out
    assert "alice" in outp and "True" in outp and "wrote 1 rows" in outp
    assert main(["serve-audit", "--db", str(tmp_path / "missing.db")]) == 2
    assert "server state file not found" in capsys.readouterr().err
