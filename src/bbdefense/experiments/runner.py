"""Run an :class:`~bbdefense.experiments.config.ExperimentConfig` (SPEC §7): target, defenses, attacks,
certification and privacy, with one row per example streamed to disk as it is produced, resume after
an interruption (rows already on disk are neither recomputed nor duplicated), sanity checks, and the
Markdown/HTML report rendered from the record.

Protocol:

* the target is a checkpoint, or a zoo architecture trained on the owner split and cached in
  ``RUN/target`` (reused when the recipe matches);
* every model (``undefended`` and each defense wrapped around the target) is attacked through a fresh
  query-counted :class:`~bbdefense.models.BlackBox` per attack (label-only for decision attacks),
  a randomized defense re-seeded first; the attacked images are the first ``data.n`` test images the
  undefended target classifies correctly (found with uncharged audit queries), the same for all models;
* robust accuracy = fraction of those images the attack did not fool within its budget;
* certification smooths the undefended target (Cohen CERTIFY), one row per image.

Attacks and certification run through the evaluation layer (:func:`bbdefense.evaluation.attacks.evaluate_attack`,
:func:`bbdefense.evaluation.certification.certify_rows`); this module only schedules them and files the rows.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..events import EventCallback, emit
from ..models import BlackBox, load_blackbox, load_checkpoint, read_meta
from ..records import RowWriter, RunDir, read_rows, render_report, table
from .config import AttackConfig, ExperimentConfig

if TYPE_CHECKING:
    from ..evaluation.distributed import ShippedModel


def _target(cfg: ExperimentConfig, run_path: Path, on_event: EventCallback | None) -> tuple[Path, dict[str, Any]]:
    from ..training import TrainConfig, train_target

    t = cfg.target
    if t.checkpoint is not None:
        p = Path(t.checkpoint)
        return p, (read_meta(p) if p.suffix != ".onnx" else {})
    tc = TrainConfig(**t.train.model_dump(), seed=cfg.seed)
    assert t.arch is not None
    return train_target(t.arch, cfg.data.dataset, run_path / "target", tc, data_dir=cfg.data.data_dir,
                        split_seed=cfg.data.split_seed, reuse=True, on_event=on_event)


def _models(cfg: ExperimentConfig, module: nn.Module, only: str | None = None) -> dict[str, nn.Module]:
    from ..defenses import build_defense

    models: dict[str, nn.Module] = {"undefended": module}
    for d in cfg.defenses:
        if only is None or only == d.key:
            models[d.key] = build_defense(d.name, module, **{"seed": cfg.seed, **d.params})
    return models


def _attack_entries(cfg: ExperimentConfig) -> list[AttackConfig]:
    return [e for entry in cfg.attacks for e in entry.expand()]


def _rows_name(model: str, akey: str) -> str:
    return f"attack__{model}__{akey}"


def attack_job(cfg_json: str, run_path: str, target_path: str, sel: list[int], model: str, akey: str,
               threads: int | None = None) -> str:
    """Run one (model, attack) pair of an experiment and stream its rows to
    ``RUN/rows/attack__MODEL__ATTACK.jsonl`` (per-batch timings to ``..._batches.jsonl``).

    A top-level function of plain arguments, so that a process pool or a Ray task can run it: it
    rebuilds the target, the defense, the data and the attack from the config. Every pair seeds its
    own defense and attack from ``cfg.seed``, so the rows do not depend on the executor or the order.
    Rows already on disk are skipped (resume). Returns the rows name."""
    from ..data import load_dataset, make_splits
    from ..evaluation.attacks import attack_blackbox, attack_inputs, build_attack, evaluate_attack

    if threads is not None:
        torch.set_num_threads(threads)
    cfg = ExperimentConfig.model_validate_json(cfg_json)
    a = next(e for e in _attack_entries(cfg) if e.key == akey)
    module, meta = load_checkpoint(target_path)
    module.eval()
    models = _models(cfg, module, only=model)
    test = make_splits(load_dataset(cfg.data.dataset, cfg.data.data_dir), seed=cfg.data.split_seed).test
    k = int(meta["num_classes"])
    params = dict(a.params)
    if a.criterion is not None:
        params["criterion"] = a.criterion
    atk = build_attack(a.name, max_queries=a.budget, seed=cfg.seed, params=params)
    inp = attack_inputs(test.x, test.y, sel, targeted=a.targeted, num_classes=k, seed=cfg.seed,
                        takes_init=atk.takes_init)
    bb = attack_blackbox(models[model], atk, num_classes=k, input_shape=tuple(meta["input_shape"]), name=model,
                         eot=a.eot if a.eot > 1 else None, reseed=cfg.seed)
    name = _rows_name(model, akey)
    rows_dir = Path(run_path) / "rows"
    with RowWriter(rows_dir / f"{name}.jsonl") as w, RowWriter(rows_dir / f"{name}_batches.jsonl") as bw:
        evaluate_attack(bb, atk, inp.x, inp.y, inp.index, budget=a.budget, target=inp.target, x_init=inp.x_init,
                        writer=w, batch_writer=bw, task=f"{akey} on {model}")
    return name


def remote_attack_job(cfg_json: str, target: ShippedModel, sel: list[int], model: str, akey: str,
                      done: list[dict[str, Any]], done_batches: list[dict[str, Any]],
                      threads: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """:func:`attack_job` on a worker that shares no filesystem with the driver: the target comes as bytes
    (``target``), the rows the driver already holds (``done``, ``done_batches``) seed a temporary run folder
    (so a resumed job skips their batches), and the new rows and batch rows are returned for the driver to
    write."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bbdefense-job-") as tmp:
        name = _rows_name(model, akey)
        rows_dir = Path(tmp) / "rows"
        for suffix, rows in (("", done), ("_batches", done_batches)):
            with RowWriter(rows_dir / f"{name}{suffix}.jsonl", fsync=False) as w:
                for r in rows:
                    w.write(r)
        attack_job(cfg_json, tmp, target.materialize(), sel, model, akey, threads)
        had = {r["idx"] for r in done}, {r["idx"] for r in done_batches}
        return ([r for r in read_rows(rows_dir / f"{name}.jsonl") if r["idx"] not in had[0]],
                [r for r in read_rows(rows_dir / f"{name}_batches.jsonl") if r["idx"] not in had[1]])


