"""API keys, per-key query budgets and the audit log, persisted in one SQLite file.

Design (why it survives ``kill -9``):

* A predict request is charged with **one** SQLite transaction (``BEGIN IMMEDIATE``) that checks
  the key's remaining budget, adds the batch size to ``used`` and appends the audit row. It commits
  (WAL journal, ``synchronous=FULL``: the commit is on disk when :meth:`KeyStore.charge` returns)
  *before* the model runs and the answer is sent. A crash before the commit charges nothing and
  answers nothing; a crash after it keeps the charge (the client may have lost the answer: the
  conservative side for a budget). Budget and audit log can never disagree.
* ``BEGIN IMMEDIATE`` takes the write lock first, so concurrent requests (threads or several server
  processes on the same file) cannot both spend the last queries.
* The audit table is append-only: SQLite triggers abort any ``UPDATE`` or ``DELETE`` on it.
* Secrets are never stored: a key is kept as its SHA-256; the audit log names the key's ``name``.

Restarting with a keys file upserts the keys: ``name``, ``budget`` and rate limits follow the file,
``used`` is kept, and keys absent from the file are deactivated (their history stays).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError
from ..utils import open_sqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    key_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    budget INTEGER,               -- images; NULL = unlimited
    used INTEGER NOT NULL DEFAULT 0,
    rate REAL,                    -- requests per second; NULL = unlimited
    burst REAL,
    active INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    key_name TEXT NOT NULL,
    images INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    outcome TEXT NOT NULL,        -- charged | budget_exceeded | refunded | attack_suspected
    used_after INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS detections (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    key_name TEXT NOT NULL,
    images INTEGER NOT NULL,      -- images in the request
    flagged INTEGER NOT NULL,     -- images the detector flagged
    score REAL NOT NULL,          -- the largest detector score of the request
    action TEXT NOT NULL,         -- rejected | banned | logged | refused_banned
    charged INTEGER NOT NULL      -- images charged for the request
);
CREATE TABLE IF NOT EXISTS bans (
    key_hash TEXT PRIMARY KEY,
    key_name TEXT NOT NULL,
    time REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

ANONYMOUS = "anonymous"


def hash_key(key: str) -> str:
    """SHA-256 hex of an API key (what the store keeps)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeySpec:
    """One API key. ``budget`` in images (None: unlimited); ``rate`` in requests/second with a token
    bucket of ``burst`` requests (None: unlimited). Give ``key`` (the secret) or ``key_sha256``."""

    name: str
    key: str | None = None
    key_sha256: str | None = None
    budget: int | None = None
    rate: float | None = None
    burst: float | None = None

    @property
    def key_hash(self) -> str:
        if self.key_sha256:
            return self.key_sha256.lower()
        if self.key:
            return hash_key(self.key)
        raise ConfigError(f"key {self.name!r} has neither 'key' nor 'key_sha256'")


def parse_keys(obj: Any, source: str = "keys") -> list[KeySpec]:
    """Validate a keys document: ``{"keys": [{"name", "key" | "key_sha256", "budget", "rate", "burst"}]}``
    (or the bare list). Raises :class:`ConfigError` naming the bad entry."""
    items = obj.get("keys") if isinstance(obj, dict) else obj
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{source}: expected a non-empty list of keys under 'keys', got {type(items).__name__}")
    allowed = {"name", "key", "key_sha256", "budget", "rate", "burst"}
    specs: list[KeySpec] = []
    for i, it in enumerate(items):
        if not isinstance(it, dict):
            raise ConfigError(f"{source}: key #{i} must be an object, got {type(it).__name__}")
        extra = set(it) - allowed
        if extra:
            raise ConfigError(f"{source}: key #{i} has unknown field(s) {sorted(extra)}; allowed: {sorted(allowed)}")
        name = it.get("name", f"key{i}")
        budget, rate, burst = it.get("budget"), it.get("rate"), it.get("burst")
        if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget < 0):
            raise ConfigError(f"{source}: key {name!r} budget must be an integer >= 0 or null, got {budget!r}")
        for label, v in (("rate", rate), ("burst", burst)):
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0):
                raise ConfigError(f"{source}: key {name!r} {label} must be a number > 0 or null, got {v!r}")
        key, ksha = it.get("key"), it.get("key_sha256")
        if not (isinstance(key, str) and key) and not (isinstance(ksha, str) and len(ksha) == 64):
            raise ConfigError(f"{source}: key {name!r} needs 'key' (a non-empty string) or 'key_sha256' (64 hex)")
        specs.append(KeySpec(str(name), key, ksha, budget, rate, burst))
    hashes = [s.key_hash for s in specs]
    if len(set(hashes)) != len(hashes):
        raise ConfigError(f"{source}: the same key appears twice")
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:  # budgets and the audit log are reported per name: two keys of one name would merge
        raise ConfigError(f"{source}: the key name {dup[0]!r} appears {names.count(dup[0])} times; names "
                          "must be unique")
    if ANONYMOUS in names:
        raise ConfigError(f"{source}: the key name {ANONYMOUS!r} is reserved for the open API")
    return specs


