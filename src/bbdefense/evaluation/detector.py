"""Evaluating a stateful detector (:mod:`bbdefense.defenses.stateful`) the way the papers do:
query attacks through the served API, and benign query streams.

Attacks (:func:`detection_rows`): each attacked image is a fresh attacker on a fresh server state
(``open_server(k)`` opens a server with a new detector state and ``k`` API keys and yields one client
black box per key, e.g. ``HttpBlackBox`` on ``create_app(..., detector=..., on_detect="reject")``),
attacked alone (batch 1) with a query budget. Three modes:

* ``plain``: the registry attack as is. A rejection (:class:`~bbdefense.errors.QueryRejected`) ends it:
  *detected*, at the query count of the rejected request (the images answered before it, plus one).
  ``success`` = the attack succeeded before any detection (it stops at success, so a finished run).
* ``oars``: the same attack wrapped in :class:`~bbdefense.attacks.oars.OARS` (adapts to rejections);
  ``success`` is re-checked on the owner's model (``owner``), ``rejected`` counts refused requests.
* ``sybil``: the plain attack with its requests rotated over ``k`` keys
  (:func:`~bbdefense.attacks.oars.sybil_blackbox`).

Benign streams (:func:`benign_stream`, :func:`false_positives`): the test split in random order with
repeats (drawn with replacement), and with probability ``p_augment`` one small benign change per query:
horizontal flip, a shifted crop (up to 2 pixels), brightness x U(0.8, 1.2), JPEG-like quantisation
(8x8 block DCT, coefficients rounded to a step of 0.1). They are fed to the detector directly (its
decisions are content-based: the HTTP path adds nothing to them); false positives are reported per
10,000 queries with a 95% Clopper-Pearson upper bound.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..attacks.oars import OARS, sybil_blackbox
from ..defenses.stateful import StatefulDetector
from ..defenses.stateful.piha import dct_matrix
from ..errors import InputError, QueryRejected
from ..events import EventCallback, emit
from ..models import BlackBox
from ..records import RowWriter
from ..utils import make_generator
from .attacks import build_attack
from .intervals import proportion_ci

#: the non-adaptive black-box attacks of the registry that the detector table covers
ATTACKS_TABLE = ("square", "nes", "bandits", "signhunter", "simba", "rays", "signflip", "hsja")
Mode = Literal["plain", "oars", "sybil"]
ServerFactory = Callable[[int], AbstractContextManager[Sequence[BlackBox]]]


def _used(bb: BlackBox) -> int:
    st = bb.stats
    return int(st.queries + st.audit_queries)


def detection_rows(open_server: ServerFactory, attack: str, x: Tensor, y: Tensor, index: Sequence[int], *,
                   budget: int, mode: Mode = "plain", eps: float = 0.3, norm: str = "linf", seed: int = 0,
                   accounts: int = 5, owner: BlackBox | None = None, oars_params: dict[str, Any] | None = None,
                   writer: RowWriter | None = None, on_event: EventCallback | None = None) -> list[dict[str, Any]]:
    """One row per image: ``attack, mode, idx, label, detected, first_detection, rejected, success, queries``.

    ``queries``: images the attacker got answered (its local count, audits included); ``first_detection``:
    the query count at the first rejection (None when never rejected). ``owner`` (the unmonitored model)
    is needed for ``mode="oars"``. Rows already in ``writer`` are skipped (resume)."""
    if mode not in ("plain", "oars", "sybil"):
        raise InputError(f"mode must be plain, oars or sybil, got {mode!r}")
    if mode == "oars" and owner is None:
        raise InputError("mode='oars' needs the owner's model to re-check success (owner=)")
    if len(x) != len(y) or len(x) != len(index):
        raise InputError(f"x, y and index differ in length: {len(x)}, {len(y)}, {len(index)}")
    rows: list[dict[str, Any]] = []
    emit(on_event, "start", f"{attack} ({mode})", total=len(x), unit="images")
    for i in range(len(x)):
        key = f"{attack}/{mode}/{int(index[i])}"
        if writer is not None and key in writer.done:
            emit(on_event, "advance", f"{attack} ({mode})", n=1)
            continue
        atk = build_attack(attack, norm=norm, eps=eps, max_queries=budget, seed=seed + int(index[i]))
        xi, yi = x[i:i + 1], y[i:i + 1]
        row: dict[str, Any] = {"key": key, "attack": attack, "mode": mode, "idx": int(index[i]), "label": int(yi)}
        with open_server(accounts if mode == "sybil" else 1) as bbs:
            bb = sybil_blackbox(list(bbs)) if mode == "sybil" else bbs[0]
            if mode == "oars":
                o = OARS(atk, seed=seed + int(index[i]), **(oars_params or {})).run(bb, xi, yi)
                ok = False
                if o.result is not None and owner is not None:  # success re-checked on the owner's model
                    out = owner.audit(o.result.x_adv)
                    ok = bool((out if owner.output == "label" else out.argmax(1))[0] != yi[0])
                row.update(detected=o.rejected > 0, first_detection=o.first_rejection, rejected=o.rejected, success=ok,
                           queries=_used(bb), sent=o.sent, stopped=o.stopped, sigma=round(o.sigma, 4))
            else:
                try:
                    res = atk.run(bb, xi, yi)
                    row.update(detected=False, first_detection=None, rejected=0, success=bool(res.success[0]),
                               queries=_used(bb))
                except QueryRejected:
                    row.update(detected=True, first_detection=_used(bb) + 1, rejected=1, success=False,
                               queries=_used(bb))
        rows.append(row)
        if writer is not None:
            writer.write(row)
        emit(on_event, "advance", f"{attack} ({mode})", n=1, queries=row["queries"])
    emit(on_event, "end", f"{attack} ({mode})")
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Detection rate (95% CI), median queries to the first detection, success rate before detection
    (plain) or despite the detector (oars), median rejections and queries, over ``rows`` of one setting."""
    n = len(rows)
    det = sum(bool(r["detected"]) for r in rows)
    ok = sum(bool(r["success"]) for r in rows)
    first = [r["first_detection"] for r in rows if r.get("first_detection") is not None]
    return {"n": n, "detected": det, "detection_rate": det / n if n else float("nan"),
            "detection_ci": proportion_ci(det, n),
            "median_first_detection": statistics.median(first) if first else None,
            "success": ok, "success_rate": ok / n if n else float("nan"), "success_ci": proportion_ci(ok, n),
            "median_rejected": statistics.median(r["rejected"] for r in rows) if n else None,
            "median_queries": statistics.median(r["queries"] for r in rows) if n else None}