def _execute(jobs: list[tuple[str, str]], args: tuple[str, str, str, list[int]], *, workers: int, use_ray: bool,
             address: str | None, on_event: EventCallback | None) -> None:
    """Run ``attack_job`` for every (model, attack key) of ``jobs``: in this process, in a pool of
    ``workers`` processes (1 torch thread each, writing the run folder themselves), or as Ray tasks
    (``use_ray``, on the cluster at ``address``): those get the target's bytes and return their rows, which
    this process alone writes, so the cluster's nodes need no shared filesystem."""
    emit(on_event, "start", "attack jobs", total=len(jobs), message="attack runs", unit="jobs")
    if use_ray:
        from ..cluster import connect, run_tasks
        from ..evaluation.distributed import ShippedModel

        connect(address)
        cfg_json, run_path, target_path, sel = args
        target = ShippedModel.of(target_path)
        rows_dir = Path(run_path) / "rows"
        calls, todo = [], []
        for m, a in jobs:
            done = list(read_rows(rows_dir / f"{_rows_name(m, a)}.jsonl"))
            if set(sel) <= {r["idx"] for r in done}:  # finished before a resume: nothing to send
                emit(on_event, "advance", "attack jobs", n=1)
                continue
            todo.append((m, a))
            calls.append((cfg_json, target, sel, m, a, done,
                          list(read_rows(rows_dir / f"{_rows_name(m, a)}_batches.jsonl")), 1))

        def write(i: int, out: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
            name = _rows_name(*todo[i])
            for suffix, rows in zip(("", "_batches"), out, strict=True):
                with RowWriter(rows_dir / f"{name}{suffix}.jsonl") as w:
                    for r in rows:
                        w.write(r)
            emit(on_event, "advance", "attack jobs", n=1)

        run_tasks(remote_attack_job, calls, write)
    elif workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(attack_job, *args, m, a, 1) for m, a in jobs]
            for f in as_completed(futures):
                f.result()
                emit(on_event, "advance", "attack jobs", n=1)
    else:
        for m, a in jobs:
            attack_job(*args, m, a)
            emit(on_event, "advance", "attack jobs", n=1)
    emit(on_event, "end", "attack jobs")


