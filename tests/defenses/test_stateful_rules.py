"""The decision rules beside the paper's: the near-duplicate count rule (``min_matches``: flagged only
when at least ``k`` distinct stored queries match) and the hit rule (``min_hits`` of the account's last
``hit_window`` queries matched). Benign edited copies pass, an attack's probe sequence is flagged at the
expected query, the state both rules read survives a restart, and state files written before them open."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch

from bbdefense.defenses.stateful import PIHA, Blacklight
from bbdefense.errors import ConfigError, InputError
from stateful_helpers import digits


def near_copies(x0: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` near-duplicates of ``x0`` ``(1, C, H, W)``: each flips one pixel of it (any two share most windows)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        y = x0.clone()
        r, c = (int(v) for v in torch.randint(0, 28, (2,), generator=g))
        y[0, 0, r, c] = 1 - y[0, 0, r, c]
        out.append(y)
    return torch.cat(out)


def test_edited_copies_under_k_pass_the_paper_rule_flags_them() -> None:
    imgs = digits(40, seed=11)
    # a benign client re-sends each image twice, lightly edited
    copies = torch.cat([torch.cat([imgs[i:i + 1], near_copies(imgs[i:i + 1], 2, seed=i)]) for i in range(40)])
    paper = Blacklight()  # min_matches=1: Li et al.'s rule
    flagged = [d.flagged for d in paper.observe("benign", copies)]
    assert sum(flagged) >= 20  # an edited copy shares most windows with its original
    rule = Blacklight(min_matches=3)
    dec = rule.observe("benign", copies)
    assert not any(d.flagged for d in dec)
    assert max(d.matches for d in dec) == 2  # each copy matches its original and the other copy, no more
    assert [d.score for d in dec] == [d.score for d in Blacklight().observe("benign", copies)]  # scores unchanged


@pytest.mark.parametrize("k", [1, 3, 5])
def test_probe_sequence_is_flagged_at_query_k_plus_1(k: int) -> None:
    x0 = digits(1, seed=12)
    seq = torch.cat([x0, near_copies(x0, 12, seed=4)])  # every probe matches all earlier ones
    det = Blacklight(min_matches=k)
    det.observe("benign", digits(20, seed=13))
    dec = det.observe("mallory", seq)
    assert [d.matches for d in dec] == list(range(len(seq)))
    first = next(i for i, d in enumerate(dec) if d.flagged)
    assert first == k  # 0-based: the (k+1)-th query is the first with k matching stored queries


def test_piha_threshold_is_its_count_rule() -> None:
    x0 = digits(1, seed=14)
    seq = torch.cat([x0, near_copies(x0, 6, seed=5)])
    dec = PIHA(threshold=4).observe("mallory", seq)
    assert [d.matches for d in dec] == [int(d.score) for d in dec]
    assert [d.flagged for d in dec] == [d.matches >= 4 for d in dec] and any(d.flagged for d in dec)


def test_count_rule_state_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite3"
    x0 = digits(1, seed=15)
    seq = torch.cat([x0, near_copies(x0, 5, seed=6)])
    ref = [d.flagged for d in Blacklight(min_matches=4).observe("eve", seq)]
    det = Blacklight(db_path=db, min_matches=4)
    before = det.observe("eve", seq[:3])
    det.close()
    again = Blacklight(db_path=db, min_matches=4)  # a restart: the matches stored before it still count
    after = again.observe("eve", seq[3:])
    assert [d.flagged for d in before + after] == ref == [False] * 4 + [True] * 2
    assert after[0].matches == 3 and after[1].matches == 4


def test_min_matches_is_validated_and_bound_to_the_state_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="min_matches"):
        Blacklight(min_matches=0)
    db = tmp_path / "state.sqlite3"
    Blacklight(db_path=db, min_matches=3).close()
    assert Blacklight(db_path=db, min_matches=3).get_params()["min_matches"] == 3


def test_hit_rule_passes_spread_edited_copies_and_flags_a_probe_run() -> None:
    imgs = digits(30, seed=16)
    # a benign client: 10 images, then edited copies of four of them, each followed by two new images
    stream = torch.cat([imgs[:10]] + [torch.cat([near_copies(imgs[i:i + 1], 1, seed=i), imgs[10 + 2 * j:12 + 2 * j]])
                                      for j, i in enumerate(range(0, 10, 3))])
    paper = [d.flagged for d in Blacklight().observe("benign", stream)]
    rule = Blacklight(min_hits=3, hit_window=5)
    dec = rule.observe("benign", stream)
    assert sum(paper) >= 3 and not any(d.flagged for d in dec)
    assert [d.hit for d in dec] == paper  # a hit is the paper's flag
    x0 = digits(1, seed=17)
    run = rule.observe("mallory", torch.cat([x0, near_copies(x0, 6, seed=7)]))
    assert [d.hits for d in run] == [0, 1, 2, 3, 4, 5, 5]  # hits among the last hit_window (5) stored queries
    assert [d.flagged for d in run] == [False, False, False, True, True, True, True]


def test_hit_rule_state_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite3"
    x0 = digits(1, seed=18)
    seq = torch.cat([x0, near_copies(x0, 3, seed=8)])
    det = PIHA(db_path=db, threshold=1, min_hits=3, hit_window=4)
    before = det.observe("eve", seq[:3])
    det.close()
    after = PIHA(db_path=db, threshold=1, min_hits=3, hit_window=4).observe("eve", seq[3:])
    assert [d.flagged for d in before] == [False] * 3 and after[0].flagged and after[0].hits == 3


def test_rule_parameters_are_validated_and_old_state_files_open(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="min_hits"):
        Blacklight(min_hits=4, hit_window=3)
    db = tmp_path / "old.sqlite3"
    ref = Blacklight()
    old_cfg = {k: v for k, v in ref.get_params().items()
               if k not in ("min_matches", "min_hits", "hit_window", "recent_window")}
    con = sqlite3.connect(db)  # a state file written before the decision rules existed
    con.executescript(
        "CREATE TABLE detector_meta (name TEXT PRIMARY KEY, config TEXT NOT NULL);"
        "CREATE TABLE blacklight_queries (qid INTEGER PRIMARY KEY, time REAL NOT NULL, account TEXT NOT NULL, "
        "tag INTEGER NOT NULL, digest INTEGER NOT NULL, score REAL NOT NULL, flagged INTEGER NOT NULL);")
    con.execute("INSERT INTO detector_meta VALUES ('blacklight', ?)",
                (json.dumps(old_cfg | {"detector": "blacklight"}, sort_keys=True),))
    con.commit()
    con.close()
    det = Blacklight(db_path=db)  # the paper's rule: the same configuration, the file opens and gains the hit column
    x0 = digits(1, seed=19)
    assert [d.flagged for d in det.observe("eve", torch.cat([x0, near_copies(x0, 1, seed=9)]))] == [False, True]
    det.close()
    with pytest.raises(ConfigError, match="built with"):
        Blacklight(db_path=db, min_hits=2, hit_window=3)  # another rule: bound like every other parameter


# ---------------------------------------------------------------------------------------------- recency rule
@pytest.mark.parametrize("cls", [Blacklight, PIHA])
def test_recency_rule_passes_a_late_copy_and_flags_consecutive_probes(cls) -> None:  # type: ignore[no-untyped-def]
    """``recent_window=w``: a hit counts only when a matching stored query is among the account's own last
    ``w`` queries. A benign client's edited copy of an image it sent twelve images earlier passes (the paper's
    rule flags it); an attacker's probes, each matching the ones before, are flagged from the second on."""
    kw = {"threshold": 1} if cls is PIHA else {}  # PIHA's paper threshold needs 3 neighbours; one copy has 1
    imgs = digits(12, seed=21)
    benign = torch.cat([imgs, near_copies(imgs[:1], 1, seed=7)])  # the copy of image 0 comes 12 queries later
    assert cls(**kw).observe("b", benign)[-1].flagged  # the paper's rule: any matching stored query
    assert not cls(recent_window=5, **kw).observe("b", benign)[-1].flagged
    assert cls(recent_window=12, **kw).observe("b", benign)[-1].flagged  # image 0 is its 12th-last query
    x0 = digits(1, seed=22)
    probes = torch.cat([x0, near_copies(x0, 6, seed=8)])
    det = cls(recent_window=2, **kw)
    det.observe("b", digits(10, seed=23))
    assert [d.flagged for d in det.observe("mallory", probes)] == [False] + [True] * 6


