"""IBM ART's randomized-smoothing CERTIFY on a torch module, run in ART's own venv (benchmarks/_art_env.py).

One place for the benchmarks that put ART beside ``bbdefense.certify.Smooth`` (certify_vs_art.py,
certify_samples.py): the module is traced to TorchScript, the images saved as .npy, and ART's
``PyTorchRandomizedSmoothing.certify`` timed in a subprocess (best of ``repeats``).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _art_env import ensure_art_venv

_SCRIPT = r"""
import json, sys, time, numpy as np, torch
from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing
cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
model = torch.jit.load(cfg["model"]).eval()
x = np.load(cfg["x"])
rs = PyTorchRandomizedSmoothing(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                nb_classes=cfg["classes"], sample_size=cfg["n0"], scale=cfg["sigma"],
                                alpha=cfg["alpha"], clip_values=(0.0, 1.0), device_type="cpu")
best = float("inf")
for _ in range(cfg["repeats"]):
    t = time.perf_counter(); pred, rad = rs.certify(x, n=cfg["n"], batch_size=cfg["batch_size"])
    best = min(best, time.perf_counter() - t)
print(json.dumps({"seconds": best, "pred": [int(p) for p in pred], "radius": [float(r) for r in rad],
                  "abstain": float(np.mean(pred == -1))}))
"""


def art_certify(module: torch.nn.Module, x: torch.Tensor, *, n0: int, n: int, sigma: float, alpha: float,
                batch_size: int, threads: int = 1, repeats: int = 1, classes: int = 10) -> dict[str, Any]:
    """ART's CERTIFY of ``x`` ``(N, C, H, W)``: ``{"seconds" (best of repeats), "pred" (N,), "radius" (N,),
    "abstain" (fraction)}``; ART's pred is -1 on abstention, its radius is l2."""
    py = ensure_art_venv()
    with tempfile.TemporaryDirectory() as tmp:
        ts = Path(tmp) / "model.pt"
        torch.jit.save(torch.jit.trace(module, x[:2]), str(ts))
        np.save(Path(tmp) / "x.npy", x.numpy())
        cfg = {"model": str(ts), "x": str(Path(tmp) / "x.npy"), "n0": n0, "n": n, "sigma": sigma, "alpha": alpha,
               "batch_size": batch_size, "threads": threads, "repeats": repeats, "classes": classes}
        out = subprocess.run([str(py), "-c", _SCRIPT, json.dumps(cfg)], check=True, capture_output=True, text=True,
                             env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return json.loads(out.stdout.strip().splitlines()[-1])
