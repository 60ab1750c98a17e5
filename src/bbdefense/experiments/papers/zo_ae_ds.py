"""The Table 2 experiment of ZO-AE-DS at demo scale: every variant trained against one black box,
certified with Cohen CERTIFY, SA and certified accuracy at l2 radii 0.25 / 0.5 / 0.75, with the
black-box queries of training and of certification.

SA is the certified accuracy at radius 0 (the smoothed classifier's clean accuracy, abstentions
wrong), as in the paper's tables. Rows stream to ``rows/table2.jsonl`` as each variant finishes
(resumable).
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import torch
from scipy.stats import norm
from torch import nn

from ...certified.zo_ae_ds.train import ZOAEDSConfig, pretrain_autoencoder, train_zo_ae_ds
from ...certify import Smooth, make_noise
from ...data import Splits
from ...evaluation.certification import certified_accuracy
from ...evaluation.distributed import RayOptions, certify_smooth_rows
from ...events import EventCallback, emit
from ...models import BlackBox, WhiteBox
from ...records import RunDir, table
from .settings import CertifiedTable, CertifySettings

RADII: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)


#: The paper's learning rate for ZO-DS trained from scratch (§5 "Training setup": "When implementing
#: ZO-DS, we reduce the initial learning rate to 10^-4 for training from scratch ... to stabilize the
#: convergence of ZO optimization"); every other variant uses the table's ``lr`` (1e-3, as the paper).
ZO_DS_LR = 1e-4


def default_variants(quick: bool = False) -> list[dict[str, Any]]:
    """RS, FO-DS, FO-AE-DS, ZO-DS (RGE q=20 and q=192 at the paper's lr 1e-4, and q=20 at lr 1e-3 as an
    ablation), ZO-AE-DS (RGE q=20), ZO-AE-DS (CGE, q = d_z = 192), ZO-AE-DS (RGE q=20) at lr 1e-4 (the
    equal-lr ablation of the ZO-DS rows), then q = 100 (both) and 192 (ZO-AE-DS), the paper's q grid.

    A variant dict holds :class:`ZOAEDSConfig` fields; ``lr`` there overrides the table's."""
    v: list[dict[str, Any]] = [
        {"variant": "rs"},
        {"variant": "fo-ds"}, {"variant": "fo-ae-ds"},
        {"variant": "zo-ds", "zo_method": "rge", "q": 20, "lr": ZO_DS_LR},
        {"variant": "zo-ds", "zo_method": "rge", "q": 192, "lr": ZO_DS_LR},
        {"variant": "zo-ds", "zo_method": "rge", "q": 20, "lr": 1e-3},
        {"variant": "zo-ae-ds", "zo_method": "rge", "q": 20},
        {"variant": "zo-ae-ds", "zo_method": "cge"},
        {"variant": "zo-ae-ds", "zo_method": "rge", "q": 20, "lr": ZO_DS_LR},
        # the paper's q grid {20, 100, 192} for both RGE methods (rows appended so earlier rows resume)
        {"variant": "zo-ds", "zo_method": "rge", "q": 100, "lr": ZO_DS_LR},
        {"variant": "zo-ae-ds", "zo_method": "rge", "q": 100},
        {"variant": "zo-ae-ds", "zo_method": "rge", "q": 192},
    ]
    return [x for x in v if x["variant"] in ("rs", "fo-ae-ds", "zo-ae-ds")] if quick else v


@dataclass
class Table2Config(CertifiedTable):
    """Demo-scale budget (documented in docs/denoised-smoothing.md).

    sigma = 0.75 (not the paper's CIFAR-10 0.25). It was chosen when the plain LeNet black box seemed to
    keep 96% (sigma 0.25) and 94% (sigma 0.5) certified accuracy at r = 0.25 with no denoiser, but that
    was measured on 100 zeros and 100 ones (the old class-sorted split). On class-balanced test images
    it certifies 0.820 and 0.470, and one noisy draw at 0.75 is right 35% of the time; 0.75 is kept so
    the table stays comparable across runs (docs/denoised-smoothing.md, Conventions).
    """

    sigma: float = 0.75
    train: ZOAEDSConfig = field(default_factory=lambda: ZOAEDSConfig(epochs=4))
    """Every variant's training hyperparameters (epochs, batch, lr, DnCNN depth/width, ...): each entry of
    ``variants`` overrides its own keys, and ``sigma`` and ``seed`` are the table's."""
    n_train: int = 1000
    n_test: int = 200
    certify: CertifySettings = field(default_factory=lambda: CertifySettings(n0=50, n=500))
    method: Literal["cohen", "sequential"] = "cohen"  # sequential: decide the table's radii, at most n samples
    ae_epochs: int = 20
    variants: list[dict[str, Any]] = field(default_factory=default_variants)
    seed: int = 0


