"""Choose a stateful detector's decision rule from measurements (issue 17): trace, then sweep offline.

``trace``: every attack of the detector table runs once through the served API with the detector in
``log`` mode (nothing rejected), and per observed image the statistics every candidate rule needs are
recorded: Blacklight: for each stored query, the hashes it shares with the new one, as a histogram
(``hist[c]`` = stored queries sharing exactly ``c`` hashes, c >= 10); PIHA: the Hamming distances to the
stored hashes as a histogram (d <= 8). The benign streams go to the same recording detector directly.

``sweep``: every setting (Blacklight: match threshold ``T`` x distinct matching stored queries ``k``;
PIHA: radius x threshold) is evaluated offline on the traces. A setting fires at the first image where
its rule holds; in plain mode the request holding it is rejected and the attack ends there, so the
attack is *detected* iff the rule fires anywhere in its log-mode trace (the trace ends at the attack's
success), its success counts only when it does not fire, and ``first_detection`` = images answered in
earlier requests + 1 (identical to ``bbdefense evaluate-detector --modes plain``).

    python benchmarks/detector_sweep.py trace --detector blacklight -n 50 --benign 30000 --out runs/sweep-bl
    python benchmarks/detector_sweep.py sweep runs/sweep-bl
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from bbdefense.defenses.stateful import DETECTORS
from bbdefense.defenses.stateful.blacklight import Blacklight
from bbdefense.defenses.stateful.piha import PIHA
from bbdefense.evaluation.intervals import proportion_ci

TRACE: list[dict[str, Any]] = []
RULE = ["count"]
MAX_TRACE = [0]


class TraceFull(Exception):
    """Raised after ``--max-trace`` observed images: the rest of the attack is not traced."""
REQUEST = [0]


class _Rec:
    """Mixin: record per matched image its request number and the candidate statistics, and keep one
    union-find per match level (an edge: a stored query that matches) for the cluster-size rule."""

    LEVELS: tuple[int, ...] = ()

    def observe(self, account, images):  # type: ignore[no-untyped-def]
        REQUEST[0] += 1
        if MAX_TRACE[0] and len(TRACE) >= MAX_TRACE[0]:
            raise TraceFull
        return super().observe(account, images)  # type: ignore[misc]

    def _cluster(self, qid: int, near: dict[int, list[int]]) -> dict[str, int]:
        if not hasattr(self, "_uf"):
            self._uf = {lv: ({}, {}) for lv in self.LEVELS}
        out = {}
        for lv, (parent, size) in self._uf.items():
            parent[qid], size[qid] = qid, 1

            def root(a: int, parent: dict[int, int] = parent) -> int:
                while parent[a] != a:
                    parent[a] = parent[parent[a]]
                    a = parent[a]
                return a

            for q in near.get(lv, []):
                ra, rb = root(qid), root(q)
                if ra != rb:
                    if size[ra] < size[rb]:
                        ra, rb = rb, ra
                    parent[rb] = ra
                    size[ra] += size[rb]
            out[str(lv)] = size[root(qid)]
        return out


class BlacklightRec(_Rec, Blacklight):
    LEVELS = (20, 25, 30)

    def _match(self, image, tag, newest):  # type: ignore[no-untyped-def]
        keys = [h ^ tag for h in self.fingerprint(image)]
        qids = self._index.lookup(keys, newest - self.max_stored, self.max_per_hash, self._pending)
        hist = [0] * 41
        near: list[list[int]] = []
        by_level: dict[int, list[int]] = {}
        if qids.size:
            ids, counts = np.unique(qids, return_counts=True)
            keep = counts >= 10
            h = np.bincount(counts[keep] - 10, minlength=41)
            hist = h.tolist()
            near = [[int(q), int(c)] for q, c in zip(ids[keep], counts[keep], strict=True) if c >= 15]
            by_level = {lv: ids[counts >= lv].tolist() for lv in self.LEVELS}
        TRACE.append({"req": REQUEST[0], "qid": newest + 1, "hist": hist, "near": near,
                      "comp": self._cluster(newest + 1, by_level)})
        return super()._match(image, tag, newest)


class PIHARec(_Rec, PIHA):
    LEVELS = (0, 1, 2, 3)

    def _match(self, image, tag, newest):  # type: ignore[no-untyped-def]
        h = self.phash(image)
        hashes, qids = self._hashes, self._qids
        if self._pending:
            p = np.array(self._pending, dtype=np.int64)
            hashes = np.concatenate([hashes, p[:, 2].view(np.uint64)])
            qids = np.concatenate([qids, p[:, 0]])
        dist = np.bitwise_count(hashes ^ np.uint64(h & ((1 << 64) - 1))) if hashes.size else np.empty(0, int)
        hist = np.bincount(np.minimum(dist, 9), minlength=10)[:9].tolist()
        near = [[int(q), int(d)] for q, d in zip(qids[dist <= 4], dist[dist <= 4], strict=True)]
        by_level = {lv: qids[dist <= lv].tolist() for lv in self.LEVELS}
        TRACE.append({"req": REQUEST[0], "qid": newest + 1, "hist": hist, "near": near,
                      "comp": self._cluster(newest + 1, by_level)})
        return super()._match(image, tag, newest)


DETECTORS.add("blacklight_rec", BlacklightRec)
DETECTORS.add("piha_rec", PIHARec)


def trace(args: argparse.Namespace) -> None:
    from bbdefense.attacks.oars import sybil_blackbox  # noqa: F401  (same import path as the CLI)
    from bbdefense.cli.options import resolve_splits
    from bbdefense.evaluation.attacks import build_attack, first_correct
    from bbdefense.evaluation.detector import ATTACKS_TABLE, benign_stream
    from bbdefense.models import model_source
    from bbdefense.serve.local import local_accounts
    from bbdefense.serve.model import build_served_blackbox

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    MAX_TRACE[0] = args.max_trace
    rec = f"{args.detector}_rec"
    src = model_source(args.model)
    owner = src.blackbox()
    served = build_served_blackbox(args.model)
    _, splits, _ = resolve_splits(None, None, meta=src.meta(), split_seed=None)
    test = splits.test
    sel, _, _ = first_correct(owner, test.x, test.y, args.n)
    x, y, idx = test.x[sel], test.y[sel], [int(i) for i in sel]
    path = out / "attacks.jsonl"
    done = {json.loads(ln)["key"] for ln in path.open()} if path.exists() else set()
    open_server = functools.partial(local_accounts, served, detector=rec, on_detect="log")
    attacks = [] if args.attacks == "none" else args.attacks.split(",") if args.attacks else list(ATTACKS_TABLE)
    with path.open("a") as f:
        for name in attacks:
            for i in range(len(x)):
                key = f"{name}/{idx[i]}"
                if key in done:
                    continue
                TRACE.clear()
                REQUEST[0] = 0
                atk = build_attack(name, norm="linf", eps=0.3, max_queries=args.budget, seed=args.seed + idx[i])
                truncated = False
                with open_server(1) as bbs:
                    try:
                        ok = bool(atk.run(bbs[0], x[i:i + 1], y[i:i + 1]).success[0])
                    except Exception as exc:  # the server answers 500 to TraceFull: not traced further
                        if MAX_TRACE[0] == 0 or len(TRACE) < MAX_TRACE[0]:
                            raise
                        ok, truncated = False, type(exc).__name__
                    st = bbs[0].stats
                    used = int(st.queries + st.audit_queries)
                f.write(json.dumps({"key": key, "attack": name, "idx": idx[i], "success": ok, "truncated": truncated,
                                    "queries": used, "trace": [{k: v for k, v in t.items()
                                                                if k != "near" or args.keep_near}
                                                               for t in TRACE]}) + "\n")
                f.flush()
    streams = [("plain", args.benign_plain, 0.0, args.seed), ("augmented", args.benign, 0.5, args.seed)]
    streams += [("augmented", args.benign_client, 0.5, args.seed + j) for j in range(args.clients)]
    for label, n, p, seed in streams:
        bp = out / f"benign_{label}_{n}_s{seed}.json"
        if bp.exists() or n == 0:
            continue
        TRACE.clear()
        REQUEST[0] = 0
        det = DETECTORS[rec]()
        stream, kinds = benign_stream(test.x, n, seed=seed, p_augment=p)
        reps = []
        for j in range(0, n, 64):
            reps += [d.repeat for d in det.observe("benign", stream[j:j + 64])]
        det.close()
        it = iter(TRACE)
        rows = [None if r else next(it) for r in reps]
        bp.write_text(json.dumps({"kinds": kinds, "trace": rows}))


# ---------------------------------------------------------------- offline sweep
def _n_at(hist: list[int], det: str, t: int) -> int:
    """Stored queries matching under threshold/radius ``t``."""
    if det == "blacklight":
        return sum(hist[max(t - 10, 0):])
    return sum(hist[: t + 1])


def fires(tr: dict[str, Any], det: str, t: int, k: int, window: int | None = None) -> bool:
    if RULE[0] == "cluster":
        return tr["comp"][str(t)] >= k
    if RULE[0] == "recent" and tr.get("near") is None:
        raise SystemExit("the recent rule needs traces with matching ids: trace with --keep-near")
    if window is None or tr.get("near") is None:
        return _n_at(tr["hist"], det, t) >= k
    lo = tr["qid"] - window
    ok = (lambda c: c >= t) if det == "blacklight" else (lambda c: c <= t)
    return sum(1 for q, c in tr["near"] if q > lo and ok(c)) >= k


def flags(trace: list[dict[str, Any] | None], det: str, t: int, k: int, window: int | None) -> list[bool]:
    """Per stored query of one account: the rule's decision. ``count``/``cluster``: ``k`` matching stored
    queries / a cluster of ``k``; ``hits``: the query matches (``k=1`` test) and at least ``k`` of the
    account's last ``window`` stored queries (itself included) matched."""
    if RULE[0] != "hits":
        return [tr is not None and fires(tr, det, t, k, window) for tr in trace]
    out, recent = [], []
    for tr in trace:
        if tr is None:
            out.append(False)
            continue
        hit = _n_at(tr["hist"], det, t) >= 1
        recent = [*recent, hit][-(window or 1):]
        out.append(hit and sum(recent) >= k)
    return out