def _attacks(cfg: ExperimentConfig, run: RunDir, target_path: Path, models: list[str], base: BlackBox, test: Any,
             *, workers: int, use_ray: bool, address: str | None, on_event: EventCallback | None) -> None:
    from ..attacks import ATTACKS
    from ..evaluation.attacks import evaluation_from_rows, first_correct
    from ..evaluation.report import add_attack_curve, budget_exhaustion, family_robust, fmt_ci, glance_accuracy

    sel, _, _ = first_correct(base, test.x, test.y, cfg.data.n)
    sec = "Attacks"
    run.record.sections.append({"title": sec, "text": (
        f"{len(sel)} test images the undefended target classifies correctly; every model is attacked through its own "
        "query-counted black box. Robust accuracy = images not fooled within the budget; queries are per image.")})
    entries = _attack_entries(cfg)
    jobs = [(m, a.key) for a in entries for m in models]
    for m, akey in jobs:
        for suffix in ("", "_batches"):
            run.record.artifacts[_rows_name(m, akey) + suffix] = f"rows/{_rows_name(m, akey)}{suffix}.jsonl"
    run.save()
    _execute(jobs, (cfg.model_dump_json(), str(run.path), str(target_path), [int(i) for i in sel]),
             workers=workers, use_ray=use_ray, address=address, on_event=on_event)
    summary, flagged = [], []
    by_model: dict[str, dict[str, Any]] = {m: {} for m in models}
    for a in entries:
        series = {}
        for mname in models:
            path = run.path / "rows" / f"{_rows_name(mname, a.key)}.jsonl"
            ev = evaluation_from_rows(read_rows(path), read_rows(path.with_name(path.stem + "_batches.jsonl")),
                                      a.budget, attack=a.name)
            s = ev.summary
            summary.append([mname, a.key, a.budget, s["robust_accuracy"], fmt_ci(s["robust_accuracy_ci"]),
                            s.get("median_queries_success"), s["total_queries"], round(ev.seconds, 2)])
            flagged.append((mname, a.key, *budget_exhaustion(ev)))
            series[mname] = ev
            by_model[mname][a.key] = (a, ev)
            run.set_metrics(**{f"robust_accuracy.{mname}.{a.key}": s["robust_accuracy"]})
        add_attack_curve(run, f"Robust accuracy vs queries: {a.key}", series, section=sec)
    run.add_table({**table("Robust accuracy", ["model", "attack", "budget", "robust accuracy", "95% CI",
                                               "median queries (successes)", "total queries", "attack seconds"],
                           summary, f"{len(sel)} images; 95% CI: Clopper-Pearson over the images; attack seconds = "
                                    "the attack's own wall time (summed over its batches, across resumed runs)"),
                   "section": sec})
    for mname, pairs in by_model.items():  # the at-a-glance table: per-image worst case per attack family
        for access, family in (("scores", "score-based"), ("label", "decision-based")):
            fam = {k: ev for k, (a, ev) in pairs.items() if ATTACKS[a.name].access == access}
            if fam:
                k, n = family_robust(fam)
                glance_accuracy(run, mname, f"robust accuracy, {family} attacks", k, n, note=f"worst of {len(fam)}")
    for mname, akey, early, robust in flagged:
        if robust:
            run.add_check(f"budget_exhaustion.{mname}.{akey}", early == 0, (
                f"{early}/{robust} images counted robust stopped before spending their budget (the attack claimed a "
                "success that the success criterion did not confirm): that robust accuracy is optimistic" if early
                else f"all {robust} images counted robust withstood the whole budget"))


