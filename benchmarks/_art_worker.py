"""Runs ART's attacks for ``attacks_vs_art.py`` inside ``.cache/art-venv`` (ART's own venv).

Reads a JSON job on argv[1], prints one JSON result line. Not part of the library.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from torch import nn


class Counting(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.queries = 0
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += int(x.shape[0])
        self.calls += 1
        return self.inner(x)


def main() -> None:
    job = json.loads(sys.argv[1])
    torch.set_num_threads(job["threads"])
    from art.attacks.evasion import SimBA, SquareAttack
    from art.estimators.classification import PyTorchClassifier

    from bbdefense.models import load_checkpoint

    module, meta = load_checkpoint(job["model"])
    module.eval()
    # ART's SimBA refuses logits: it gets the softmax of the same model
    counted = Counting(module if job["attack"] == "square" else nn.Sequential(module, nn.Softmax(dim=1)))
    data = np.load(job["data"])
    x, y = data["x"], data["y"]
    clf = PyTorchClassifier(counted, loss=nn.CrossEntropyLoss(), input_shape=tuple(meta["input_shape"]),
                            nb_classes=meta["num_classes"], clip_values=(0.0, 1.0), device_type="cpu")
    if job["attack"] == "square":
        atk = SquareAttack(clf, norm=np.inf, eps=job["eps"], max_iter=job["iters"], p_init=job["p_init"],
                           nb_restarts=1, batch_size=len(x), verbose=False)
    else:
        atk = SimBA(clf, attack=job["basis"], max_iter=job["iters"], epsilon=job["step"], freq_dim=job["freq"],
                    batch_size=1,
                    verbose=False)
    t0 = time.perf_counter()
    x_adv = atk.generate(x=x, y=np.eye(meta["num_classes"])[y] if job["attack"] == "square" else None)
    secs = time.perf_counter() - t0
    with torch.no_grad():
        pred = module(torch.from_numpy(x_adv.astype(np.float32))).argmax(1).numpy()
    linf = float(np.abs(x_adv - x).reshape(len(x), -1).max(1).max())
    print(json.dumps({"success_rate": float((pred != y).mean()), "queries": counted.queries, "calls": counted.calls,
                      "seconds": secs, "max_linf": linf}))


if __name__ == "__main__":
    main()