def jpeg_like(x: Tensor, step: float = 0.1) -> Tensor:
    """JPEG-like lossy quantisation of ``(N, C, H, W)``: 8x8 block orthonormal DCT, coefficients rounded
    to multiples of ``step``, inverse DCT, clipped to [0, 1] (the image is zero-padded to multiples of 8)."""
    n, c, h, w = x.shape
    ph, pw = (-h) % 8, (-w) % 8
    xp = F.pad(x, (0, pw, 0, ph))
    d = torch.from_numpy(dct_matrix(8)).to(x.dtype)
    blocks = xp.unfold(2, 8, 8).unfold(3, 8, 8)  # (N, C, H/8, W/8, 8, 8)
    coef = d @ blocks @ d.T
    coef = torch.round(coef / step) * step
    rec = d.T @ coef @ d
    out = rec.permute(0, 1, 2, 4, 3, 5).reshape(n, c, h + ph, w + pw)[:, :, :h, :w]
    return out.clamp(0.0, 1.0)


AUGMENTATIONS = ("flip", "crop", "brightness", "jpeg")


def augment(x: Tensor, kind: str, g: torch.Generator) -> Tensor:
    """One small benign change of ``x`` ``(1, C, H, W)`` (see :data:`AUGMENTATIONS`)."""
    if kind == "flip":
        return x.flip(3)
    if kind == "crop":
        dy, dx = (int(v) for v in torch.randint(0, 5, (2,), generator=g))
        return F.pad(x, (2, 2, 2, 2))[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]
    if kind == "brightness":
        return (x * (0.8 + 0.4 * torch.rand((), generator=g))).clamp(0.0, 1.0)
    if kind == "jpeg":
        return jpeg_like(x)
    raise InputError(f"unknown augmentation {kind!r}; choose one of {', '.join(AUGMENTATIONS)}")


def benign_stream(x: Tensor, n: int, *, seed: int = 0, p_augment: float = 0.5) -> tuple[Tensor, list[str]]:
    """``n`` benign queries from the images ``x``: random order with repeats (drawn with replacement),
    each changed by one random augmentation with probability ``p_augment``. Returns the queries
    ``(n, C, H, W)`` and what was done to each (``"none"`` or an augmentation)."""
    if n < 1 or not 0 <= p_augment <= 1:
        raise InputError(f"need n >= 1 and 0 <= p_augment <= 1, got n={n}, p_augment={p_augment}")
    g = make_generator(seed)
    pick = torch.randint(0, len(x), (n,), generator=g)
    out, kinds = [], []
    for i in pick.tolist():
        xi = x[i:i + 1]
        kind = "none"
        if float(torch.rand((), generator=g)) < p_augment:
            kind = AUGMENTATIONS[int(torch.randint(0, len(AUGMENTATIONS), (), generator=g))]
            xi = augment(xi, kind, g)
        out.append(xi)
        kinds.append(kind)
    return torch.cat(out), kinds