def _label(v: dict[str, Any]) -> str:
    if v["variant"] == "rs":
        return "RS (Cohen, no denoiser)"
    label = ZOAEDSConfig(**dict(v)).label
    return f"{label[:-1]}, lr={v['lr']:g})" if "lr" in v and label.endswith(")") else label


def run_table2(target: nn.Module, splits: Splits, cfg: Table2Config, run: RunDir, *, section: str | None = None,
               on_event: EventCallback | None = None, ray: RayOptions | None = None) -> list[dict[str, Any]]:
    """Train and certify every variant of ``cfg.variants`` against ``target`` (used as a black box,
    or as a white box for the FO variants); write rows and the Table 2 table into ``run``. ``ray``:
    certify on Ray workers (the target and the variant's pre-processor shipped; the same rows).

    Training uses the defender split (first ``n_train`` images, labels unused), certification the
    first ``n_test`` test images.
    """
    shape = tuple(splits.test.x.shape[1:])
    train = splits.defender.subset(torch.arange(min(cfg.n_train, len(splits.defender))))
    xt, yt = splits.test.x[:cfg.n_test], splits.test.y[:cfg.n_test]
    rows_w = run.rows("table2", key="method")
    ae = None
    results = []
    for v in cfg.variants:
        label = _label(v)
        if label in rows_w.done:
            continue
        emit(on_event, "info", "zo-ae-ds", message=f"training {label}")
        t0 = time.perf_counter()
        pre, tq, per_step, extra = None, 0, 0, {}
        if v["variant"] != "rs":
            zc = replace(cfg.train, sigma=cfg.sigma, seed=cfg.seed, **v)
            if zc.variant.endswith("ae-ds") and ae is None:
                ae, mse = pretrain_autoencoder(train, epochs=cfg.ae_epochs, seed=cfg.seed)
                run.set_metrics(ae_mse=mse, ae_seed=getattr(ae, "seed", cfg.seed))
            bb = (WhiteBox(target, input_shape=shape, name="target") if zc.variant.startswith("fo")  # type: ignore[arg-type]
                  else BlackBox.from_module(target, input_shape=shape, name="target"))  # type: ignore[arg-type]
            res = train_zo_ae_ds(bb, train, zc, ae=copy.deepcopy(ae) if ae is not None else None, on_event=on_event)
            pre, tq, per_step = res.pipeline, res.queries, res.queries_per_step
            extra = {"final_stab_loss": res.history[-1]["stab_loss"] if res.history else None}
        train_s = time.perf_counter() - t0
        cb = BlackBox.from_module(target, input_shape=shape, name="target")  # type: ignore[arg-type]
        t1 = time.perf_counter()
        sm = Smooth(cb, make_noise("gaussian", sigma=cfg.sigma), norms=("l2",), pre=pre, clip=pre is None)
        # one call for all images here (chunk = all), or Ray workers (ray): the same rows either way
        cres = certify_smooth_rows(sm, xt, yt, ray=ray, chunk=len(xt), n0=cfg.n0, n=cfg.n, alpha=cfg.alpha,
                                   batch_size=cfg.n0 + cfg.n, seed=cfg.seed, method=cfg.method,
                                   radii=[r for r in RADII if r > 0], max_n=cfg.n, task=f"certify:{label}")
        acc = dict(zip(RADII, certified_accuracy(cres.rows, "l2", RADII), strict=True))
        row = {"method": label, **{f"ca@{r}": acc[r] for r in RADII}, "train_queries": tq,
               "queries_per_step": per_step, "certify_queries": cb.stats.queries, "train_seconds": round(train_s, 1),
               "certify_seconds": round(time.perf_counter() - t1, 1), **extra}
        rows_w.write(row)
        results.append(row)
    rows_w.close()
    from ...records import read_rows
    allrows = list(read_rows(run.path / "rows" / "table2.jsonl"))
    run.add_table({**table(
        "ZO-AE-DS Table 2 layout (MNIST-5k, l2)",
        ["method", "SA", "CA r=0.25", "CA r=0.5", "CA r=0.75", "train queries", "queries/step", "certify queries"],
        [[r["method"], r["ca@0.0"], r["ca@0.25"], r["ca@0.5"], r["ca@0.75"], r["train_queries"],
          r["queries_per_step"], r["certify_queries"]] for r in allrows],
        f"sigma={cfg.sigma}, {cfg.n_test} test images, Cohen CERTIFY n0={cfg.n0}, n={cfg.n}, alpha={cfg.alpha}; "
        f"{cfg.train.epochs} epochs on {len(train)} defender images, batch {cfg.train.batch_size}; DnCNN depth "
        f"{cfg.train.depth} width {cfg.train.width}. With n={cfg.n} the largest certifiable radius is "
        f"{cfg.sigma * float(norm.ppf(cfg.alpha ** (1 / cfg.n))):.2f}."),
        **({"section": section} if section else {})})
    run.set_metrics(table2_config=asdict(cfg))
    return allrows