def _defense_table(cfg: ExperimentConfig, run: RunDir, target_path: Path, test: Any,
                   on_event: EventCallback | None) -> None:
    """Clean accuracy (mean of ``data.clean_passes`` passes) and logit difference vs the undefended target
    (UniG Table 1) of every model, on the first ``data.n_clean`` test images; one row per model streams to
    ``rows/defenses.jsonl`` (resumable)."""
    from ..defenses.metrics import clean_metrics

    module, _ = load_checkpoint(target_path)
    models = _models(cfg, module.eval())  # RFD's hooks act only inside its own forward: one copy serves all
    x, y = test.x[:cfg.data.n_clean], test.y[:cfg.data.n_clean]
    path = run.path / "rows" / "defenses.jsonl"
    done = {r["model"]: r for r in read_rows(path)} if path.is_file() else {}
    run.record.artifacts["defenses"] = "rows/defenses.jsonl"
    emit(on_event, "start", "defenses", total=len(models), message="clean accuracy and logit difference",
         unit="models")
    with RowWriter(path, key="model") as w:
        for name, m in models.items():
            if name not in done:
                done[name] = {"model": name,
                              **clean_metrics(m, module, x, y, passes=cfg.data.clean_passes, seed=cfg.seed)}
                w.write(done[name])
            emit(on_event, "advance", "defenses", n=1)
    emit(on_event, "end", "defenses")
    rows = [[r["model"], r["randomized"], r["clean_accuracy"], r["logit_difference"]] for r in done.values()]
    from ..evaluation.report import glance_accuracy

    for r in done.values():
        if r["model"] != "undefended":  # the undefended target's clean accuracy is noted on 1000 images
            glance_accuracy(run, r["model"], "clean accuracy", round(r["clean_accuracy"] * len(x)), len(x),
                            note=f"mean of {cfg.data.clean_passes} passes" if r["randomized"] else "")
    for r in done.values():
        run.set_metrics(**{f"clean_accuracy.{r['model']}": r["clean_accuracy"],
                           f"logit_difference.{r['model']}": r["logit_difference"]})
    run.add_table({**table("Defenses: clean accuracy and logit difference (UniG Table 1)",
                           ["model", "randomized", "clean accuracy", "logit difference"], rows,
                           f"first {len(x)} test images; clean accuracy = mean of {cfg.data.clean_passes} passes "
                           "(randomized models); logit difference = mean l2(defended - undefended logits)"),
                   "section": "Attacks"})


def _certify(cfg: ExperimentConfig, run: RunDir, spec: str, test: Any, shape: tuple[int, ...],
             on_event: EventCallback | None, *, use_ray: bool = False, address: str | None = None) -> None:
    from ..certify import Smooth, make_noise
    from ..evaluation.certification import certified_accuracy_ci, certify_rows, table_radii
    from ..evaluation.report import CertifiedSetting, add_certification, glance_accuracy

    sec = "Certification"
    run.record.sections.append({"title": sec, "text": (
        f"Cohen CERTIFY of the undefended target on the first {cfg.data.n} test images; certified accuracy counts "
        "correct certificates with radius >= r (abstentions are wrong).")})
    idx = list(range(min(cfg.data.n, len(test))))
    settings = []
    for c in cfg.certify:
        bb = load_blackbox(spec, backend=cfg.target.backend)
        sm = Smooth(bb, make_noise(c.noise, sigma=c.sigma, **c.noise_params), norms=c.norms)
        kw: dict[str, Any] = {"n0": c.n0, "n": c.n, "alpha": c.alpha, "batch_size": c.batch_size, "seed": cfg.seed,
                              "method": c.method, "randomized": c.randomized, "radii": c.radii, "max_n": c.max_n}
        with run.rows(f"certify__{c.key}") as w:
            if use_ray:  # the same rows, certified by Ray workers (images sharded into chunks)
                from ..evaluation.distributed import SmoothSpec, certify_rows_ray

                res = certify_rows_ray(SmoothSpec.of(sm, spec, backend=cfg.target.backend), test.x[idx],
                                       test.y[idx], idx, chunk=10, writer=w, on_event=on_event, address=address,
                                       charge=bb, **kw)  # the workers' queries on this run's black box
            else:
                res = certify_rows(sm, test.x[idx], test.y[idx], idx, chunk=10, writer=w, on_event=on_event, **kw)
        settings.append(CertifiedSetting(c.key, c.sigma, c.norms, res.rows, key=c.key))
        nm = c.norms[0]  # at-a-glance: r = 0 and three radii of the DUCD table grid (l2: 0.25, 0.5, 1.0)
        radii = [table_radii(nm, int(math.prod(shape)))[i] for i in (0, 1, 3)]
        for ci in certified_accuracy_ci(res.rows, nm, [0.0, *radii]):
            col = "clean accuracy" if ci["radius"] == 0 else f"certified accuracy, {c.norms[0]} r={ci['radius']:g}"
            glance_accuracy(run, f"undefended+RS {c.key}", col, ci["k"], ci["n"])
    add_certification(run, settings, d=int(math.prod(shape)), section=sec)


