"""Demo slice: denoised smoothing for black boxes (ZO-AE-DS and IRS-Net), tiny budgets.

ZO-AE-DS trains a DnCNN + encoder in front of the demo target using only its scores (RGE; full
mode adds CGE and the first-order FO-AE-DS reference); IRS-Net trains a UNet against a LeNet
surrogate the defender trained on its own split, then protects the (unseen) demo target. Both are
certified with Cohen CERTIFY (:class:`bbdefense.certify.Smooth`, the denoiser as its ``pre``) at a
small n; every query to the target is counted and shown.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
from torch import Tensor

from ...certified.irs.irs_net import IRSConfig, pixel_sigma, train_denoiser
from ...certified.zo_ae_ds.train import ZOAEDSConfig, pretrain_autoencoder, train_zo_ae_ds
from ...certify import Smooth, make_noise
from ...evaluation.certification import certified_accuracy_ci, certify_rows
from ...evaluation.report import glance_accuracy
from ...models import BlackBox, WhiteBox, load_checkpoint
from ...records import table
from ...training import TrainConfig, train_target
from ..context import DemoContext, register_slice

TITLE = "Denoised smoothing for black boxes (ZO-AE-DS, IRS-Net)"
RADII = (0.0, 0.25, 0.5)


def _certified_accuracy(ctx: DemoContext, cb: BlackBox, xt: Tensor, yt: Tensor, sigma: float,
                        pre: Callable[[Tensor], Tensor] | None, n0: int, n: int,
                        scale: Tensor | None = None, *, label: str) -> dict[float, float]:
    """Certified l2 accuracy at RADII of the smoothing of ``cb o pre`` (noisy inputs clipped when no pre), through
    the one evaluation layer (:func:`certify_rows`); noted as ``label`` in the at-a-glance table with its interval."""
    sm = Smooth(cb, make_noise("gaussian", sigma=sigma), norms=("l2",), pre=pre, clip=pre is None, scale=scale)
    rows = certify_rows(sm, xt, yt, range(len(xt)), n0=n0, n=n, alpha=0.001, batch_size=n0 + n, seed=ctx.seed,
                        on_event=ctx.on_event).rows
    acc = {}
    for r, c in zip(RADII, certified_accuracy_ci(rows, "l2", RADII), strict=True):
        col = "clean accuracy" if r == 0 else f"certified accuracy, l2 r={r:g}"
        glance_accuracy(ctx.run, label, col, c["k"], c["n"])
        acc[r] = c["accuracy"]
    return acc


@register_slice("denoised", TITLE, order=70)
def denoised_slice(ctx: DemoContext) -> None:
    quick = ctx.quick
    n_train, epochs, n_test, n0, n = (400, 1, 10, 20, 100) if quick else (400, 2, 20, 20, 200)
    sec = ctx.section(TITLE, (
        "ZO-AE-DS (Zhang et al. 2022): denoiser + encoder trained in front of the black-box target from its scores "
        "only (zeroth-order gradients in the 192-d latent space, decoder frozen inside the black box). IRS-Net "
        "(Kumar & Narayan 2022): UNet on the normalised noisy image, trained against one surrogate and used in front "
        f"of the unseen target. Demo budget: {n_train} defender images, {epochs} epoch(s), Cohen CERTIFY on "
        f"{n_test} test images with n0={n0}, n={n}, alpha=0.001 (so radii are small); see docs/denoised-smoothing.md "
        "for the full tables."))
    shape = ctx.input_shape
    train = ctx.splits.defender.subset(torch.arange(n_train))
    xt, yt = ctx.splits.test.x[:n_test], ctx.splits.test.y[:n_test]
    rows: list[list[object]] = []
    target_queries = 0  # training + certification queries charged on the target
    # ---- ZO-AE-DS
    sigma = 0.25  # the demo target (SmallCNN, plain training) collapses to one class at sigma 0.75
    ae, mse = pretrain_autoencoder(train, epochs=10, seed=ctx.seed)
    variants = [ZOAEDSConfig(variant="zo-ae-ds", zo_method="rge", q=10, sigma=sigma, epochs=epochs)]
    if not quick:
        variants += [ZOAEDSConfig(variant="zo-ae-ds", zo_method="cge", difference="forward", sigma=sigma, epochs=1),
                     ZOAEDSConfig(variant="fo-ae-ds", sigma=sigma, epochs=epochs)]
    for cfg in [None, *variants]:
        t0 = time.perf_counter()
        pre, tq = None, 0
        if cfg is not None:
            tb = ctx.whitebox() if cfg.variant.startswith("fo") else ctx.blackbox()
            res = train_zo_ae_ds(tb, train, cfg, ae=copy.deepcopy(ae))
            pre, tq = res.pipeline, res.queries
        cb = ctx.blackbox()
        label = cfg.label if cfg else "RS (no denoiser)"
        acc = _certified_accuracy(ctx, cb, xt, yt, sigma, pre, n0, n, label=f"target+{label} sigma={sigma:g}")
        target_queries += tq + cb.stats.queries
        rows.append([label, sigma, *[acc[r] for r in RADII], tq, cb.stats.queries,
                     round(time.perf_counter() - t0, 1)])
    # ---- IRS-Net vs Salman, surrogate LeNet (defender split), target unseen
    p, _ = train_target("lenet", "mnist5k", ctx.cache_dir / "denoised_surrogate_lenet_defender",
                        TrainConfig(epochs=4, seed=1), split="defender", reuse=True)
    sur_mod, _ = load_checkpoint(p)
    for method in ("irs",) if quick else ("salman", "irs"):
        t0 = time.perf_counter()
        sur = WhiteBox(sur_mod, input_shape=shape)
        res2 = train_denoiser(sur, train, IRSConfig(method=method, sigma=0.5, epochs=4, batch_size=32,  # type: ignore[arg-type]
                                                    optimizer="adam", lr=3e-3, width=8, seed=ctx.seed))
        den = res2.denoiser
        cb = ctx.blackbox()
        label = f"{'IRS-Net' if method == 'irs' else 'Salman MSE+stab'} (surrogate LeNet)"
        acc = _certified_accuracy(ctx, cb, xt, yt, 0.5, den, n0, n, den.noise_scale, label=f"target+{label}")
        target_queries += cb.stats.queries
        rows.append([label,
                     round(pixel_sigma(den, 0.5), 3), *[acc[r] for r in RADII], 0, cb.stats.queries,
                     round(time.perf_counter() - t0, 1)])
    ctx.run.add_table({**table(
        "Denoised smoothing: certified accuracy on the demo target (l2, pixel space)",
        ["method", "pixel sigma", *[f"CA r={r}" for r in RADII], "target queries (training)",
         "target queries (certify)", "seconds"], rows,
        f"AE reconstruction MSE {mse:.4f}. r=0 is the smoothed clean accuracy (the target's own test accuracy, "
        f"without noise, is {float(ctx.target_meta['metrics']['test_accuracy']):.3f}). IRS-Net's sigma 0.5 is on the "
        "normalised image (pixel sigma = 0.5 x std); Salman's is on pixels. IRS/Salman training queries the "
        "surrogate only (0 target queries)."), "section": sec})
    ctx.run.set_metrics(denoised_target_queries=target_queries)
    if "target_test_accuracy" not in ctx.run.record.metrics:  # `demo --only denoised` skips the target slice
        ctx.run.set_metrics(target_test_accuracy=float(ctx.target_meta["metrics"]["test_accuracy"]))