def attack_outcome(row: dict[str, Any], det: str, t: int, k: int, window: int | None = None
                   ) -> tuple[bool, bool, int | None]:
    """(detected, success before detection, first_detection) of one traced attack under (t, k)."""
    cur_req, cur_start = None, 0
    for before, (tr, f) in enumerate(zip(row["trace"], flags(row["trace"], det, t, k, window), strict=True)):
        if tr["req"] != cur_req:
            cur_req, cur_start = tr["req"], before
        if f:
            return True, False, cur_start + 1
    return False, bool(row["success"]), None


def sweep(args: argparse.Namespace) -> None:
    out = Path(args.out)
    det = args.detector
    RULE[0] = args.rule
    rows = [json.loads(ln) for ln in (out / "attacks.jsonl").open()]
    benign = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("benign_*.json"))}
    by_attack: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_attack.setdefault(r["attack"], []).append(r)
    ts = [int(v) for v in args.t.split(",")]
    ks = [int(v) for v in args.k.split(",")]
    windows = [None] + [int(v) for v in args.windows.split(",") if v]
    results = []
    for t in ts:
        for k in ks:
            for w in windows:
                res: dict[str, Any] = {"t": t, "k": k, "window": w, "benign": {}, "attacks": {}}
                for name, b in benign.items():
                    fl = flags(b["trace"], det, t, k, w)
                    n, f = len(fl), sum(fl)
                    group = name.rsplit("_s", 1)[0]  # independent clients of one stream size: pooled
                    f0, n0, _ = res["benign"].get(group, (0, 0, 0.0))
                    res["benign"][group] = (f0 + f, n0 + n, 1e4 * proportion_ci(f0 + f, n0 + n)[1])
                if w is None or RULE[0] in ("hits", "recent"):
                    for name, g in by_attack.items():
                        o = [attack_outcome(r, det, t, k, w) for r in g]
                        first = [q for d, _, q in o if d and q is not None]
                        res["attacks"][name] = (sum(d for d, _, _ in o), len(o), sum(s for _, s, _ in o),
                                                statistics.median(first) if first else None)
                results.append(res)
    (out / f"sweep-{RULE[0]}.json").write_text(json.dumps(results))
    names = list(by_attack)
    print("| t | k | window | " + " | ".join(benign) + " | " + " | ".join(names) + " |")
    for r in results:
        bcols = [f"{f} / {n} (<= {hi:.1f})" for f, n, hi in r["benign"].values()]
        acols = [f"{d}/{n} med {m} s{s}" for d, n, s, m in r["attacks"].values()] or ["-"] * len(names)
        print(f"| {r['t']} | {r['k']} | {r['window']} | " + " | ".join(bcols) + " | " + " | ".join(acols) + " |")