def false_positives(detector: StatefulDetector, stream: Tensor, kinds: Sequence[str] | None = None, *,
                    account: str = "benign", batch: int = 64) -> dict[str, Any]:
    """Feed a benign ``stream`` to ``detector`` as one account; flagged images are false positives.
    Returns ``n``, ``flagged``, ``per_10k`` and its 95% upper bound ``per_10k_hi``, and per kind of query."""
    flags: list[bool] = []
    for i in range(0, len(stream), batch):
        flags += [d.flagged for d in detector.observe(account, stream[i:i + batch])]
    n, k = len(flags), sum(flags)
    by_kind: dict[str, list[int]] = {}
    for f, kind in zip(flags, kinds or ["none"] * n, strict=True):
        c = by_kind.setdefault(kind, [0, 0])
        c[0] += 1
        c[1] += int(f)
    return {"n": n, "flagged": k, "per_10k": 1e4 * k / n, "per_10k_hi": 1e4 * proportion_ci(k, n)[1],
            "by_kind": {kk: {"n": v[0], "flagged": v[1]} for kk, v in sorted(by_kind.items())}}


def pool_false_positives(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pool :func:`false_positives` results of independent benign clients (each its own detector state)
    into one: counts add up, the rate and its 95% upper bound are recomputed over all their queries."""
    if not parts:
        raise InputError("pool_false_positives needs at least one result")
    n, k = sum(p["n"] for p in parts), sum(p["flagged"] for p in parts)
    kinds: dict[str, dict[str, int]] = {}
    for p in parts:
        for kind, v in p["by_kind"].items():
            c = kinds.setdefault(kind, {"n": 0, "flagged": 0})
            c["n"] += v["n"]
            c["flagged"] += v["flagged"]
    return {"n": n, "flagged": k, "per_10k": 1e4 * k / n, "per_10k_hi": 1e4 * proportion_ci(k, n)[1],
            "by_kind": dict(sorted(kinds.items())), "clients": len(parts)}


def _pct(k: int, n: int) -> str:
    lo, hi = proportion_ci(k, n)
    return f"{k}/{n} = {100 * k / n:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]" if n else "-"


def add_detector_tables(run: Any, rows: Sequence[dict[str, Any]], fps: Sequence[tuple[str, dict[str, Any]]], *,
                        detector: str, eps: float, budget: int, accounts: int, section: str) -> None:
    """The paper-style tables of a detector evaluation into ``run`` (a :class:`~bbdefense.records.RunDir`):
    one row per (attack, mode), and one per benign stream."""
    from ..records import table

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["attack"], r["mode"]), []).append(r)
    out = []
    for (attack, mode), g in groups.items():
        s = summarize(g)
        multi = [r for r in g if r["detected"] or not (r["success"] and r["queries"] <= 1)]
        out.append([attack, mode, _pct(s["detected"], s["n"]),
                    _pct(sum(bool(r["detected"]) for r in multi), len(multi)),
                    "-" if s["median_first_detection"] is None else s["median_first_detection"],
                    _pct(s["success"], s["n"]), s["median_rejected"], s["median_queries"]])
    run.add_table({**table(f"{detector}: query attacks through the served API", [
        "attack", "mode", "detected (95% CI)", "detected, attacks of >1 query", "median queries to 1st detection",
        "attack success (plain: before detection)", "median rejected requests", "median queries answered"], out,
        f"linf eps={eps:g}, budget {budget} queries/image, one fresh attacker and server state per image, "
        f"batch 1; on detection the server rejects (403 attack_suspected). plain: the registry attack (a rejection "
        f"ends it); oars: OARS-adapted (re-draws rejected queries, success re-checked on the owner's model); "
        f"sybil: requests rotated over {accounts} keys. '>1 query': leaving out images the attack fooled with its "
        "first query, which no stateful detector can see."), "section": section})
    if fps:
        run.add_table({**table(f"{detector}: benign false positives", [
            "benign stream", "queries", "flagged", "per 10,000", "95% upper bound per 10,000", "flagged by kind"],
            [[label, f["n"], f["flagged"], round(f["per_10k"], 2), round(f["per_10k_hi"], 2),
              ", ".join(f"{k} {v['flagged']}/{v['n']}" for k, v in f["by_kind"].items())] for label, f in fps],
            "one account; test images drawn with replacement (so repeated), each changed with the given "
            "probability by one of: horizontal flip, shifted crop (<= 2 px), brightness x U(0.8, 1.2), "
            "JPEG-like 8x8 DCT quantisation"), "section": section})


__all__ = [
    "ATTACKS_TABLE",
    "AUGMENTATIONS",
    "add_detector_tables",
    "augment",
    "benign_stream",
    "detection_rows",
    "false_positives",
    "jpeg_like",
    "pool_false_positives",
    "summarize",
]
