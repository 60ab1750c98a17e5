"""Our batched HopSkipJump vs ART's per-image HopSkipJump on MNIST test images.

Usage: ``.venv/bin/python benchmarks/hsja_speed.py [--n 20] [--iters 10] [--norm l2|linf] [--threads 1]``

ART (adversarial-robustness-toolbox 1.20.1, plus its pure-Python deps tqdm and six) is installed
``--no-deps`` into its own venv ``.cache/art-venv`` and imported from there, using this
project's numpy/scipy/scikit-learn. ART's HSJA crashes on a ``PyTorchClassifier`` under NumPy 2
(float64 promotion, ART issue #2475; see shared/reference/art.md), so both attacks query the
same SmallCNN through a float32-casting ``BlackBoxClassifier`` / our ``BlackBox`` (labels only).
Both run the same number of HSJA iterations with the reference's defaults (100 initial probes,
at most 1e4, gamma 1, geometric step search); our per-image budget is set high enough not to bind.
Queries are counted by a wrapper around the predict function (ART has no counter).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
# E402 below: these imports need the sys.path entries set here (the script runs without installing).
sys.path.insert(0, str(ROOT / "benchmarks"))
from _art_env import art_site_packages  # noqa: E402


def target_module(ckpt: str | None) -> torch.nn.Module:
    from bbdefense.experiments.demo import DEMO_ARCH, DEMO_DATASET, DEMO_TRAIN
    from bbdefense.models import load_checkpoint
    from bbdefense.training import train_target

    if ckpt is not None:
        return load_checkpoint(ckpt)[0].eval()
    path, _ = train_target(DEMO_ARCH, DEMO_DATASET, ROOT / ".cache" / "bench" / "target_smallcnn_mnist5k", DEMO_TRAIN,
                           reuse=True)
    module, _ = load_checkpoint(path)
    return module.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--norm", choices=["l2", "linf"], default="l2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-art", action="store_true")
    ap.add_argument("--art-iters", default=None,
                    help="comma-separated ART iteration counts (default: --iters); more iterations show how long "
                         "ART needs to reach our median distance")
    ap.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                    help="How both attacks run the model (onnx: onnxruntime, faster for small CNNs on CPU).")
    ap.add_argument("--model", default=None, help="A SmallCNN MNIST checkpoint (default: train/reuse the demo target).")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from bbdefense.attacks import ATTACKS
    from bbdefense.data import load_dataset, make_splits
    from bbdefense.models import BlackBox

    module = target_module(args.model)
    test = make_splits(load_dataset("mnist5k"), seed=0).test
    with torch.no_grad():
        ok = module(test.x[:200]).argmax(1) == test.y[:200]
    x, y = test.x[:200][ok][: args.n], test.y[:200][ok][: args.n]

    rows = []
    if args.backend == "onnx":
        import tempfile

        from bbdefense.models import export_onnx
        from bbdefense.models.backends import OnnxBackend

        onnx_path = Path(tempfile.mkdtemp()) / "target.onnx"
        export_onnx(module, onnx_path, (1, 28, 28))
        ort = OnnxBackend(onnx_path, threads=args.threads)
        bb = BlackBox(ort, num_classes=10, input_shape=(1, 28, 28), output="label")
        forward = ort.forward
    else:
        bb = BlackBox.from_module(module, input_shape=(1, 28, 28), output="label")

        def forward(t: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return module(t)

    t0 = time.perf_counter()
    res = ATTACKS["hsja"](norm=args.norm, eps=None, max_queries=10**7, num_iterations=args.iters, seed=0).run(bb, x, y)
    t_ours = time.perf_counter() - t0
    d_ours = res.extra["min_norm"]
    rows.append(("bbdefense hsja (batched)", t_ours, bb.stats.queries / len(x), bb.stats.calls,
                 float(d_ours.median()), float(res.success.float().mean())))

    if not args.skip_art:
        sys.path.append(str(art_site_packages()))
        from art.attacks.evasion import HopSkipJump as ArtHSJ
        from art.estimators.classification import BlackBoxClassifier

        counter = {"q": 0, "calls": 0}

        def predict(a: np.ndarray) -> np.ndarray:
            counter["q"] += len(a)
            counter["calls"] += 1
            logits = forward(torch.as_tensor(np.asarray(a, dtype=np.float32)))
            return torch.nn.functional.one_hot(logits.argmax(1), 10).numpy().astype(np.float32)

        clf = BlackBoxClassifier(predict, input_shape=(1, 28, 28), nb_classes=10, clip_values=(0.0, 1.0))
        for k in [int(v) for v in (args.art_iters or str(args.iters)).split(",")]:
            counter.update(q=0, calls=0)
            atk = ArtHSJ(clf, norm=2 if args.norm == "l2" else np.inf, max_iter=k, max_eval=10_000,
                         init_eval=100, init_size=100, verbose=False)
            # ART's HopSkipJump draws from numpy's global RNG: seeding it is the only way to repeat its run.
            np.random.seed(0)  # noqa: NPY002
            t0 = time.perf_counter()
            xa = atk.generate(x.numpy().astype(np.float32))
            t_art = time.perf_counter() - t0
            diff = torch.as_tensor(xa) - x
            d_art = diff.flatten(1).norm(dim=1) if args.norm == "l2" else diff.flatten(1).abs().amax(1)
            with torch.no_grad():
                succ = module(torch.as_tensor(xa, dtype=torch.float32)).argmax(1) != y
            rows.append((f"ART 1.20.1 HopSkipJump ({k} iterations)", t_art, counter["q"] / len(x), counter["calls"],
                         float(d_art[succ].median()) if bool(succ.any()) else float("nan"),
                         float(succ.float().mean())))

    print(f"HopSkipJump {args.norm}, {len(x)} MNIST test images, {args.iters} iterations, "
          f"backend {args.backend}, threads {args.threads}")
    print(f"| {'implementation':40s} | {'wall s':>7s} | {'queries/img':>11s} | {'oracle calls':>12s} | "
          f"{'median ' + args.norm:>10s} | {'success':>7s} |")
    print(f"|{'-' * 42}|{'-' * 9}|{'-' * 13}|{'-' * 14}|{'-' * 12}|{'-' * 9}|")
    for r in rows:
        print(f"| {r[0]:40s} | {r[1]:7.2f} | {r[2]:11.0f} | {r[3]:12d} | {r[4]:10.3f} | {r[5]:7.2f} |")
    for r in rows[1:]:
        print(f"speed-up (wall of {r[0]} / ours): {r[1] / rows[0][1]:.1f}x")


if __name__ == "__main__":
    main()
