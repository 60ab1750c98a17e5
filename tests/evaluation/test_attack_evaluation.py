"""The one attack pipeline (bbdefense.evaluation.attacks): rows equal the attack's own result, an
interrupted run resumes to the same rows without duplicates, the curve and the interval are right."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from scipy.stats import beta

from bbdefense.attacks import ATTACKS
from bbdefense.defenses import RandomNoiseDefense
from bbdefense.evaluation.attacks import (
    attack_blackbox,
    attack_inputs,
    draw_targets,
    evaluate_attack,
    evaluation_from_rows,
    query_grid,
)
from bbdefense.events import Event
from bbdefense.models import BlackBox
from bbdefense.records import RowWriter, read_rows


def _data(model: torch.nn.Module, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return x, model(x).argmax(1)


def _bb(model: torch.nn.Module) -> BlackBox:
    return BlackBox.from_module(model, input_shape=(1, 8, 8), num_classes=10)


def test_rows_are_the_attacks_own_result(linear_model) -> None:  # type: ignore[no-untyped-def]
    x, y = _data(linear_model)
    direct_bb = _bb(linear_model)
    res = ATTACKS["square"](norm="linf", eps=0.05, max_queries=30, seed=4).run(direct_bb, x, y)
    bb = _bb(linear_model)
    ev = evaluate_attack(bb, "square", x, y, list(range(10, 18)), budget=30, norm="linf", eps=0.05, seed=4,
                         batch_size=len(x))
    assert [r["idx"] for r in ev.rows] == list(range(10, 18)) and ev.new == 8
    assert [r["success"] for r in ev.rows] == res.success.tolist()
    assert [r["queries"] for r in ev.rows] == res.queries.tolist()
    assert [r["norm"] for r in ev.rows] == pytest.approx(res.norms.tolist(), abs=0)
    assert [r["label"] for r in ev.rows] == y.tolist()
    assert sum(r["queries"] for r in ev.rows) == bb.stats.queries == direct_bb.stats.queries
    # the summary: robust accuracy, n, and the exact two-sided 95% Clopper-Pearson interval
    k = int((~res.success).sum())
    s = ev.summary
    assert s["n"] == 8 and s["robust_accuracy"] == pytest.approx(k / 8)
    lo, hi = s["robust_accuracy_ci"]
    assert lo == pytest.approx(0.0 if k == 0 else beta.ppf(0.025, k, 8 - k + 1))
    assert hi == pytest.approx(1.0 if k == 8 else beta.ppf(0.975, k + 1, 8 - k))
    assert lo <= s["robust_accuracy"] <= hi
    # the curve at the budget is the robust accuracy; below, an image counts fooled once its queries are spent
    assert ev.grid == query_grid(30) and ev.curve[-1] == pytest.approx(k / 8)
    for b, c in zip(ev.grid, ev.curve, strict=True):
        fooled = sum(1 for ok, q in zip(res.success.tolist(), res.queries.tolist(), strict=True) if ok and q <= b)
        assert c == pytest.approx(1 - fooled / 8)


def test_an_attack_object_and_batches(linear_model) -> None:  # type: ignore[no-untyped-def]
    x, y = _data(linear_model)
    atk = ATTACKS["square"](norm="linf", eps=0.05, max_queries=20, seed=1)
    one = evaluate_attack(_bb(linear_model), atk, x, y, batch_size=len(x))
    split = evaluate_attack(_bb(linear_model), atk, x, y, batch_size=3)
    assert one.budget == 20 and len(split.batches) == 3 and [b["n"] for b in split.batches] == [3, 3, 2]
    for a, b in zip(one.rows, split.rows, strict=True):  # batches attack images independently
        assert (a["idx"], a["label"]) == (b["idx"], b["label"])
    with pytest.raises(Exception, match="already built"):
        evaluate_attack(_bb(linear_model), atk, x, y, eps=0.1)


class _Interrupt(Exception):
    pass


def test_resume_after_an_interruption_gives_the_same_rows(linear_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    x, y = _data(linear_model, 7)
    idx = [5, 9, 2, 11, 3, 8, 1]
    kw = {"budget": 25, "norm": "linf", "eps": 0.05, "seed": 2, "batch_size": 3}
    with RowWriter(tmp_path / "full.jsonl") as w:
        full = evaluate_attack(_bb(linear_model), "square", x, y, idx, writer=w, **kw)

    calls = {"n": 0}

    def stop_at_second_batch(ev: Event) -> None:
        if ev.kind == "advance":
            calls["n"] += 1
            if calls["n"] == 2:
                raise _Interrupt

    path = tmp_path / "part.jsonl"
    with pytest.raises(_Interrupt), RowWriter(path) as w, RowWriter(tmp_path / "b.jsonl") as bw:
        evaluate_attack(_bb(linear_model), "square", x, y, idx, writer=w, batch_writer=bw,
                        on_event=stop_at_second_batch, **kw)
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) == 6  # two batches written, the third never started
    path.write_text("".join(lines[:4]) + lines[4][:7])  # and a torn line, as a kill mid-write leaves
    bb = _bb(linear_model)
    with RowWriter(path) as w, RowWriter(tmp_path / "b.jsonl") as bw:
        again = evaluate_attack(bb, "square", x, y, idx, writer=w, batch_writer=bw, **kw)
    on_disk = list(read_rows(path))
    assert len(on_disk) == len({r["idx"] for r in on_disk}) == 7  # nothing lost, nothing duplicated
    assert again.rows == full.rows and again.new == 3  # batch 2 (one row left) and batch 3 ran again
    assert bb.stats.queries == sum(r["queries"] for r in full.rows if r["batch"] >= 1)
    assert evaluation_from_rows(on_disk, budget=25).summary == full.summary


def test_targets_inputs_and_models(linear_model) -> None:  # type: ignore[no-untyped-def]
    pool_x = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    pool_y = torch.arange(40) % 10
    t = draw_targets(pool_y, 10, seed=3)
    assert (t != pool_y).all() and torch.equal(t, draw_targets(pool_y, 10, seed=3))
    inp = attack_inputs(pool_x, pool_y, [0, 1, 2], targeted=True, num_classes=10, seed=3, takes_init=True)
    assert inp.index == [0, 1, 2] and inp.x_init is not None
    assert torch.equal(inp.target, draw_targets(pool_y[:3], 10, seed=3))
    rnd = RandomNoiseDefense(linear_model, nu=0.1, seed=0)
    label_bb = attack_blackbox(rnd, "rays", num_classes=10, input_shape=(1, 8, 8), reseed=5)
    assert label_bb.output == "label" and rnd.seed == 5
    eot = attack_blackbox(rnd, "square", num_classes=10, input_shape=(1, 8, 8), eot=3)
    eot.query(pool_x[:2])
    assert eot.stats.queries == 6 and eot.output == "logits"


def test_the_owner_evaluation_runs_through_the_pipeline(linear_model) -> None:  # type: ignore[no-untyped-def]
    from bbdefense.evaluation.owner import EvalConfig, run_attack

    x, y = _data(linear_model, 6)
    cfg = EvalConfig(attacks=("square",), budgets=(20,), eps=0.05, criterion="single", seed=1)
    row = run_attack(linear_model, "square", x, y, budget=20, cfg=cfg)
    bb = _bb(linear_model)
    res = ATTACKS["square"](norm="linf", eps=0.05, max_queries=20, seed=1).run(bb, x, y)
    assert row.robust_accuracy == float((~res.success).float().mean())
    assert row.queries == int(res.queries.sum()) == bb.stats.queries
    assert row.mean_queries == float(res.queries.float().mean()) and row.n == 6