def run_experiment(cfg: ExperimentConfig, out: str | Path, *, resume: bool = True, workers: int = 1,
                   use_ray: bool = False, address: str | None = None,
                   on_event: EventCallback | None = None) -> Path:
    """Run ``cfg`` into the directory ``out``; returns the path of ``report.md``.

    ``workers`` > 1 runs the (model, attack) pairs in a pool of processes; ``use_ray`` runs them as Ray
    tasks, shards the certification over Ray actors and trains the privacy study's models as Ray tasks (on
    the cluster at ``address``, default ``$RAY_ADDRESS`` or a local Ray; refused at once when Ray is missing
    or the address does not answer; docs/scale-out.md).
    The rows are the same as in one process (each pair seeds itself, each image's noise is seeded by its
    index). Execution settings are not part of the config, so a run may be resumed with other ones."""
    from ..data import load_dataset, make_splits
    from .preflight import check_runnable

    check_runnable(cfg, source=f"config {cfg.name!r}")  # every refusal comes before a file is written
    if use_ray:
        from ..cluster import connect

        connect(address)
    out = Path(out)
    run = RunDir(out, kind="experiment", name=cfg.name, config=cfg.model_dump(), seeds={"experiment": cfg.seed},
                 resume=resume)
    run.record.sections = []
    t0 = time.perf_counter()
    emit(on_event, "start", "target", total=1, message="target", unit="model")
    path, meta = _target(cfg, out, on_event)
    emit(on_event, "advance", "target")
    emit(on_event, "end", "target")
    spec = str(path)
    base = load_blackbox(spec, backend=cfg.target.backend)
    test = make_splits(load_dataset(cfg.data.dataset, cfg.data.data_dir), seed=cfg.data.split_seed).test
    n_acc = min(1000, len(test))
    k_acc = int((base.audit(test.x[:n_acc]).argmax(1) == test.y[:n_acc]).sum())
    acc = k_acc / n_acc
    run.set_metrics(target_test_accuracy=acc)
    from ..evaluation.report import add_glance_table, glance_accuracy

    glance_accuracy(run, "undefended", "clean accuracy", k_acc, n_acc)
    run.add_check("randomized_outputs", not base.randomized, "the target answers deterministically"
                  if not base.randomized else "the target's outputs are randomized: use criterion/EOT")
    if cfg.defenses:  # each defense's clean accuracy and logit difference, with or without attacks
        _defense_table(cfg, run, path, test, on_event)
    if cfg.attacks:
        names = ["undefended", *[d.key for d in cfg.defenses]]
        _attacks(cfg, run, path, names, base, test, workers=workers, use_ray=use_ray, address=address,
                 on_event=on_event)
    if cfg.certify:
        _certify(cfg, run, spec, test, base.input_shape, on_event, use_ray=use_ray, address=address)
    if cfg.privacy is not None:
        from ..data import make_splits as _ms
        from ..privacy.study import StudyConfig, run_study

        study_kw: dict[str, Any] = {"seed": cfg.seed, **{k: (tuple(v) if isinstance(v, list) else v)
                                                         for k, v in cfg.privacy.items()}}
        sc = StudyConfig(**study_kw)
        module, _ = load_checkpoint(path)
        run.record.sections.append({"title": "Privacy", "text": "Membership inference (DUCD Fig. 9 protocol)."})
        from .slices.privacy import note_mia

        note_mia(run, run_study(run, module.eval(), meta["arch"],
                                _ms(load_dataset(cfg.data.dataset, cfg.data.data_dir), seed=cfg.data.split_seed),
                                sc, cache_dir=out / "privacy_cache", section="Privacy", on_event=on_event,
                                use_ray=use_ray, address=address))
    run.set_metrics(seconds=round(time.perf_counter() - t0, 2))
    add_glance_table(run)
    run.finish()
    md, _ = render_report(out)
    return md