def check_state_file(path: str | Path) -> None:
    """``path`` can hold the server's state: an existing SQLite file (opened read-only to check), or a
    new file in a folder that exists or can be created. Raises :class:`ConfigError`; writes nothing."""
    p = Path(path)
    if str(p) == ":memory:":
        return
    if p.is_dir():
        raise ConfigError(f"--db {p} is a folder; give a file path (e.g. {p / 'state.sqlite3'})")
    if p.exists():
        try:
            db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=5.0)
            try:
                db.execute("PRAGMA schema_version").fetchone()
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise ConfigError(f"--db {p} is not a SQLite state file ({exc})") from None


def load_keys_file(path: str | Path) -> list[KeySpec]:
    """Read a JSON or YAML keys file (see :func:`parse_keys`)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"keys file not found: {p}")
    try:
        text = p.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read keys file {p} as UTF-8 text: {exc}") from None
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            obj = yaml.safe_load(text)
        else:
            obj = json.loads(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError
        raise ConfigError(f"keys file {p} is not valid {'YAML' if p.suffix in ('.yaml', '.yml') else 'JSON'}: "
                          f"{exc}") from None
    return parse_keys(obj, str(p))


@dataclass(frozen=True)
class KeyRecord:
    """A key as stored: what the server needs to authorise and limit a request."""

    key_hash: str
    name: str
    budget: int | None
    used: int
    rate: float | None
    burst: float | None
    active: bool

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else max(self.budget - self.used, 0)


@dataclass(frozen=True)
class Charge:
    """The outcome of :meth:`KeyStore.charge`."""

    ok: bool
    used: int
    budget: int | None
    seq: int

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else max(self.budget - self.used, 0)


class KeyStore:
    """Keys, budgets and the audit log in one SQLite file (``":memory:"`` for a throw-away store).

    Thread-safe (one connection guarded by a lock) and multi-process safe (SQLite locking).

    Args:
        path: the SQLite file, created if absent.
        keys: keys to upsert (see module docstring); None keeps what the file holds.
        anonymous_budget: with no keys at all the server is open; its single ``anonymous``
            account gets this budget (None: unlimited).
        synchronous: SQLite ``synchronous`` pragma; ``"FULL"`` makes every charge durable against
            power loss, ``"NORMAL"`` only against process crashes (faster).
    """

    def __init__(self, path: str | Path = ":memory:", *, keys: list[KeySpec] | None = None,
                 anonymous_budget: int | None = None, synchronous: str = "FULL") -> None:
        ab = anonymous_budget
        if ab is not None and (isinstance(ab, bool) or not isinstance(ab, int) or ab < 0):
            raise InputError(f"the open API's budget must be an integer >= 0 or None, got {ab!r}")
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            self._db = open_sqlite(self.path, synchronous)
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the server state file {self.path}: {exc}") from None
        if keys is not None:
            self.sync_keys(keys)
        self.open = self._count_active() == 0
        if self.open:
            self._upsert(KeySpec(ANONYMOUS, key_sha256=hash_key(ANONYMOUS), budget=anonymous_budget), active=True)

    # ------------------------------------------------------------------ keys
    def _count_active(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM keys WHERE active = 1 AND name != ?",
                                    (ANONYMOUS,)).fetchone()[0])

    def _upsert(self, s: KeySpec, *, active: bool) -> None:
        self._db.execute(
            "INSERT INTO keys (key_hash, name, budget, used, rate, burst, active, created) VALUES (?,?,?,0,?,?,?,?) "
            "ON CONFLICT(key_hash) DO UPDATE SET name=excluded.name, budget=excluded.budget, rate=excluded.rate, "
            "burst=excluded.burst, active=excluded.active",
            (s.key_hash, s.name, s.budget, s.rate, s.burst, int(active), time.time()))

    def sync_keys(self, keys: list[KeySpec]) -> None:
        """Make ``keys`` the active set: upsert them (``used`` kept), deactivate every other key."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("UPDATE keys SET active = 0")
                for s in keys:
                    self._upsert(s, active=True)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def lookup(self, key: str | None) -> KeyRecord | None:
        """The active key record for a secret (the anonymous account on an open server), else None."""
        h = hash_key(ANONYMOUS) if self.open else (hash_key(key) if key else None)
        if h is None:
            return None
        with self._lock:
            row = self._db.execute("SELECT key_hash, name, budget, used, rate, burst, active FROM keys "
                                   "WHERE key_hash = ? AND active = 1", (h,)).fetchone()
        return None if row is None else KeyRecord(row[0], row[1], row[2], int(row[3]), row[4], row[5], bool(row[6]))

    def usage(self) -> dict[str, dict[str, Any]]:
        """``{name: {"used", "budget", "active"}}`` for every key ever known."""
        with self._lock:
            rows = self._db.execute("SELECT name, used, budget, active FROM keys ORDER BY name").fetchall()
        return {r[0]: {"used": int(r[1]), "budget": r[2], "active": bool(r[3])} for r in rows}

    # ------------------------------------------------------------------ charging
    def _key_usage(self, key_hash: str) -> tuple[str, int | None, int]:
        """``(name, budget, used)`` of a key, read inside the caller's transaction (InputError if unknown)."""
        row = self._db.execute("SELECT name, budget, used FROM keys WHERE key_hash = ?", (key_hash,)).fetchone()
        if row is None:
            raise InputError("unknown key")
        return row[0], row[1], int(row[2])

    def charge(self, key_hash: str, n: int, digest: str, *, audit_refusals: bool = True) -> Charge:
        """Atomically charge ``n`` images to a key and append the audit row, or refuse.

        The check, the charge and the audit row are one committed transaction: on return the charge
        is durable. A refusal (the batch would exceed the budget) charges nothing and, with
        ``audit_refusals``, is audited with outcome ``budget_exceeded``.
        """
        if n < 0:
            raise InputError(f"cannot charge a negative number of images, got {n}")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                name, budget, used = self._key_usage(key_hash)
                ok = budget is None or used + n <= budget
                if ok:
                    used += n
                    self._db.execute("UPDATE keys SET used = ? WHERE key_hash = ?", (used, key_hash))
                seq = 0
                if ok or audit_refusals:
                    cur = self._db.execute(
                        "INSERT INTO audit (time, key_name, images, sha256, outcome, used_after) VALUES (?,?,?,?,?,?)",
                        (time.time(), name, n, digest, "charged" if ok else "budget_exceeded", used))
                    seq = int(cur.lastrowid or 0)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return Charge(ok, used, budget, seq)

    def refund(self, key_hash: str, n: int, digest: str) -> None:
        """Give back ``n`` images after the model failed to answer (audited as ``refunded``)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("UPDATE keys SET used = MAX(used - ?, 0) WHERE key_hash = ?", (n, key_hash))
                name, used = self._db.execute("SELECT name, used FROM keys WHERE key_hash = ?",
                                              (key_hash,)).fetchone()
                self._db.execute(
                    "INSERT INTO audit (time, key_name, images, sha256, outcome, used_after) VALUES (?,?,?,?,?,?)",
                    (time.time(), name, -n, digest, "refunded", int(used)))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ stateful detection
    def banned(self, key_hash: str) -> str | None:
        """The reason a key is banned (a stateful detector flagged it with ``--on-detect ban``), else None."""
        with self._lock:
            row = self._db.execute("SELECT reason FROM bans WHERE key_hash = ?", (key_hash,)).fetchone()
        return None if row is None else str(row[0])

    def record_detection(self, key_hash: str, n: int, digest: str, *, flagged: int, score: float, action: str,
                         charge: bool, ban: bool = False) -> Charge:
        """One committed transaction for a request the detector flagged and the server refuses
        (``action`` ``"rejected"``/``"banned"``/``"refused_banned"``): charge it when ``charge`` (and the budget
        allows), append the audit row (outcome ``attack_suspected``, ``images`` = images charged), the
        detection row and, with ``ban``, the ban."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                name, budget, used = self._key_usage(key_hash)
                charged = n if charge and (budget is None or used + n <= budget) else 0
                if charged:
                    used += charged
                    self._db.execute("UPDATE keys SET used = ? WHERE key_hash = ?", (used, key_hash))
                now = time.time()
                cur = self._db.execute(
                    "INSERT INTO audit (time, key_name, images, sha256, outcome, used_after) VALUES (?,?,?,?,?,?)",
                    (now, name, charged, digest, "attack_suspected", used))
                self._db.execute("INSERT INTO detections (time, key_name, images, flagged, score, action, charged) "
                                 "VALUES (?,?,?,?,?,?,?)", (now, name, n, flagged, score, action, charged))
                if ban:
                    reason = (f"stateful detector flagged {flagged} of {n} image(s) (score {score:g}) at "
                              f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
                    self._db.execute("INSERT OR IGNORE INTO bans (key_hash, key_name, time, reason) VALUES (?,?,?,?)",
                                     (key_hash, name, now, reason))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return Charge(bool(charged), used, budget, int(cur.lastrowid or 0))

    def log_detection(self, key_name: str, n: int, *, flagged: int, score: float, charged: int) -> None:
        """A flagged request answered anyway (``--on-detect log``): one detection row."""
        with self._lock:
            self._db.execute("INSERT INTO detections (time, key_name, images, flagged, score, action, charged) "
                             "VALUES (?,?,?,?,?,?,?)", (time.time(), key_name, n, flagged, score, "logged", charged))

    # ------------------------------------------------------------------ audit
    def audit_rows(self, since: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Audit rows with ``seq > since`` in order (``seq, time, key, images, sha256, outcome, used_after``)."""
        q = "SELECT seq, time, key_name, images, sha256, outcome, used_after FROM audit WHERE seq > ? ORDER BY seq"
        args: tuple[Any, ...] = (since,)
        if limit is not None:
            q += " LIMIT ?"
            args = (since, limit)
        with self._lock:
            rows = self._db.execute(q, args).fetchall()
        cols = ("seq", "time", "key", "images", "sha256", "outcome", "used_after")
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


__all__ = ["ANONYMOUS", "Charge", "KeyRecord", "KeySpec", "KeyStore", "check_state_file", "hash_key",
           "load_keys_file", "parse_keys"]
