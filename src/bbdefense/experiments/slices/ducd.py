"""Demo slice: DUCD (distil a surrogate under a query budget, certify it) vs WUCD and Cohen RS."""

from __future__ import annotations

import torch

from ...certified.ducd import DistillConfig, TransferSet, build_surrogate
from ...certified.ducd.distill import collect_transfer_set
from ...errors import CheckpointError
from ...models import load_checkpoint
from ...training import TrainConfig, train_target
from ..context import DEMO_ARCH, DEMO_DATASET, DemoContext, register_slice
from ..papers.ducd import DUCDConfig, run_ducd
from ..papers.settings import CertifySettings

TITLE = "DUCD: distilled surrogate + certified defense"
SURROGATE = "lenet"  # a small student (the paper distils into ResNet-18; any zoo classifier works)


@register_slice("ducd", TITLE, order=60)
def ducd_slice(ctx: DemoContext) -> None:
    quick = ctx.quick
    budget = 3000 if quick else 5000
    sigmas = (0.5,) if quick else (0.25, 0.5)
    norms = ("l2",) if quick else ("l1", "l2", "linf")
    sec = ctx.section(TITLE, (
        f"DUCD (Li et al. 2024): the defender queries the black-box target on its own **disjoint** split "
        f"(MNIST-5k defender, 1,000 images) plus augmented images, {budget} queries in all (the hard budget), "
        "distils a LeNet surrogate with the L1 logit loss (Eq. 6), fine-tunes it with noise and certifies it "
        "with randomized smoothing and Algorithm 3. Certification queries go to the surrogate, never to the "
        "target. WUCD applies the same defense to the target with white-box access (fine-tuned on 600 (quick) or "
        "1,000 owner "
        "images to keep the demo short); RS is Cohen et al. (Gaussian training from scratch, full demo only). "
        "Few images and small n: the figures are indicative; see docs/ducd.md for the measured tables."))
    cache = ctx.cache_dir / "ducd"
    tpath = cache / f"transfer_b{budget}"
    bb = ctx.blackbox(budget=budget, name="target")
    dcfg = DistillConfig(budget=budget, epochs=6 if quick else 10, seed=ctx.seed)
    try:
        transfer = TransferSet.load(tpath)
    except CheckpointError:
        transfer = collect_transfer_set(bb, ctx.splits.defender.x, dcfg)
        transfer.save(tpath)
    sur = build_surrogate(SURROGATE, num_classes=ctx.target_meta["num_classes"], input_shape=ctx.input_shape,
                          mean=ctx.splits.defender.mean, std=ctx.splits.defender.std, seed=ctx.seed)

    def rs_model(sigma: float) -> torch.nn.Module:
        cfg = TrainConfig(mode="gaussian", sigma=sigma, epochs=3, seed=0)
        path, _ = train_target(DEMO_ARCH, DEMO_DATASET, cache / f"rs_{DEMO_ARCH}_sigma{sigma:g}", cfg, reuse=True)
        return load_checkpoint(path)[0]

    cfg = DUCDConfig(sigmas=sigmas, norms=norms, n_images=25 if quick else 50,
                     certify=CertifySettings(n0=50, n=200 if quick else 400),
                     finetune_epochs=2, seed=ctx.seed)
    owner = ctx.splits.owner_train.subset(torch.arange(600 if quick else 1000))
    summary = run_ducd(ctx.run, bb, sur, ctx.splits.defender, ctx.splits.test, cfg, distill_cfg=dcfg,
                       transfer=transfer, target_module=ctx.target_module, owner_train=owner,
                       rs_model=None if quick else rs_model, section=sec, on_event=ctx.on_event)
    ctx.run.set_metrics(**{"ducd.surrogate_ratio": summary["ratio"], "ducd.distill_queries": len(transfer)})
