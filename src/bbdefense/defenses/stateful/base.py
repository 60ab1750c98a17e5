"""The stateful-detector contract: ``observe(account, images) -> decisions``, state in SQLite.

A stateful defense sees every query an API answers and flags an account whose queries look like a
query attack (many near-identical images). Members (registry :data:`DETECTORS`):

* ``blacklight`` (:mod:`.blacklight`): Li et al., "Blacklight: Scalable Defense for Neural Networks
  against Query-Based Black-Box Attacks", USENIX Security 2022 (content fingerprints, match counter).
* ``piha`` (:mod:`.piha`): Choi et al., "PIHA: Detection method using perceptual image hashing against
  query-based adversarial attacks", Computers & Security 2023 (perceptual hashes, Hamming neighbours).

State (tables ``<name>_queries`` and the detector's own: every stored query's fingerprint, the query log,
the configuration it was built with) lives in one SQLite file, normally the server's own state file
(:mod:`bbdefense.serve.store`): every :meth:`StatefulDetector.observe` commits before it returns (WAL
journal, ``synchronous=NORMAL``: durable against a crash or ``kill -9`` of the process; ``FULL`` for power
loss too), so a restarted
server still matches new queries against the old ones. Opening a state file built with another
configuration (another salt, window, threshold...) is refused: fingerprints would silently differ.

Scope: ``"global"`` (the paper's setting) matches a query against every stored query of every account,
so splitting an attack over several accounts (Sybil) does not hide it, and the account that sent the
matching query is flagged; ``"account"`` matches only within one account (no cross-user matches; a
Sybil split then delays detection by about the number of accounts).

Exact repeats: with ``allow_repeats`` (default) an image byte-identical to a stored query of the same
scope is answered without being matched or stored again: on a deterministic model a repeat reveals
nothing new, and benign clients repeat images. On a randomized model (RND, RFD) repeats are samples of
the noise (what EOT averages): set ``allow_repeats=False`` there.

Decision rules: by default every *hit* (the member's own test: Blacklight's match threshold, PIHA's
neighbour count) is flagged, the papers' rule. The hit rule (``min_hits``, ``hit_window``; ours) flags a
hit only when at least ``min_hits`` of the account's last ``hit_window`` stored queries were hits: a query
attack hits on almost every query, a benign client that re-sends an edited copy of an earlier image now
and then does not (measured trade-off: docs/stateful-defense.md, "Edited copies"). Its state is the
``hit`` column of the query log, committed with every ``observe``. The recency rule (``recent_window``;
ours) counts a hit only when one of the stored queries it matches is among the account's own last
``recent_window`` stored queries, or (global scope) another account's: a query attack's probes follow each
other, a benign client's edited copies of one image are spread over its traffic, and a near-duplicate from
another key is what a Sybil split looks like (measured: docs/stateful-defense.md, "The recency rule").

Bounds: at most ``max_stored`` queries take part in matching (the newest); per query, time is bounded
by the fingerprint size (Blacklight: binary searches of its hashes; PIHA: one vectorised Hamming scan;
both in an in-memory index rebuilt from SQLite on start), memory by the index: ``16 * top_k *
max_stored`` bytes (Blacklight) or ``8 * max_stored`` bytes (PIHA); the SQLite writes are appends.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from torch import Tensor

from ...errors import ConfigError, InputError
from ...registry import Registry
from ...utils import open_sqlite

Scope = Literal["global", "account"]

BASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS detector_meta (name TEXT PRIMARY KEY, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {name}_queries (
    qid INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    account TEXT NOT NULL,
    tag INTEGER NOT NULL,          -- the scope's key: 0 (global) or the account's 64-bit tag
    digest INTEGER NOT NULL,       -- 64 bits of SHA-256 of the image bytes (exact repeats)
    score REAL NOT NULL,
    flagged INTEGER NOT NULL,
    hit INTEGER NOT NULL DEFAULT 0 -- the member's own test fired (the paper's flag; the hit rule counts these)
);
CREATE INDEX IF NOT EXISTS {name}_queries_digest ON {name}_queries (digest, tag);
"""
HIT_INDEX = "CREATE INDEX IF NOT EXISTS {name}_queries_account ON {name}_queries (account, qid);"
#: decision-rule parameters at the paper's values: left out of the configuration a state file is bound to,
#: so a file written before the rule existed opens unchanged
PAPER_RULE = {"min_matches": 1, "min_hits": 1, "hit_window": 1, "recent_window": 0}


