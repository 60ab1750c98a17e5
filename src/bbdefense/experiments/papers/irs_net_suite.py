"""Suite ``irs-net``: IRS-Net (Kumar et al., improved randomized smoothing) on MNIST-5k.

What it reproduces (experiment code: :func:`.irs_net.run_irs_tables`): Table I (transferability:
accuracy on noisy inputs of a denoiser trained against one surrogate, put in front of unseen
classifiers), Tables II-IV (certified accuracy of an unseen black box behind the denoiser) and
Table V (BPDA PGD-l2). The paper trains on a ResNet18 surrogate and tests ResNet110 (CIFAR-10);
here a SmallCNN surrogate (defender split) and an unseen LeNet (owner split).

Full = ``benchmarks/denoised_tables.py --only irs`` (docs/denoised-smoothing.md): 20 epochs,
200 test images, n = 500, sigma 0.5 on the normalised image. Quick: 8 epochs on 500 defender
images, 20 test images, n = 200, the unseen LeNet only, BPDA on 10 images with 5 steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...events import EventCallback
from ...records import RunDir

if TYPE_CHECKING:
    from ...evaluation.distributed import RayOptions

from .base import PaperFigure, catalog_suite

_T1 = "CIFAR-10, UNet trained against ResNet18, transferred to VGG16, noise std 0.5 (on the normalised image)"
_T2 = ("CIFAR-10, ResNet110 black box (unseen in training), CERTIFY n=10000 n0=100 alpha=0.001, best sigma per "
       "radius; radii in the paper's (normalised) units")
_T5 = "CIFAR-10, 20-step BPDA PGD-l2, eps 0.5, alpha 0.01, noise std 0.5"

SALMAN = "Salman MSE+stability (black-box baseline)"
NONE = "No denoiser (Cohen RS, pixel sigma)"


def irs_name(sigma: float) -> str:
    return f"IRS-Net (paper sigma: {sigma} on normalised)"


def _figures(sigma: float = 0.5) -> tuple[PaperFigure, ...]:
    irs = irs_name(sigma)
    figs = [PaperFigure("TABLE I", "Ours (IRS-Net), VGG16", "accuracy, noise std 0.50", 84.87, _T1,
                        f"t1|{irs}|unseen lenet"),
            PaperFigure("TABLE I", "Salman et al. [8], VGG16", "accuracy, noise std 0.50", 25.10, _T1,
                        f"t1|{SALMAN}|unseen lenet")]
    for row, key, vals in (("Ours (Blackbox)", irs, (0.77, 0.61, 0.52, 0.43)),
                           ("Salman et al. (Blackbox)", SALMAN, (0.45, 0.20, 0.15, 0.13)),
                           ("Cohen et al. (Whitebox)", NONE, (0.59, 0.45, 0.31, 0.21))):
        for r, v in zip((0.25, 0.5, 0.75, 1.0), vals, strict=True):
            figs.append(PaperFigure("TABLE II", row, f"CA r={r}", v, _T2, f"t2|{key}|{r}", unit="fraction"))
    figs += [PaperFigure("TABLE V", "Ours (blackbox) (UNet) (with rescaled loss)", "BPDA PGD-l2 accuracy", 75.2, _T5,
                         f"t5|{irs}"),
             PaperFigure("TABLE V", "Salman et al. (blackbox) (DnCNN)", "BPDA PGD-l2 accuracy", 9.6, _T5,
                         f"t5|{SALMAN}")]
    return tuple(figs)


def quick_config() -> Any:
    from dataclasses import replace

    from .irs_net import DEMO_IRS, IRSTablesConfig
    from .settings import CertifySettings

    return IRSTablesConfig(train=replace(DEMO_IRS, epochs=8), n_train=500, n_test=20,
                           certify=CertifySettings(n0=20, n=200), n_attack=10, attack_steps=5,
                           certify_on=("unseen lenet",))


def full_config() -> Any:
    from .irs_net import IRSTablesConfig
    from .settings import CertifySettings

    return IRSTablesConfig(certify=CertifySettings(n0=50, n=500))


def run(run: RunDir, *, quick: bool, seed: int, cache_dir: Path, on_event: EventCallback | None = None,
        ray: RayOptions | None = None, method: str | None = None) -> dict[str, Any]:
    """Tables I, II-IV and V at the quick or the full scale."""
    from dataclasses import replace

    cfg = replace(quick_config() if quick else full_config(), seed=seed)
    if method is not None:  # the certification method (default: the config's, cohen)
        cfg = replace(cfg, method=method)
    return run_scaled(run, cfg, cache_dir=cache_dir, on_event=on_event, ray=ray)


def run_scaled(run: RunDir, cfg: Any, *, cache_dir: Path, on_event: EventCallback | None = None,
               ray: RayOptions | None = None) -> dict[str, Any]:
    """Tables I, II-IV and V with ``cfg`` (an :class:`.irs_net.IRSTablesConfig`) into ``run``; returns
    ``{"ours", "settings"}`` keyed as :data:`FIGURES`. ``ray``: the certification on Ray workers."""
    from ...data import load_dataset, make_splits
    from .irs_net import RADII, run_irs_tables

    splits = make_splits(load_dataset("mnist5k"), seed=0)
    res = run_irs_tables(splits, cfg, run, cache_dir=Path(cache_dir), section="IRS-Net tables", on_event=on_event,
                         ray=ray)
    ours: dict[str, Any] = {}
    models = ["surrogate smallcnn", "unseen lenet", "unseen smallcnn"]
    for row in res["table1"]:
        for m, v in zip(models, row[1:1 + len(models)], strict=True):
            ours[f"t1|{row[0]}|{m}"] = v
    for row in res["table2"]:
        if row[0] == "unseen lenet":
            for r, v in zip(RADII, row[3:3 + len(RADII)], strict=True):
                ours[f"t2|{row[1]}|{r}"] = v
    for name, _clean, adv in res["table5"]:
        ours[f"t5|{name}"] = adv
    base = f"MNIST-5k, SmallCNN surrogate (defender split), unseen LeNet (owner split), UNet width " \
           f"{cfg.train.width}, {cfg.train.epochs} epochs on {cfg.n_train} defender images"
    return {"ours": ours, "settings": {
        "TABLE I": f"{base}; accuracy on one noisy draw over the 1000 test images, sigma {cfg.sigma} on the "
                   "normalised image (Salman: pixel sigma)",
        "TABLE II": f"{base}; CERTIFY n0={cfg.n0} n={cfg.n} alpha={cfg.alpha} on {cfg.n_test} test images, one sigma "
                    f"({cfg.sigma}); radii in pixel units (IRS-Net's pixel sigma is {cfg.sigma} x std 0.31)",
        "TABLE V": f"{base}; {cfg.attack_steps}-step BPDA PGD-l2 eps {cfg.attack_eps} on {cfg.n_attack} images "
                   "(step 2.5 eps/steps)"}}


FIGURES = _figures()
SUITE = catalog_suite("irs-net", figures=FIGURES, run=run, certifies=True)

__all__ = ["FIGURES", "SUITE", "full_config", "irs_name", "quick_config", "run", "run_scaled"]
