"""Progress a person sees (issue 14 item 6): library loops emit start/advance/end with totals and queries;
off a terminal the CLI prints periodic plain lines with counts, queries and an ETA (fake clock, no sleep)."""

from __future__ import annotations

import torch

from bbdefense.cli.common import LogProgress, ProgressEvents, format_duration
from bbdefense.events import Event, emit


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_log_progress_prints_periodic_lines_with_counts_queries_and_eta() -> None:
    clock, lines = Clock(), []
    log = LogProgress(lines.append, interval=10, clock=clock)
    emit(log, "start", "certify", total=100, unit="images")
    for _ in range(40):
        clock.t += 1.8  # 1.8 s per image, 500 queries each
        emit(log, "advance", "certify", n=1, queries=500)
    # a line at most every 10 s: at 10.8, 21.6, 32.4, 43.2, 54, 64.8 s ...
    assert len(lines) == 6
    assert lines[0] == "certify: 6/100 images, 3,000 queries, 11s elapsed, ETA 2m49s"
    assert lines[-1] == "certify: 36/100 images, 18,000 queries, 1m05s elapsed, ETA 1m55s"
    emit(log, "end", "certify")
    assert lines[-1] == "certify: done, 40/100 images, 20,000 queries, 1m12s elapsed"


def test_log_progress_is_quiet_for_short_tasks_and_prints_info() -> None:
    clock, lines = Clock(), []
    log = LogProgress(lines.append, interval=15, clock=clock)
    emit(log, "start", "train", total=3, unit="epochs")
    for _ in range(3):
        clock.t += 1
        emit(log, "advance", "train")
    emit(log, "end", "train")
    assert lines == []
    emit(log, "info", "train", message="epoch 3/3 loss 0.1")
    emit(log, "start", "jobs", unit="jobs")  # no total: count only, no ETA
    clock.t += 20
    emit(log, "advance", "jobs", n=2)
    assert lines[-2:] == ["train: epoch 3/3 loss 0.1", "jobs: 2 jobs, 20s elapsed"]


def test_log_progress_nested_tasks_share_one_line() -> None:
    clock, lines = Clock(), []
    log = LogProgress(lines.append, interval=10, clock=clock)
    emit(log, "start", "certify", total=4, unit="images")
    for _ in range(4):
        emit(log, "start", "smooth", total=1000, unit="noisy queries")
        for _ in range(2):
            clock.t += 3
            emit(log, "advance", "smooth", n=500)
        emit(log, "end", "smooth")  # nested: no "done" line of its own
        emit(log, "advance", "certify", queries=1000)
    emit(log, "end", "certify")
    assert lines == [
        "certify: 1/4 images, 1,000 queries, 12s elapsed, ETA 36s | smooth: 1,000/1,000 noisy queries, 6s elapsed, "
        "ETA 0s",
        "certify: 3/4 images, 3,000 queries, 24s elapsed, ETA 8s | smooth: 1,000/1,000 noisy queries, 6s elapsed, "
        "ETA 0s",
        "certify: done, 4/4 images, 4,000 queries, 24s elapsed"]


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 42.4, 72, 3599, 7500)] == ["0s", "42s", "1m12s", "59m59s", "2h05m"]


def test_rich_bars_count_queries() -> None:
    from io import StringIO

    from rich.console import Console
    from rich.progress import Progress

    prog = Progress(console=Console(file=StringIO()))
    cb = ProgressEvents(prog)
    cb(Event("start", "attack", total=10, unit="images"))
    cb(Event("advance", "attack", n=4, queries=400))
    cb(Event("advance", "attack", n=2, queries=100))
    task = prog.tasks[0]
    assert task.completed == 6 and task.total == 10 and task.fields["queries"] == 500
    assert "images" in task.description
    cb(Event("end", "attack"))
    prog.stop()


def _recorder() -> tuple[list[Event], object]:
    evs: list[Event] = []
    return evs, evs.append


def _check(evs: list[Event], task: str, total: int, *, queries: int | None = None) -> None:
    mine = [e for e in evs if e.task == task]
    assert mine[0].kind == "start" and mine[0].total == total and mine[0].unit
    assert mine[-1].kind == "end"
    adv = [e for e in mine if e.kind == "advance"]
    assert sum(e.n for e in adv) == total
    if queries is not None:
        assert sum(e.queries for e in adv) == queries


def test_library_loops_emit_totals_and_queries(linear_model) -> None:
    from bbdefense.attacks import ATTACKS
    from bbdefense.certified.ducd import DistillConfig, build_surrogate, distill
    from bbdefense.certify import Smooth, make_noise
    from bbdefense.evaluation.attacks import run_batches
    from bbdefense.models import BlackBox

    shape = (1, 8, 8)
    bb = BlackBox.from_module(linear_model, input_shape=shape)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, *shape, generator=g)
    y = bb.audit(x).argmax(1)
    evs, cb = _recorder()
    # an attack run per batch, with the queries it charged
    q0 = bb.stats.queries
    run_batches(ATTACKS["square"](eps=0.05, norm="linf", max_queries=20, seed=0), bb, x, y, list(range(6)),
                batch_size=4, on_event=cb)
    _check(evs, "attack", 6, queries=bb.stats.queries - q0)
    # certification's noisy queries
    Smooth(bb, make_noise("gaussian", sigma=0.25)).certify(x[:2], n0=10, n=30, batch_size=16, on_event=cb)
    assert next(e for e in evs if e.task == "smooth").total in (20, 60)
    # distillation per query batch (with queries), then per epoch
    sur = build_surrogate("smallcnn", num_classes=10, input_shape=shape, mean=[0.5], std=[0.5], seed=0)
    distill(bb, sur, torch.rand(20, *shape, generator=g), DistillConfig(budget=30, epochs=2, query_batch=8),
            on_event=cb)
    _check(evs, "distill:query", 30, queries=30)
    _check(evs, "distill:train", 2)