def test_recency_rule_keeps_cross_account_matches_in_global_scope() -> None:
    """In global scope a near-duplicate of *another* account's query still flags (the Sybil signal, as in the
    paper's rule), however old; a client's own old image does not, its own recent one does."""
    x0, others = digits(1, seed=24), digits(12, seed=25)
    copies = near_copies(x0, 3, seed=9)
    det = Blacklight(recent_window=5)
    det.observe("alice", x0)
    det.observe("alice", others)  # alice's x0 is now 13 queries back
    assert not det.observe("alice", copies[:1])[0].flagged  # her own old image, lightly edited: passes
    assert det.observe("alice", copies[1:2])[0].flagged  # a probe right after the previous one: flagged
    assert det.observe("bob", copies[2:])[0].flagged  # bob's first query matches alice's: flagged
    acc = Blacklight(recent_window=5, scope="account")
    acc.observe("alice", x0)
    assert not acc.observe("bob", copies[2:])[0].flagged  # account scope: no cross-account matches at all


def test_recency_rule_is_bound_to_the_state_file(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    Blacklight(db_path=db, recent_window=5).close()
    with pytest.raises(ConfigError, match="recent_window"):
        Blacklight(db_path=db)
    Blacklight(db_path=db, recent_window=5).close()
    with pytest.raises(InputError, match="recent_window must be an integer >= 0"):
        Blacklight(recent_window=-1)
