"""PIHA (Choi et al., "PIHA: Detection method using perceptual image hashing against query-based
adversarial attacks", Computers & Security 2023): perceptual hashes of every query and a count of
near neighbours in Hamming distance.

Hash of an image ``(C, H, W)`` in [0, 1] (the classic DCT perceptual hash the paper builds on):
grey (channel mean) -> bilinear resize to ``size x size`` -> 2-D DCT-II -> the ``bits x bits``
lowest frequencies -> one bit per coefficient: above the median of those coefficients (DC excluded
from the median). Two images are *similar* when their hashes differ in at most ``radius`` bits; a
query is flagged when at least ``threshold`` stored queries (of its scope, among the newest
``max_stored``) are similar to it. A query attack's probes stay close to one image, so their hashes
collide; benign traffic spreads.

Unlike Blacklight (exact window hashes), a perceptual hash is robust to small global changes, so
noise added by an adaptive attacker must be larger to escape it; the price is more benign collisions
between look-alike images (on MNIST, two thin "1"s).

Cost per image: one resize and two small matrix products, then one vectorised XOR/popcount over the
stored hashes (8 bytes per stored query in memory, ``max_stored`` at most: 0.8 MB per 100,000).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import InputError
from .base import DETECTORS, Scope, StatefulDetector, _check_int

SCHEMA = """
CREATE TABLE IF NOT EXISTS piha_hashes (qid INTEGER PRIMARY KEY, tag INTEGER NOT NULL, hash INTEGER NOT NULL);
"""


def dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix ``(n, n)``: ``D @ v`` is the DCT of a vector ``v``."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d


@DETECTORS.register("piha")
class PIHA(StatefulDetector):
    """Perceptual-hash detector (see the module docstring); state in SQLite, hashes cached in memory.

    Args:
        size: the side the grey image is resized to before the DCT (32, as pHash).
        bits: the side of the low-frequency block kept (8: a 64-bit hash).
        radius: Hamming distance at most which two hashes are similar.
        threshold: similar stored queries that flag.
        db_path, scope, max_stored, allow_repeats, synchronous, seed, min_hits, hit_window, recent_window: see
            :class:`StatefulDetector`.
    """

    name = "piha"
    table_schema = SCHEMA

    def __init__(self, *, size: int = 32, bits: int = 8, radius: int = 2, threshold: int = 3,
                 db_path: str | Path = ":memory:", scope: Scope = "global", max_stored: int = 1_000_000,
                 allow_repeats: bool = True, synchronous: str = "NORMAL", seed: int = 0, min_hits: int = 1,
                 hit_window: int = 1, recent_window: int = 0) -> None:
        self.size = _check_int("size", size, 2)
        self.bits = _check_int("bits", bits, 2)
        if self.bits > self.size or self.bits * self.bits > 64:
            raise InputError(f"bits must be <= size and bits**2 <= 64, got bits={bits}, size={size}")
        self.radius = _check_int("radius", radius, 0)
        self.threshold = _check_int("threshold", threshold, 1)
        super().__init__(db_path=db_path, scope=scope, max_stored=max_stored, allow_repeats=allow_repeats,
                         synchronous=synchronous, seed=seed, min_hits=min_hits, hit_window=hit_window,
                         recent_window=recent_window)
        self._bind_config()
        self._dct = dct_matrix(self.size)[: self.bits]
        rows = self._db.execute("SELECT qid, tag, hash FROM piha_hashes ORDER BY qid DESC LIMIT ?",
                                (self.max_stored,)).fetchall()[::-1]
        self._qids = np.array([r[0] for r in rows], dtype=np.int64)
        self._tags = np.array([r[1] for r in rows], dtype=np.int64)
        self._hashes = np.array([r[2] for r in rows], dtype=np.int64).view(np.uint64)
        self._pending: list[tuple[int, int, int]] = []

    def get_params(self) -> dict[str, Any]:
        return {"size": self.size, "bits": self.bits, "radius": self.radius, "threshold": self.threshold,
                "scope": self.scope, "max_stored": self.max_stored, "allow_repeats": self.allow_repeats,
                "seed": self.seed, "min_hits": self.min_hits, "hit_window": self.hit_window,
                "recent_window": self.recent_window}

    def phash(self, image: np.ndarray) -> int:
        """The perceptual hash of one image ``(C, H, W)`` as a signed 64-bit int."""
        grey = torch.from_numpy(np.ascontiguousarray(image.mean(axis=0), dtype=np.float32))[None, None]
        small = torch.nn.functional.interpolate(grey, size=(self.size, self.size), mode="bilinear",
                                                align_corners=False)[0, 0].double().numpy()
        coef = (self._dct @ small @ self._dct.T).reshape(-1)
        med = np.median(coef[1:])
        bits = (coef > med).astype(np.uint64)
        v = int((bits << np.arange(bits.size, dtype=np.uint64)).sum())
        return v - (1 << 64) if v >= 1 << 63 else v

    def _match(self, image: np.ndarray, tag: int, newest: int) -> tuple[float, int | None, Any, np.ndarray]:
        h = self.phash(image)
        qids, tags, hashes = self._qids, self._tags, self._hashes
        if self._pending:  # images earlier in this batch
            p = np.array(self._pending, dtype=np.int64)
            qids = np.concatenate([qids, p[:, 0]])
            tags = np.concatenate([tags, p[:, 1]])
            hashes = np.concatenate([hashes, p[:, 2].view(np.uint64)])
        keep = (tags == tag) & (qids > newest - self.max_stored)
        none = np.empty(0, dtype=np.int64)
        if not keep.any():
            return 0.0, None, h, none
        dist = np.bitwise_count(hashes[keep] ^ np.uint64(h & ((1 << 64) - 1)))
        near = np.flatnonzero(dist <= self.radius)
        if near.size == 0:
            return 0.0, None, h, none
        best = near[np.argmin(dist[near])]
        return float(near.size), int(qids[keep][best]), h, qids[keep][near]

    def _store(self, qid: int, tag: int, fingerprint: Any) -> None:
        self._db.execute("INSERT INTO piha_hashes (qid, tag, hash) VALUES (?,?,?)", (qid, tag, int(fingerprint)))
        self._pending.append((qid, tag, int(fingerprint)))

    def observe(self, account: str, images: torch.Tensor) -> list[Any]:
        out = super().observe(account, images)
        if self._pending:  # committed: move this batch's hashes into the cache, keep the newest max_stored
            p = np.array(self._pending, dtype=np.int64)
            self._pending = []
            self._qids = np.concatenate([self._qids, p[:, 0]])[-self.max_stored:]
            self._tags = np.concatenate([self._tags, p[:, 1]])[-self.max_stored:]
            self._hashes = np.concatenate([self._hashes, p[:, 2].view(np.uint64)])[-self.max_stored:]
        return out

    def _rollback(self) -> None:
        self._pending = []

    def _flag(self, score: float, matches: int) -> bool:
        return matches >= self.threshold


__all__ = ["PIHA", "dct_matrix"]