def table(args: argparse.Namespace) -> None:
    """The trade-off table of the docs: one row per ``rule:t:k[:window]`` of ``--settings``."""
    out = Path(args.out)
    sweeps = {r: json.loads((out / f"sweep-{r}.json").read_text()) for r in ("count", "hits")
              if (out / f"sweep-{r}.json").exists()}
    names: list[str] = []
    lines = []
    for spec in args.settings.split(","):
        rule, t, k, *w = spec.split(":")
        win = int(w[0]) if w else None
        row = next(r for r in sweeps[rule] if r["t"] == int(t) and r["k"] == int(k) and r["window"] == win)
        names = names or list(row["attacks"])
        label = {"count": f"count: T={t}, min_matches={k}", "hits": f"hits: T={t}, min_hits={k}, hit_window={win}"}
        label = f"paper: T={t}" if int(k) == 1 else label[rule]
        cells = []
        for key in ("benign_augmented_10000", "benign_augmented_30000"):
            f, n, hi = row["benign"][key]
            cells.append(f"{f}/{n} = {1e4 * f / n:.1f} (<= {hi:.1f})")
        for a in names:
            d, n, _s, m = row["attacks"][a]
            cells.append(f"{100 * d / n:.0f}% ({m if m is not None else '-'})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    print("| rule | edited stream, 3 clients x 10,000: flagged, per 10,000 (95% upper) | one client, 30,000 | "
          + " | ".join(names) + " |")
    print("|---" * (3 + len(names)) + "|")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("trace")
    a.add_argument("--detector", default="blacklight", choices=["blacklight", "piha"])
    a.add_argument("--model", default="/work/main/runs/cache/target_smallcnn_mnist5k")
    a.add_argument("-n", type=int, default=50)
    a.add_argument("--budget", type=int, default=1000)
    a.add_argument("--attacks", default="")
    a.add_argument("--benign", type=int, default=30_000)
    a.add_argument("--benign-plain", type=int, default=30_000)
    a.add_argument("--benign-client", type=int, default=10_000, help="queries per client of the --clients streams")
    a.add_argument("--clients", type=int, default=3, help="independent benign clients (seeds seed..seed+clients-1)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--max-trace", type=int, default=0,
                   help="stop tracing an attack after this many images (0: run it to its budget); such an attack "
                        "counts as not successful (it had not succeeded yet) and, if no rule fired, undetected")
    a.add_argument("--keep-near", action="store_true",
                   help="keep each attack query's matching stored queries (ids and shared hashes): what the "
                        "recency rule (--rule recent) needs")
    a.add_argument("--out", required=True)
    s = sub.add_parser("sweep")
    s.add_argument("out")
    s.add_argument("--detector", default="blacklight", choices=["blacklight", "piha"])
    s.add_argument("--t", default="20,25,30,35,40")
    s.add_argument("--k", default="1,2,3,4,5,6,8,10,15,20")
    s.add_argument("--windows", default="")
    s.add_argument("--rule", default="count", choices=["count", "cluster", "hits", "recent"],
                   help="count: >= k stored queries match; cluster: the query's near-duplicate cluster has >= k; "
                        "hits: >= k of the account's last WINDOW stored queries matched; recent: >= k of the "
                        "account's last WINDOW stored queries match this one (traces with --keep-near)")
    tb = sub.add_parser("table")
    tb.add_argument("out")
    tb.add_argument("--settings", required=True, help="comma-separated rule:t:k[:window], e.g. count:25:1,hits:20:4:5")
    args = ap.parse_args()
    {"trace": trace, "sweep": sweep, "table": table}[args.cmd](args)


if __name__ == "__main__":
    main()
