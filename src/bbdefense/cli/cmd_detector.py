"""``bbdefense evaluate-detector``: a stateful detector (Blacklight, PIHA) in front of a served model,
measured the way the papers do: every black-box attack of the registry through the HTTP client (plain,
OARS-adapted, split over several keys) and benign query streams; rows, record and report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import typer

from . import options as opt
from .common import out, progress_events, seed_everything


def register(app: typer.Typer) -> None:
    app.command("evaluate-detector")(evaluate_detector)


def evaluate_detector(
    model: str = opt.model_option(help="The served model (not a URL)."),
    detector: str = typer.Option("blacklight", "--detector", help="blacklight | piha."),
    detector_config: Path | None = typer.Option(None, "--detector-config",
                                                help="JSON/YAML keyword arguments of the detector."),
    defense: str | None = typer.Option(None, "--defense", help="Owner-side defense in front of the model (e.g. rfd)."),
    defense_config: Path | None = typer.Option(None, "--defense-config", help="JSON/YAML arguments of the defense."),
    attacks: str = typer.Option(",".join(("square", "nes", "bandits", "signhunter", "simba", "rays", "signflip",
                                          "hsja")), "--attacks", help="Comma-separated attack names."),
    modes: str = typer.Option("plain,oars,sybil", "--modes", help="Comma-separated: plain, oars, sybil."),
    n: int = opt.count_option(50, "-n", "--n", help="Attack the first N correctly classified test images."),
    max_queries: int = opt.count_option(1000, "--max-queries", help="Per-image query budget of each attack (its "
                                                                   "max_queries)."),
    eps: float = typer.Option(0.3, "--eps", help="linf radius of the attacks (MNIST: 0.3)."),
    accounts: int = opt.count_option(5, "--accounts", help="Keys of the Sybil split."),
    benign: int = opt.count_option(10_000, "--benign", help="Benign queries of each benign stream.", minimum=0),
    benign_clients: int = opt.count_option(1, "--benign-clients",
                                           help="Independent benign clients per stream (seeds seed, seed+1, ...; "
                                                "each its own detector state), pooled: a tighter bound."),
    dataset: str | None = opt.dataset_option(),
    data_dir: Path | None = opt.data_dir_option(),
    split_seed: int | None = opt.split_seed_option(),
    out_dir: Path = typer.Option(Path("runs/evaluate-detector"), "--out", help="Run directory."),
    seed: int = opt.seed_option(),
    resume: bool = typer.Option(True, "--resume/--no-resume"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Detection rate, queries to the first detection, attack success before detection (plain, OARS, Sybil)
    and benign false positives per 10,000 queries of a stateful detector in front of a served model."""
    import functools

    from ..defenses.stateful import DETECTORS, make_detector
    from ..errors import InputError
    from ..evaluation.attacks import first_correct
    from ..evaluation.detector import (
        Mode,
        add_detector_tables,
        benign_stream,
        detection_rows,
        false_positives,
        pool_false_positives,
    )
    from ..models import model_source
    from ..records import RunDir, read_rows, render_report
    from ..serve.local import local_accounts
    from ..serve.model import build_served_blackbox, load_defense_config

    seed_everything(seed)
    DETECTORS[detector]
    names = [a.strip() for a in attacks.split(",") if a.strip()]
    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    bad = [m for m in mode_list if m not in ("plain", "oars", "sybil")]
    if bad:
        raise InputError(f"--modes: unknown mode(s) {bad}; choose from plain, oars, sybil")
    if not 0 < eps <= 1:
        raise InputError(f"--eps must be in (0, 1], got {eps}")
    opt.check_writable_dir(out_dir, "--out")
    cfg = load_defense_config(detector_config)
    make_detector(detector, **cfg).close()  # the config is checked before any work
    served = build_served_blackbox(model, defense=defense, defense_config=load_defense_config(defense_config))
    src = model_source(model)
    owner = src.blackbox()
    dataset, splits, split_seed = opt.resolve_splits(dataset, data_dir, meta=src.meta(), split_seed=split_seed,
                                                 what=f"model {model}")
    test = splits.test
    opt.check_count(n, len(test), "-n", f"test images of {dataset}")
    sel, _, _ = first_correct(owner, test.x, test.y, n)
    x, y, idx = test.x[sel], test.y[sel], [int(i) for i in sel]
    config = {"model": str(model), "detector": detector, "detector_config": cfg, "defense": defense,
              "attacks": names, "modes": mode_list, "n": len(idx), "max_queries": max_queries, "eps": eps,
              "norm": "linf", "accounts": accounts, "benign": benign, "dataset": dataset, "split_seed": split_seed,
              **({"benign_clients": benign_clients} if benign_clients != 1 else {})}
    run = RunDir(out_dir, kind="evaluate-detector", name=f"{detector} in front of {src.name}", config=config,
                 seeds={"evaluate-detector": seed}, resume=resume)
    open_server = functools.partial(local_accounts, served, detector=detector, detector_config=cfg)
    t0 = time.perf_counter()
    rows = []
    with run.rows("detector", key="key") as writer, progress_events(progress) as cb:
        for name in names:
            for mode in mode_list:
                rows += detection_rows(open_server, name, x, y, idx, budget=max_queries, mode=cast(Mode, mode),
                                       eps=eps, seed=seed, accounts=accounts, owner=owner, writer=writer, on_event=cb)
    rows = list(read_rows(run.path / "rows" / "detector.jsonl"))
    fps = []
    if benign:
        for label, p in (("test split, random order, repeats", 0.0),
                         ("... + flips, crops, brightness, JPEG-like", 0.5)):
            parts = []
            for c in range(benign_clients):
                det = make_detector(detector, **cfg)
                stream, kinds = benign_stream(test.x, benign, seed=seed + c, p_augment=p)
                parts.append(false_positives(det, stream, kinds))
                det.close()
            fps.append((label if benign_clients == 1 else f"{label} ({benign_clients} clients x {benign})",
                        pool_false_positives(parts)))
    add_detector_tables(run, rows, fps, detector=detector, eps=eps, budget=max_queries, accounts=accounts,
                        section=f"Stateful detector: {detector}")
    run.set_metrics(seconds=round(time.perf_counter() - t0, 1))
    run.finish()
    render_report(run.path)
    for t in run.record.tables:
        out.print(f"\n{t['title']}", markup=False)
        out.print("  ".join(str(c) for c in t["columns"]), markup=False)
        for r in t["rows"]:
            out.print("  ".join(str(v) for v in r), markup=False)
    out.print(f"\nwrote {run.path} ({time.perf_counter() - t0:.0f} s)", markup=False)