def int64(b: bytes) -> int:
    """The first 8 bytes of ``b`` as a signed 64-bit integer (what SQLite stores as INTEGER)."""
    return int.from_bytes(b[:8], "little", signed=True)


def account_tag(account: str) -> int:
    """A 64-bit tag of an account name (mixed into fingerprints in ``"account"`` scope)."""
    return int64(hashlib.sha256(b"bbdefense-account:" + account.encode("utf-8")).digest()) or 1


@dataclass(frozen=True)
class Decision:
    """The detector's verdict on one image.

    ``score``: Blacklight: the most fingerprint hashes shared with one stored query; PIHA: the number
    of stored queries within the Hamming radius. ``match``: the stored query (``qid``) matched best,
    or None. ``qid``: the id this image was stored under (a repeat: the stored original's id).
    ``matches``: the distinct stored queries that match it (Blacklight: share at least ``threshold``
    hashes; PIHA: within the radius, equal to ``score``), what the near-duplicate count rule counts.
    ``hit``: the member's own test fired (the paper's flag); ``hits``: the account's hits among its last
    ``hit_window`` stored queries, this one included (0 when this one is no hit).
    """

    flagged: bool
    score: float
    match: int | None
    qid: int
    repeat: bool = False
    matches: int = 0
    hit: bool = False
    hits: int = 0


def _check_int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise InputError(f"{name} must be an integer >= {lo}, got {v!r}")
    return v


