"""Stateful detectors (Blacklight, PIHA): near-duplicates flagged, distinct images not, exact repeats
passed, state persisted in SQLite (a new detector on the same file remembers), scopes, bounds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bbdefense.defenses.stateful import DETECTORS, PIHA, Blacklight, make_detector
from bbdefense.errors import ConfigError, InputError, UnknownNameError
from stateful_helpers import SHAPE, digits


def probes(x0: torch.Tensor, n: int, seed: int = 1, eps: float = 0.3) -> torch.Tensor:
    """A query attack's probes: each changes one small square of the previous one by +-eps (Square-like)."""
    g = torch.Generator().manual_seed(seed)
    cur, out = x0.clone(), []
    for _ in range(n):
        r, c = (int(v) for v in torch.randint(0, 25, (2,), generator=g))
        cur = cur.clone()
        cur[:, :, r:r + 3, c:c + 3] = (x0[:, :, r:r + 3, c:c + 3] + eps * (2 * torch.randint(0, 2, (), generator=g)
                                                                             - 1)).clamp(0, 1)
        out.append(cur)
    return torch.cat(out)


@pytest.mark.parametrize("name", ["blacklight", "piha"])
def test_probes_flagged_distinct_images_not(name: str) -> None:
    det = make_detector(name)
    benign = det.observe("benign", digits(150))
    assert not any(d.flagged for d in benign)
    x0 = digits(1, seed=9)
    dec = det.observe("attacker", torch.cat([x0, probes(x0, 10)]))
    assert not dec[0].flagged  # the first query matches nothing
    first = next(i for i, d in enumerate(dec) if d.flagged)
    assert first <= 4 and sum(d.flagged for d in dec) >= 2
    assert det.stored() == 150 + sum(not d.repeat for d in dec)


def test_blacklight_fingerprint_is_content_based_and_salted() -> None:
    a, b = Blacklight(seed=0), Blacklight(seed=1)
    x = digits(2)
    fa = a.fingerprint(x[0].numpy())
    assert fa == a.fingerprint(x[0].clone().numpy()) and len(fa) == 50  # content, not index
    assert len(set(fa) & set(a.fingerprint(x[1].numpy()))) < 10
    assert len(set(fa) & set(b.fingerprint(x[0].numpy()))) == 0  # another secret salt: other hashes
    near = x[0].clone()
    near[0, 10, 10] = 1 - near[0, 10, 10]
    assert len(set(fa) & set(a.fingerprint(near.numpy()))) >= 40  # one pixel: most windows unchanged


def test_exact_repeats_pass_unless_disabled() -> None:
    x = digits(3)
    det = Blacklight()
    det.observe("u", x)
    again = det.observe("u", x[:1])[0]
    assert again.repeat and not again.flagged and det.stored() == 3
    strict = Blacklight(allow_repeats=False)
    strict.observe("u", x)
    d = strict.observe("u", x[:1])[0]
    assert d.flagged and d.score == 50 and not d.repeat


def test_state_persists_in_sqlite_and_config_is_bound(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite3"
    x0 = digits(1, seed=3)
    det = Blacklight(db_path=db)
    det.observe("eve", x0)
    det.close()
    again = Blacklight(db_path=db)  # a restart: the old query is still there
    d = again.observe("eve", probes(x0, 1))[0]
    assert d.flagged and d.match == 1
    again.close()
    with pytest.raises(ConfigError, match="built with"):
        Blacklight(db_path=db, threshold=20)
    p = PIHA(db_path=db)  # another detector in the same file keeps its own tables
    p.observe("eve", x0)
    p.close()
    assert PIHA(db_path=db)._hashes.size == 1


def test_scope_global_matches_across_accounts_account_scope_does_not() -> None:
    x0 = digits(1, seed=4)
    pr = probes(x0, 2)
    for scope, flagged in (("global", True), ("account", False)):
        det = Blacklight(scope=scope)
        det.observe("sybil-1", torch.cat([x0, pr[:1]]))
        assert det.observe("sybil-2", pr[1:])[0].flagged is flagged


def test_max_stored_bounds_the_matching_window() -> None:
    x0 = digits(1, seed=5)
    det = Blacklight(max_stored=5)
    det.observe("a", x0)
    det.observe("a", digits(6, seed=6))  # pushes x0 out of the newest 5
    assert not det.observe("a", probes(x0, 1))[0].flagged


def test_bad_configs_are_refused() -> None:
    with pytest.raises(InputError, match="threshold"):
        Blacklight(threshold=60)
    with pytest.raises(InputError, match="scope"):
        Blacklight(scope="world")  # type: ignore[arg-type]  # the bad value is the point
    with pytest.raises(ConfigError, match="rejected its config"):
        make_detector("blacklight", windw=3)
    with pytest.raises(UnknownNameError):
        DETECTORS["nope"]
    with pytest.raises(InputError, match="N >= 1"):
        Blacklight().observe("a", torch.zeros(0, *SHAPE))


def test_in_memory_index_merges_and_reloads_without_changing_decisions(tmp_path: Path) -> None:
    x0 = digits(1, seed=7)
    stream = torch.cat([digits(30, seed=8), x0, probes(x0, 12, seed=3)])
    ref = Blacklight()
    want = [(d.flagged, d.score, d.match) for d in ref.observe("a", stream)]
    det = Blacklight(db_path=tmp_path / "s.db")
    det._index.merge_at = 100  # merge every two images
    got = []
    for i in range(0, len(stream), 5):
        got += [(d.flagged, d.score, d.match) for d in det.observe("a", stream[i:i + 5])]
        if i == 20:  # a restart in the middle: the index is rebuilt from the log
            det.close()
            det = Blacklight(db_path=tmp_path / "s.db")
    assert got == want and det._index.keys.size > 0
