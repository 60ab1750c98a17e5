"""The DUCD §IV-G / Fig. 9 study: membership inference on the target, DUCD surrogates distilled on the
same, disjoint and shifted data, the smoothed versions of all of them, and the overfit positive control.

Members are ``n_members`` images of the owner's training split, non-members as many test images.
Surrogates are distilled with :func:`bbdefense.certified.ducd.distill` (queries charged to the target
and reported next to each surrogate). Smoothed models are read through
:func:`.signals.smoothed_blackbox` (class frequencies of ``n_smooth`` noisy draws; base-model queries
reported). The overfit control has its own members (its small training set).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..certify import Smooth, make_noise
from ..data import ImageDataset, Splits
from ..errors import InputError
from ..events import EventCallback
from ..models import BlackBox
from ..records import RunDir, table
from ..utils import seeded_init
from .evaluate import ShadowRef, add_report, evaluate_privacy
from .overfit import overfit_subset, train_overfit_target
from .signals import smoothed_blackbox

SOURCES = {"same": "owner_train", "disjoint": "defender", "shifted": "defender_shifted"}


@dataclass
class StudyConfig:
    """Sizes of the study (all small by default: CPU minutes, not hours).

    Args:
        n_members: members (and as many non-members) per evaluation.
        sources: which DUCD surrogates to distil (``same`` / ``disjoint`` / ``shifted``).
        distill_budget, distill_epochs: target queries and epochs of each distillation.
        sigma, n_smooth: Gaussian smoothing noise (pixel std) and draws per image.
        overfit_n, overfit_epochs: the positive control (0 disables it).
        shadow: fit the Shokri shadow attack (a shadow model trained on defender data with the target's
            recipe: Adam lr 1e-3, ``shadow_epochs`` epochs; the overfit recipe for the overfit control).
        n_boot, seed: AUC bootstrap and every seed.
    """

    n_members: int = 100
    sources: tuple[str, ...] = ("same", "disjoint", "shifted")
    distill_budget: int = 1500
    distill_epochs: int = 4
    sigma: float = 0.25
    n_smooth: int = 16
    overfit_n: int = 100
    overfit_epochs: int = 40
    shadow: bool = True
    shadow_epochs: int = 6
    n_boot: int = 1000
    seed: int = 0

    def check(self) -> None:
        bad = [s for s in self.sources if s not in SOURCES]
        if bad:
            raise InputError(f"unknown surrogate source(s) {bad}; choose from {', '.join(SOURCES)}")
        if self.n_members < 4:
            raise InputError(f"n_members must be >= 4, got {self.n_members}")
        if not self.sigma > 0 or self.n_smooth < 1:
            raise InputError(f"sigma must be > 0 and n_smooth >= 1, got {self.sigma}, {self.n_smooth}")


Job = tuple[Path | None, Callable[[], nn.Module], Callable[[nn.Module], object]]
"""A model the study trains: its cache file (or None), how to build it, how to train it."""


def _cached(path: Path | None, make: Callable[[], nn.Module], train: Callable[[nn.Module], object],
            state: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Build a module, then load its weights from ``state`` (trained on a Ray worker), from ``path``
    (safetensors), or train it and save them."""
    m = make()
    if state is not None:
        m.load_state_dict(state)
        return m.eval()
    if path is not None and path.is_file():
        m.load_state_dict(load_file(str(path)))
        return m.eval()
    train(m)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    return m.eval()


def _train_state(make: Callable[[], nn.Module], train: Callable[[nn.Module], object]) -> dict[str, torch.Tensor]:
    """A Ray task: build a module, train it, return its weights (contiguous CPU tensors)."""
    m = make()
    train(m)
    return {k: v.detach().cpu().contiguous() for k, v in m.state_dict().items()}


def _train_on_ray(jobs: dict[str, Job], address: str | None) -> dict[str, dict[str, torch.Tensor]]:
    """Train the models of ``jobs`` not cached yet as concurrent Ray tasks (one CPU each); the weights come
    back here, which alone writes the cache files. Returns name -> weights."""
    from ..cluster import connect, run_tasks

    connect(address)
    todo = [k for k, (path, _, _) in jobs.items() if path is None or not path.is_file()]
    out: dict[str, dict[str, torch.Tensor]] = {}

    def keep(i: int, state: dict[str, torch.Tensor]) -> None:
        out[todo[i]] = state
        path = jobs[todo[i]][0]
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(state, str(path))

    run_tasks(_train_state, [jobs[k][1:] for k in todo], keep)
    return out