class StatefulDetector(ABC):
    """A per-account detector of query attacks whose state lives in a SQLite file.

    Args:
        db_path: the SQLite file (normally the server's state file), ``":memory:"`` for a throw-away one.
        scope: ``"global"`` (the paper) or ``"account"`` (see the module docstring).
        max_stored: the newest queries that take part in matching (the memory/time bound).
        allow_repeats: exact repeats pass unmatched and unstored (see the module docstring).
        synchronous: SQLite durability of the detector's commits (``NORMAL`` survives ``kill -9``).
        seed: the secret of the fingerprint (salt), part of the configuration.
        min_hits, hit_window: the hit rule (ours, not the papers'): a query is flagged only when the
            member's own test fires on it (a *hit*) and at least ``min_hits`` of the account's last
            ``hit_window`` stored queries (itself included) were hits. ``min_hits=1``: the paper's rule
            (every hit is flagged). A query attack hits on almost every query; a benign client that
            re-sends an edited copy of an earlier image hits once, rarely several times in a row.
        recent_window: the recency rule (ours; 0 = off, the papers'): the member's test counts as a hit only
            when one of the stored queries it matches is among the account's own last ``recent_window``
            stored queries (the attacker's previous probes) or, in global scope, another account's (a Sybil
            split); a client's edited copy of an image it sent long before matches, but not recently.
    """

    name: ClassVar[str]
    table_schema: ClassVar[str] = ""

    def __init__(self, *, db_path: str | Path = ":memory:", scope: Scope = "global", max_stored: int = 1_000_000,
                 allow_repeats: bool = True, synchronous: str = "NORMAL", seed: int = 0, min_hits: int = 1,
                 hit_window: int = 1, recent_window: int = 0) -> None:
        if scope not in ("global", "account"):
            raise InputError(f"scope must be 'global' or 'account', got {scope!r}")
        self.scope: Scope = scope
        self.max_stored = _check_int("max_stored", max_stored, 1)
        self.allow_repeats = bool(allow_repeats)
        self.seed = _check_int("seed", seed, 0)
        self.min_hits = _check_int("min_hits", min_hits, 1)
        self.hit_window = _check_int("hit_window", hit_window, 1)
        self.recent_window = _check_int("recent_window", recent_window, 0)
        if self.min_hits > self.hit_window:
            raise InputError(f"min_hits ({min_hits}) cannot exceed hit_window ({hit_window}): nothing would be flagged")
        self.db_path = str(db_path)
        self._lock = threading.Lock()
        try:
            self._db = open_sqlite(self.db_path, synchronous)
            self._db.executescript(BASE_SCHEMA.format(name=self.name) + self.table_schema)
            cols = {r[1] for r in self._db.execute(f"PRAGMA table_info({self.name}_queries)")}
            if "hit" not in cols:  # a state file written before the hit rule: its queries count as no hits
                self._db.execute(f"ALTER TABLE {self.name}_queries ADD COLUMN hit INTEGER NOT NULL DEFAULT 0")
            self._db.execute(HIT_INDEX.format(name=self.name))
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the detector state in {self.db_path}: {exc}") from None
        self._synchronous = synchronous.upper()

    def _bind_config(self) -> None:
        """Record this detector's configuration in the file, or refuse a file built with another one."""
        params = {k: v for k, v in self.get_params().items() if PAPER_RULE.get(k, object()) != v}
        cfg = json.dumps(params | {"detector": self.name}, sort_keys=True)
        row = self._db.execute("SELECT config FROM detector_meta WHERE name = ?", (self.name,)).fetchone()
        if row is None:
            self._db.execute("INSERT INTO detector_meta (name, config) VALUES (?, ?)", (self.name, cfg))
        elif row[0] != cfg:
            raise ConfigError(f"the state file {self.db_path} holds a {self.name} detector built with {row[0]}; "
                              f"this one is {cfg}: use that configuration or another state file")

    # ------------------------------------------------------------------ contract
    @abstractmethod
    def get_params(self) -> dict[str, Any]:
        """The configuration (round-trips: ``type(d)(db_path=..., **d.get_params())``)."""

    @abstractmethod
    def _match(self, image: np.ndarray, tag: int, newest: int) -> tuple[float, int | None, Any, np.ndarray]:
        """Score ``image`` against the stored queries of scope ``tag`` (qids > ``newest - max_stored``);
        returns (score, best match, the fingerprint to store, the ids of the distinct stored queries that
        match: what the count rule counts and the recency rule looks up)."""

    @abstractmethod
    def _store(self, qid: int, tag: int, fingerprint: Any) -> None:
        """Store the fingerprint of query ``qid`` (inside the observe transaction)."""

    @abstractmethod
    def _flag(self, score: float, matches: int) -> bool:
        """The member's own test (a *hit*): whether a score and the count of matching stored queries raise
        the alarm; the hit rule (``min_hits``) then decides over the account's recent hits."""

    def observe(self, account: str, images: Tensor) -> list[Decision]:
        """Match each image of ``images`` ``(N, C, H, W)`` in [0, 1] (in order: image ``i`` also sees images
        ``< i`` of the batch) against the stored queries, store it, and decide. Committed on return."""
        if images.dim() != 4 or images.shape[0] == 0:
            raise InputError(f"observe takes a batch (N, C, H, W) with N >= 1, got shape {tuple(images.shape)}")
        arr = images.detach().cpu().float().numpy()
        tag = account_tag(account) if self.scope == "account" else 0
        out: list[Decision] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                newest = int(self._db.execute(f"SELECT COALESCE(MAX(qid), 0) FROM {self.name}_queries").fetchone()[0])
                for img in arr:
                    digest = int64(hashlib.sha256(np.ascontiguousarray(img).tobytes()).digest())
                    if self.allow_repeats:
                        row = self._db.execute(
                            f"SELECT qid, flagged, score FROM {self.name}_queries WHERE digest = ? AND tag = ? "
                            "AND qid > ? LIMIT 1", (digest, tag, newest - self.max_stored)).fetchone()
                        if row is not None:
                            out.append(Decision(False, 0.0, int(row[0]), int(row[0]), repeat=True))
                            continue
                    score, match, fp, matched = self._match(img, tag, newest)
                    matches = int(matched.size)
                    hit = self._flag(score, matches)
                    if hit and self.recent_window:
                        hit = self._recent_or_foreign(account, matched)
                    hits = int(hit)
                    if hit and self.min_hits > 1:  # the account's hits among its last hit_window - 1 queries
                        hits += int(self._db.execute(
                            f"SELECT COALESCE(SUM(hit), 0) FROM (SELECT hit FROM {self.name}_queries WHERE account = ? "
                            "ORDER BY qid DESC LIMIT ?)", (account, self.hit_window - 1)).fetchone()[0])
                    flagged = hit and hits >= self.min_hits
                    newest += 1
                    self._db.execute(f"INSERT INTO {self.name}_queries (qid, time, account, tag, digest, score, "
                                     "flagged, hit) VALUES (?,?,?,?,?,?,?,?)",
                                     (newest, time.time(), account, tag, digest, score, int(flagged), int(hit)))
                    self._store(newest, tag, fp)
                    out.append(Decision(flagged, score, match, newest, matches=matches, hit=hit, hits=hits))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._rollback()
                raise
        return out

    def _recent_or_foreign(self, account: str, matched: np.ndarray) -> bool:
        """The recency rule: whether a ``matched`` stored query (newest first, at most 256 read) is one of
        ``account``'s last ``recent_window`` queries or another account's (in global scope a near-duplicate
        from another key is the Sybil signal and keeps the paper's rule)."""
        ids = np.sort(matched)[::-1][:256].tolist()
        if not ids:
            return False
        row = self._db.execute(
            f"SELECT MIN(qid) FROM (SELECT qid FROM {self.name}_queries WHERE account = ? ORDER BY qid DESC "
            "LIMIT ?)", (account, self.recent_window)).fetchone()
        lo = row[0] if row is not None and row[0] is not None else 1 << 62  # no own queries: none is recent
        marks = ",".join("?" * len(ids))
        found = self._db.execute(f"SELECT 1 FROM {self.name}_queries WHERE qid IN ({marks}) AND "
                                 "(account != ? OR qid >= ?) LIMIT 1", (*ids, account, lo)).fetchone()
        return found is not None

    def _rollback(self) -> None:  # noqa: B027  (an optional hook: detectors without a memory cache keep it empty)
        """Undo in-memory state of an aborted :meth:`observe` (detectors with a memory cache)."""

    def stored(self) -> int:
        """Queries stored (all accounts)."""
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM {self.name}_queries").fetchone()[0])

    def flagged_by_account(self) -> dict[str, dict[str, Any]]:
        """``{account: {"queries", "flagged", "first_flag_qid"}}`` over the stored log."""
        with self._lock:
            rows = self._db.execute(
                "SELECT account, COUNT(*), SUM(flagged), MIN(CASE WHEN flagged = 1 THEN qid END) "
                f"FROM {self.name}_queries GROUP BY account ORDER BY account").fetchall()
        return {r[0]: {"queries": int(r[1]), "flagged": int(r[2] or 0), "first_flag_qid": r[3]} for r in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"


DETECTORS: Registry[type[StatefulDetector]] = Registry("stateful detector")


def make_detector(name: str, *, db_path: str | Path = ":memory:", **config: Any) -> StatefulDetector:
    """``DETECTORS[name](db_path=db_path, **config)``; an unknown keyword raises :class:`ConfigError` naming it."""
    cls = DETECTORS[name]
    try:
        return cls(db_path=db_path, **config)
    except TypeError as exc:
        raise ConfigError(f"detector {name!r} rejected its config {config}: {exc}") from None


__all__ = ["DETECTORS", "PAPER_RULE", "Decision", "Scope", "StatefulDetector", "account_tag", "int64", "make_detector"]
