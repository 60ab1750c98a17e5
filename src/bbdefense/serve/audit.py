"""Reading, checking and exporting the audit log of a server's state file.

The log itself is written by :meth:`bbdefense.serve.store.KeyStore.charge`, in the same SQLite
transaction as the budget charge, so a crash at any point leaves both either updated together or
not at all (no torn record is possible: SQLite's WAL journal discards an uncommitted tail on
recovery). Triggers make the table append-only.

One row per charged request (``outcome="charged"``), per refused request (``"budget_exceeded"``,
``images`` = the refused batch size) and per refund after a model failure (``"refunded"``,
negative ``images``), per request a stateful detector refused (``"attack_suspected"``,
``images`` = images charged for it, 0 when rejected queries are not charged).
``sha256`` is :func:`bbdefense.models.wire.batch_digest` of the decoded batch.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError


@dataclass(frozen=True)
class AuditEntry:
    """One audit row."""

    seq: int
    time: float
    key: str
    images: int
    sha256: str
    outcome: str
    used_after: int


def _connect(db_path: str | Path) -> sqlite3.Connection:
    p = Path(db_path)
    if not p.is_file():
        raise ConfigError(f"server state file not found: {p}")
    try:
        db = sqlite3.connect(str(p), timeout=30.0)
        db.execute("SELECT 1 FROM audit LIMIT 1")
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{p} is not a bbdefense server state file: {exc}") from None
    return db


def iter_audit(db_path: str | Path, *, since: int = 0) -> Iterator[AuditEntry]:
    """Audit entries with ``seq > since``, in order (only reads; safe while the server runs)."""
    db = _connect(db_path)
    try:
        for r in db.execute("SELECT seq, time, key_name, images, sha256, outcome, used_after FROM audit "
                            "WHERE seq > ? ORDER BY seq", (since,)):
            yield AuditEntry(int(r[0]), float(r[1]), str(r[2]), int(r[3]), str(r[4]), str(r[5]), int(r[6]))
    finally:
        db.close()


def verify_audit(db_path: str | Path) -> dict[str, dict[str, int | bool]]:
    """Check, per key, that the images charged minus refunded in the log equal the key's ``used``.

    Returns ``{key name: {"used", "audited", "consistent"}}``.
    """
    db = _connect(db_path)
    try:
        used = {r[0]: int(r[1]) for r in db.execute("SELECT name, SUM(used) FROM keys GROUP BY name")}
        audited = {r[0]: int(r[1]) for r in db.execute(
            "SELECT key_name, SUM(images) FROM audit WHERE outcome IN ('charged', 'refunded', 'attack_suspected') "
            "GROUP BY key_name")}
    finally:
        db.close()
    return {k: {"used": used.get(k, 0), "audited": audited.get(k, 0), "consistent": used.get(k, 0) == audited.get(k, 0)}
            for k in sorted(set(used) | set(audited))}


def detections_per_key(db_path: str | Path) -> dict[str, dict[str, object]]:
    """Per key, what the stateful detector did: ``{"requests", "images", "flagged", "rejected", "logged",
    "charged", "max_score", "first", "banned"}`` (``first``: time of the first detection; empty without any)."""
    db = _connect(db_path)
    try:
        try:
            rows = db.execute(
                "SELECT key_name, COUNT(*), SUM(images), SUM(flagged), SUM(action != 'logged'), "
                "SUM(action = 'logged'), SUM(charged), MAX(score), MIN(time) FROM detections "
                "GROUP BY key_name ORDER BY key_name").fetchall()
            banned = {r[0]: r[1] for r in db.execute("SELECT key_name, reason FROM bans")}
        except sqlite3.OperationalError:  # a state file written before detections existed
            return {}
    finally:
        db.close()
    return {r[0]: {"requests": int(r[1]), "images": int(r[2]), "flagged": int(r[3]), "rejected": int(r[4]),
                   "logged": int(r[5]), "charged": int(r[6]), "max_score": float(r[7]), "first": float(r[8]),
                   "banned": banned.get(r[0])} for r in rows}


def export_jsonl(db_path: str | Path, out: str | Path, *, since: int = 0) -> int:
    """Write the audit log as JSON lines (atomically: temporary file, fsync, rename). Returns the row count."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    n = 0
    with tmp.open("w") as f:
        for e in iter_audit(db_path, since=since):
            f.write(json.dumps(e.__dict__, sort_keys=True) + "\n")
            n += 1
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(out)
    return n


__all__ = ["AuditEntry", "detections_per_key", "export_jsonl", "iter_audit", "verify_audit"]