def run_study(run: RunDir, target: nn.Module, arch: str, splits: Splits, cfg: StudyConfig, *,
              cache_dir: Path | None = None, section: str | None = None, on_event: EventCallback | None = None,
              use_ray: bool = False, address: str | None = None) -> list[dict[str, Any]]:
    """Run the whole Fig. 9 study; rows and report go to ``run``. Returns all rows.

    ``use_ray`` trains the models the study needs (surrogates, shadows, the overfit control) as concurrent
    Ray tasks on the cluster at ``address`` (:mod:`bbdefense.cluster`) before evaluating them here; each is
    seeded as in one process. A surrogate distilled on a worker reports its distillation budget as its
    queries (as a cached one does)."""
    from ..certified.ducd import DistillConfig, build_surrogate, distill

    cfg.check()
    k = len(splits.owner_train.classes)
    shape = splits.owner_train.input_shape
    mean, std = splits.owner_train.mean, splits.owner_train.std
    n = min(cfg.n_members, len(splits.owner_train), len(splits.test))
    g = torch.Generator().manual_seed(cfg.seed)
    mi = torch.randperm(len(splits.owner_train), generator=g)[:n]
    ni = torch.randperm(len(splits.test), generator=g)[:n]
    xm, ym = splits.owner_train.x[mi], splits.owner_train.y[mi]
    xn, yn = splits.test.x[ni], splits.test.y[ni]
    noise = make_noise("gaussian", sigma=cfg.sigma)
    tag = f"s{cfg.seed}"

    def box(m: nn.Module, name: str) -> BlackBox:
        return BlackBox.from_module(m, num_classes=k, input_shape=shape, name=name)

    def smooth(m: nn.Module, name: str) -> BlackBox:
        return smoothed_blackbox(Smooth(box(m, name), noise), n=cfg.n_smooth, seed=cfg.seed, name=name)

    models: dict[str, BlackBox] = {"target": box(target, "target"), "target+RS": smooth(target, "target+RS")}
    extra: dict[str, int] = {}
    ev = None if use_ray else on_event  # a progress callback stays in this process
    jobs: dict[str, Job] = {}
    tboxes: dict[str, BlackBox] = {}
    for src in cfg.sources:
        data = splits[SOURCES[src]]
        dcfg = DistillConfig(budget=cfg.distill_budget, epochs=cfg.distill_epochs, seed=cfg.seed)
        tboxes[src] = box(target, "target")

        def train_sur(m: nn.Module, data=data, dcfg=dcfg, tbb=None if use_ray else tboxes[src]) -> None:
            distill(tbb if tbb is not None else box(target, "target"), m, data, dcfg, on_event=ev)

        cpath = None if cache_dir is None else cache_dir / f"surrogate_{src}_{cfg.distill_budget}_{tag}.safetensors"
        jobs[f"DUCD-{src}"] = (cpath, lambda: build_surrogate(arch, num_classes=k, input_shape=shape, mean=mean,
                                                               std=std, seed=cfg.seed), train_sur)
    shadow = _shadow_job(arch, splits, cfg, cache_dir, overfit=False) if cfg.shadow else None
    if shadow is not None:
        jobs["shadow"] = shadow[0]
    if cfg.overfit_n > 0:
        name = f"overfit_{arch}_{cfg.overfit_n}_{cfg.overfit_epochs}_{tag}.safetensors"
        jobs["overfit"] = (None if cache_dir is None else cache_dir / name, lambda: _fresh(arch, splits, cfg.seed),
                           lambda m: _copy_into(m, train_overfit_target(
                               arch, splits.owner_train, n_train=cfg.overfit_n, epochs=cfg.overfit_epochs,
                               seed=cfg.seed)[0]))
        oshadow = _shadow_job(arch, splits, cfg, cache_dir, overfit=True) if cfg.shadow else None
        if oshadow is not None:
            jobs["overfit shadow"] = oshadow[0]
    pre = _train_on_ray(jobs, address) if use_ray else {}
    for src in cfg.sources:
        sur = _cached(*jobs[f"DUCD-{src}"], pre.get(f"DUCD-{src}"))
        spent = tboxes[src].stats.queries or cfg.distill_budget  # a cached surrogate spent its budget earlier
        models[f"DUCD-{src}"] = box(sur, f"DUCD-{src}")
        models[f"DUCD-{src}+RS"] = smooth(sur, f"DUCD-{src}+RS")
        extra[f"DUCD-{src}"] = extra[f"DUCD-{src}+RS"] = spent
    shadows: dict[str, ShadowRef] = {}
    if shadow is not None:
        shadows = _shadows(list(models), shadow, box, smooth, pre.get("shadow"))
    rows = evaluate_privacy(models, xm, ym, xn, yn, shadows=shadows, n_boot=cfg.n_boot, seed=cfg.seed, run=run,
                            section=section, extra_queries=extra, on_event=on_event)
    if cfg.overfit_n > 0:
        members = overfit_subset(splits.owner_train, cfg.overfit_n, seed=cfg.seed)
        ovf = _cached(*jobs["overfit"], pre.get("overfit"))
        omodels = {"overfit (control)": box(ovf, "overfit"), "overfit+RS": smooth(ovf, "overfit+RS")}
        osh = _shadows(list(omodels), oshadow, box, smooth, pre.get("overfit shadow")) if oshadow is not None \
            else {}
        m2 = min(len(members), n)
        rows += evaluate_privacy(omodels, members.x[:m2], members.y[:m2], xn[:m2], yn[:m2], shadows=osh,
                                 n_boot=cfg.n_boot, seed=cfg.seed, run=run, section=section, on_event=on_event)
        # one table and one chart for the whole study (evaluate_privacy added one per call)
        run.record.tables = [t for t in run.record.tables if t.get("section") != section]
        run.record.plots = [p for p in run.record.plots if p.get("section") != section]
        add_report(run, rows, section=section)
    run.set_metrics(**{f"privacy.{r['model']}.{r['attack']}.auc": round(r["auc"], 4) for r in rows})
    # The study's settings go into a table, not into ``record.config``: changing the config after the run
    # started made a finished run impossible to resume ("another config").
    run.add_table({**table("Privacy study settings", ["setting", "value"],
                           [[k, str(v)] for k, v in asdict(cfg).items()]),
                   **({"section": section} if section else {})})
    return rows


