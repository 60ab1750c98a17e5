"""Suite ``zo-ae-ds``: ZO-AE-DS (Zhang et al., ICLR 2022) against a LeNet black box on MNIST-5k.

What it reproduces: Table 2 (SA and certified accuracy at l2 radii 0.25 / 0.5 / 0.75 of RS, FO-DS,
FO-AE-DS, ZO-DS and ZO-AE-DS with RGE q in {20, 100, 192} and CGE; the experiment code is
:func:`.zo_ae_ds.run_table2`) and, in the full suite, Table 5 (MNIST image reconstruction under l2
PGD, :func:`bbdefense.certified.zo_ae_ds.reconstruction.run_table5`).

Full = ``benchmarks/denoised_tables.py --only table2`` and ``--only table5`` (docs/denoised-smoothing.md):
every variant, 200 test images, CERTIFY n = 500, sigma 0.75. Quick: RS, FO-AE-DS, ZO-DS and ZO-AE-DS
(RGE, q = 20) only, 2 epochs on 500 defender images (AE pre-trained 10 epochs), 20 test images, n = 200,
the same sigma 0.75; no Table 5.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...events import EventCallback, emit
from ...records import RunDir

if TYPE_CHECKING:
    from ...evaluation.distributed import RayOptions

from .base import PaperFigure, catalog_suite
from .zo_ae_ds import RADII  # Table 2's radii

#: Table 2 of the paper (CIFAR-10, ResNet-110): column -> (our variant, SA / CA at r = 0.25, 0.5, 0.75 in %)
TABLE2: dict[str, tuple[dict[str, Any], tuple[float, float, float, float]]] = {
    "RS": ({"variant": "rs"}, (76.44, 60.64, 41.19, 21.11)),
    "FO-DS": ({"variant": "fo-ds"}, (71.80, 51.74, 30.22, 11.87)),
    "FO-AE-DS": ({"variant": "fo-ae-ds"}, (75.97, 59.12, 38.50, 18.18)),
    "ZO-DS (RGE, q=20)": ({"variant": "zo-ds", "zo_method": "rge", "q": 20, "lr": 1e-4}, (19.50, 3.89, 0.60, 0.03)),
    "ZO-DS (RGE, q=100)": ({"variant": "zo-ds", "zo_method": "rge", "q": 100, "lr": 1e-4},
                           (41.38, 18.05, 4.78, 0.32)),
    "ZO-DS (RGE, q=192)": ({"variant": "zo-ds", "zo_method": "rge", "q": 192, "lr": 1e-4},
                           (44.81, 19.16, 5.06, 0.30)),
    "ZO-AE-DS (RGE, q=20)": ({"variant": "zo-ae-ds", "zo_method": "rge", "q": 20}, (42.72, 29.57, 17.85, 8.52)),
    "ZO-AE-DS (RGE, q=100)": ({"variant": "zo-ae-ds", "zo_method": "rge", "q": 100}, (58.61, 40.96, 24.28, 9.45)),
    "ZO-AE-DS (RGE, q=192)": ({"variant": "zo-ae-ds", "zo_method": "rge", "q": 192}, (63.13, 45.69, 27.84, 10.89)),
    "ZO-AE-DS (CGE, q=192)": ({"variant": "zo-ae-ds", "zo_method": "cge"}, (72.23, 54.87, 35.50, 16.37)),
}
#: Table 5 (MNIST reconstruction, 40-step l2 PGD): our method -> (paper row, RMSE at ||delta|| = 0, 1, 2, 3, 4)
TABLE5: dict[str, tuple[str, tuple[float, ...]]] = {
    "no defense": ("Standard", (0.112, 0.346, 0.493, 0.561, 0.596)),
    "FO-DS": ("FO-DS", (0.143, 0.168, 0.221, 0.278, 0.331)),
    "ZO-DS (RGE, q=20)": ("ZO-DS (RGE, q=192)", (0.197, 0.217, 0.262, 0.313, 0.356)),
    "ZO-AE-DS (RGE, q=20)": ("ZO-AE-DS (CGE, q=192)", (0.141, 0.164, 0.217, 0.277, 0.33)),
}

_T2 = "CIFAR-10, ResNet-110 black box, DnCNN, sigma^2 = 0.25 as written (the released code: sigma 0.25), l2"
_T5 = "MNIST reconstruction network, 40-step l2 PGD"


def _label(v: dict[str, Any]) -> str:
    from .zo_ae_ds import _label as label

    return label(v)


def _figures() -> tuple[PaperFigure, ...]:
    figs = []
    for col, (v, ca) in TABLE2.items():
        for r, val in zip(RADII, ca, strict=True):
            figs.append(PaperFigure("Table 2", col, "SA" if r == 0 else f"CA r={r}", val, _T2, f"{_label(v)}|ca@{r}"))
    for ours, (row, rmse) in TABLE5.items():
        for eps, val in zip((0.0, 2.0, 4.0), (rmse[0], rmse[2], rmse[4]), strict=True):
            figs.append(PaperFigure("Table 5", row, f"RMSE, ||delta||_2 = {eps:g}", val, _T5,
                                    f"t5|{ours}|{eps}", unit="RMSE"))
    return tuple(figs)


#: The quick suite's variants: the baseline, the white-box and the black-box AE pipeline, and ZO-DS at the
#: paper's lr (the paper's central contrast: ZO-AE-DS vs ZO-DS at the same q).
QUICK_VARIANTS: tuple[dict[str, Any], ...] = (
    {"variant": "rs"}, {"variant": "fo-ae-ds"}, {"variant": "zo-ds", "zo_method": "rge", "q": 20, "lr": 1e-4},
    {"variant": "zo-ae-ds", "zo_method": "rge", "q": 20})


def quick_config() -> Any:
    from ...certified.zo_ae_ds.train import ZOAEDSConfig
    from .settings import CertifySettings
    from .zo_ae_ds import Table2Config

    return Table2Config(train=ZOAEDSConfig(epochs=2), n_train=500, n_test=20, certify=CertifySettings(n0=20, n=200),
                        ae_epochs=10, variants=[dict(v) for v in QUICK_VARIANTS])


def full_config() -> Any:
    from .settings import CertifySettings
    from .zo_ae_ds import Table2Config

    return Table2Config(certify=CertifySettings(n0=50, n=500))


def lenet_target(cache_dir: Path, on_event: EventCallback | None = None) -> Any:
    """The LeNet black box of the denoised tables (MNIST-5k owner split, 6 epochs, cached)."""
    from ...models import load_checkpoint
    from ...training import TrainConfig, train_target

    p, _ = train_target("lenet", "mnist5k", Path(cache_dir) / "target_lenet_mnist5k", TrainConfig(epochs=6, seed=0),
                        reuse=True, on_event=on_event)
    return load_checkpoint(p)[0]


def run_scaled(run: RunDir, cfg: Any, *, table2: bool = True, table5: bool = True, cache_dir: Path,
               on_event: EventCallback | None = None, ray: RayOptions | None = None) -> dict[str, Any]:
    """Table 2 with ``cfg`` (a :class:`.zo_ae_ds.Table2Config`) and/or Table 5 into ``run``; returns
    ``{"ours", "settings"}`` keyed as :data:`FIGURES`. ``ray``: Table 2's certification on Ray workers."""
    from ...data import load_dataset, make_splits
    from .zo_ae_ds import run_table2

    splits = make_splits(load_dataset("mnist5k"), seed=0)
    ours: dict[str, Any] = {}
    settings: dict[str, str] = {}
    if table2:
        target = lenet_target(cache_dir, on_event)
        rows = run_table2(target, splits, cfg, run, section="ZO-AE-DS Table 2", on_event=on_event, ray=ray)
        ours.update({f"{r['method']}|ca@{rad}": r.get(f"ca@{rad}") for r in rows for rad in RADII})
        settings["Table 2"] = (f"MNIST-5k, LeNet black box, DnCNN depth {cfg.train.depth} width {cfg.train.width}, "
                               f"sigma {cfg.sigma}, {cfg.n_test} test images, CERTIFY n0={cfg.n0} n={cfg.n} "
                               f"alpha={cfg.alpha}, {cfg.train.epochs} epoch(s) on {cfg.n_train} defender images")
    if table5:
        from ...certified.zo_ae_ds.reconstruction import run_table5

        emit(on_event, "info", "zo-ae-ds", message="Table 5: reconstruction under l2 PGD")
        for label, eps, rmse, _ssim, _tq in run_table5(splits, run, seed=cfg.seed, section="ZO-AE-DS Table 5"):
            ours[f"t5|{label}|{float(eps)}"] = rmse  # type: ignore[arg-type]  # run_table5's rows are untyped
        settings["Table 5"] = ("MNIST-5k, reconstruction y = Ax (m = 576), 40-step l2 PGD, 20 test images, sigma 0.25, "
                               "RGE q = 20 for both ZO rows (the paper: ZO-DS RGE q = 192, ZO-AE-DS CGE q = 192)")
    return {"ours": ours, "settings": settings}


def run(run: RunDir, *, quick: bool, seed: int, cache_dir: Path, on_event: EventCallback | None = None,
        ray: RayOptions | None = None, method: str | None = None) -> dict[str, Any]:
    """Quick: Table 2 with :func:`quick_config`; full: Table 2 with :func:`full_config` and Table 5."""
    from dataclasses import replace

    cfg = replace(quick_config() if quick else full_config(), seed=seed)
    if method is not None:  # the certification method (default: the config's, cohen)
        cfg = replace(cfg, method=method)
    return run_scaled(run, cfg, table5=not quick, cache_dir=cache_dir, on_event=on_event, ray=ray)


FIGURES = _figures()
SUITE = catalog_suite("zo-ae-ds", figures=FIGURES, run=run, certifies=True)

__all__ = ["FIGURES", "SUITE", "TABLE2", "TABLE5", "full_config", "lenet_target", "quick_config", "run", "run_scaled"]
