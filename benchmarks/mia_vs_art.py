"""Membership inference: bbdefense vs ART (adversarial-robustness-toolbox 1.20.1).

Checks, on the same data and model:
1. our label-only gap attack (``bbdefense.privacy.GapAttack`` through a label-only ``BlackBox``) gives
   exactly the member predictions of ART's ``MembershipInferenceBlackBoxRuleBased``;
2. our confidence-threshold attack's ROC-AUC equals one computed independently (NumPy forward pass of the
   exported weights + ``sklearn.metrics.roc_auc_score``, inside the ART venv).

Models: an MLP (64-128-10) on scikit-learn digits, overfit on 150 members (40 epochs), and one trained on
disjoint data; non-members are 150 other images. ART runs in its own venv ``.cache/art-venv`` (created here
if absent, reusing our pinned numpy/torch/scikit-learn through a ``.pth``).

Run: ``.venv/bin/python benchmarks/mia_vs_art.py``
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
# E402 below: these imports need the sys.path entries set here (the script runs without installing).
sys.path.insert(0, str(ROOT / "benchmarks"))
from _art_env import ART_VERSION, ensure_art_venv  # noqa: E402

CACHE = ROOT / ".cache"


def main() -> None:
    from bbdefense.data import load_dataset
    from bbdefense.models import BlackBox
    from bbdefense.privacy import GapAttack, ThresholdAttack, attack_metrics
    from bbdefense.training import TrainConfig, train_classifier

    torch.set_num_threads(1)
    py = ensure_art_venv()
    ds = load_dataset("digits")
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))
    mem, non, dis = ds.subset(perm[:150]), ds.subset(perm[150:300]), ds.subset(perm[300:450])
    x = torch.cat([mem.x, non.x])
    y = torch.cat([mem.y, non.y])
    truth = np.r_[np.ones(150, bool), np.zeros(150, bool)]
    rows = []
    for name, data, seed in (("overfit (members=train)", mem, 0), ("disjoint training data", dis, 1)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            m = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        train_classifier(m, data, TrainConfig(epochs=40, batch_size=50, lr=5e-3, seed=seed))
        m.eval()
        t0 = time.perf_counter()
        ours_gap = GapAttack().predict(BlackBox.from_module(m, num_classes=10, input_shape=(1, 8, 8), output="label"),
                                       x, y)
        ours_auc = attack_metrics(ThresholdAttack("confidence").score(
            BlackBox.from_module(m, num_classes=10, input_shape=(1, 8, 8)), x, y), truth, n_boot=1000, seed=0)
        t_ours = time.perf_counter() - t0
        npz = CACHE / "mia_art_job.npz"
        CACHE.mkdir(exist_ok=True)
        sd = {k: v.detach().double().numpy() for k, v in m.state_dict().items()}
        np.savez(npz, x=x.numpy().astype(np.float64), y=y.numpy(), truth=truth.astype(int), w1=sd["1.weight"],
                 b1=sd["1.bias"], w2=sd["3.weight"], b2=sd["3.bias"])
        t0 = time.perf_counter()
        res = subprocess.run([str(py), str(ROOT / "benchmarks" / "_mia_art_worker.py"), str(npz)],
                             capture_output=True, text=True)
        t_art = time.perf_counter() - t0
        if res.returncode != 0:
            raise SystemExit(f"ART worker failed: {res.stderr.strip()[-2000:]}")
        art = json.loads(res.stdout.strip().splitlines()[-1])
        art_member = np.asarray(art["member"], bool)
        rows.append([name, len(y), int((art_member == ours_gap).sum()), round(float(ours_gap.mean()), 4),
                     f"{ours_auc['auc']:.6f}", f"[{ours_auc['auc_low']:.3f}, {ours_auc['auc_high']:.3f}]",
                     f"{art['auc']:.6f}", f"{abs(ours_auc['auc'] - art['auc']):.1e}", f"{t_ours:.2f}",
                     f"{t_art:.2f}"])
    cols = ["model", "n", "gap: same preds as ART", "gap member rate", "our conf. AUC", "95% CI",
            "independent AUC", "|diff|", "ours s", "ART proc s"]
    print(f"MIA vs ART {ART_VERSION} (digits MLP; timings noisy, shared machine)")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(v) for v in r))


if __name__ == "__main__":
    main()