def _fresh(arch: str, splits: Splits, seed: int) -> nn.Module:
    from ..models.zoo import build_model

    d = splits.owner_train
    with seeded_init(seed):
        return build_model(arch, num_classes=len(d.classes), in_channels=d.x.shape[1], image_size=d.x.shape[2],
                           mean=list(d.mean), std=list(d.std))


def _copy_into(dst: nn.Module, src: nn.Module) -> None:
    dst.load_state_dict(src.state_dict())


def _shadow_job(arch: str, splits: Splits, cfg: StudyConfig, cache_dir: Path | None, *,
                overfit: bool) -> tuple[Job, ImageDataset, ImageDataset]:
    """The study's shadow: the attacker's model trained with the target's recipe on half of the defender
    split (members, returned with the other half as non-members); the overfit recipe for the control."""
    from ..training import TrainConfig, train_classifier

    d = splits.defender
    half = len(d) // 2
    if overfit:
        half = min(cfg.overfit_n, half)
    g = torch.Generator().manual_seed(cfg.seed + 11)
    perm = torch.randperm(len(d), generator=g)
    sin, sout = d.subset(perm[:half]), d.subset(perm[half:2 * half])
    kind = f"overfit{cfg.overfit_n}_{cfg.overfit_epochs}" if overfit else "recipe"
    path = None if cache_dir is None else cache_dir / f"shadow_{arch}_{kind}_s{cfg.seed}.safetensors"
    if overfit:
        trainer = TrainConfig(mode="plain", epochs=cfg.overfit_epochs, batch_size=32, lr=1e-3, seed=cfg.seed + 11)
    else:
        trainer = TrainConfig(mode="plain", epochs=cfg.shadow_epochs, batch_size=64, lr=1e-3, seed=cfg.seed + 11)
    return (path, lambda: _fresh(arch, splits, cfg.seed + 11), lambda m: train_classifier(m, sin, trainer)), sin, sout


def _shadows(names: list[str], shadow: tuple[Job, ImageDataset, ImageDataset],
             box: Callable[[nn.Module, str], BlackBox], smooth: Callable[[nn.Module, str], BlackBox],
             state: dict[str, torch.Tensor] | None) -> dict[str, ShadowRef]:
    """One shadow per study (see :func:`_shadow_job`); smoothed models get the smoothed shadow."""
    job, sin, sout = shadow
    sh = _cached(*job, state)
    plain, smoothed = box(sh, "shadow"), smooth(sh, "shadow+RS")
    return {nm: ShadowRef(smoothed if nm.endswith("+RS") else plain, sin.x, sin.y, sout.x, sout.y) for nm in names}


__all__ = ["SOURCES", "StudyConfig", "run_study"]
