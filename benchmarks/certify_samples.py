"""Samples per image to decide robustness: sequential (anytime-valid) certification vs Cohen CERTIFY at n=100,000
and n=10,000, with ART's RandomizedSmoothing certify side by side, on the MNIST-5k SmallCNN target trained with
Gaussian noise (issue 19's Done-when). Every noisy sample is one counted query on the black box.

    .venv/bin/python benchmarks/certify_samples.py [--images 50] [--images-small 500] [--cohen-n 100000]
        [--cohen-n-small 10000] [--max-n 100000] [--sigmas 0.25,0.5] [--radii 0.25,0.5,1.0] [--backend onnx]
        [--art-images 50] [--no-art] [--json out.json]

Per sigma: Cohen n=``--cohen-n`` on the first ``--images`` test images, Cohen n=``--cohen-n-small`` and the
sequential test (``max_n = --max-n``) on the first ``--images-small`` (which contain the first ``--images``: the
sequential run is compared with each Cohen run on that run's images). Test images are the checkpoint's
class-interleaved test split (every prefix holds every digit in proportion). Sample counts do not depend on the
load of the machine; wall times do (re-run on a quiet machine). ART runs in .cache/art-venv (benchmarks/_art_env.py)
with ``n = --cohen-n-small`` on the first ``--art-images`` images.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
# E402 below: these imports need the sys.path entries set here (the script runs without installing).
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _art_certify import art_certify  # noqa: E402
from bbdefense.certify import Smooth, make_noise  # noqa: E402
from bbdefense.data import load_dataset, make_splits  # noqa: E402
from bbdefense.evaluation.certification import certified_accuracy, certify_rows  # noqa: E402
from bbdefense.evaluation.report import samples_summary  # noqa: E402
from bbdefense.models import BlackBox, export_onnx, load_checkpoint  # noqa: E402
from bbdefense.models.backends import OnnxBackend  # noqa: E402
from bbdefense.models.checkpoint import split_seed_of  # noqa: E402
from bbdefense.training import TrainConfig, train_target  # noqa: E402


def summarize(name: str, rows: list[dict[str, Any]], radii: list[float], seconds: float) -> dict[str, Any]:
    acc = certified_accuracy(rows, "l2", [0.0, *radii])
    return {"method": name, "images": len(rows), "samples": samples_summary(rows),
            "cert_acc": dict(zip(["0", *[f"{r:g}" for r in radii]], acc, strict=True)), "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=50, help="images of the Cohen n=--cohen-n comparison")
    ap.add_argument("--images-small", type=int, default=500, help="images of the Cohen n=--cohen-n-small one")
    ap.add_argument("--cohen-n", type=int, default=100_000)
    ap.add_argument("--cohen-n-small", type=int, default=10_000)
    ap.add_argument("--max-n", type=int, default=100_000, help="sequential cap on estimation samples per image")
    ap.add_argument("--n0", type=int, default=100)
    ap.add_argument("--sigmas", default="0.25,0.5")
    ap.add_argument("--radii", default="0.25,0.5,1.0")
    ap.add_argument("--alpha", type=float, default=0.001)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backend", choices=("onnx", "torch"), default="onnx")
    ap.add_argument("--art-images", type=int, default=50)
    ap.add_argument("--no-art", action="store_true")
    ap.add_argument("--art-only", action="store_true", help="run only ART's certify (e.g. to add it to a run)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    radii = [float(r) for r in args.radii.split(",")]
    results: list[dict[str, Any]] = []
    for sigma in [float(s) for s in args.sigmas.split(",")]:
        path, meta = train_target("smallcnn", "mnist5k", ROOT / ".cache" / "bench" / f"smallcnn_mnist5k_gauss{sigma:g}",
                                  TrainConfig(mode="gaussian", sigma=sigma, epochs=args.epochs, seed=0), reuse=True)
        module, _ = load_checkpoint(path)
        module.eval()
        test = make_splits(load_dataset("mnist5k"), seed=split_seed_of(meta) or 0).test
        shape = tuple(test.x.shape[1:])
        with tempfile.TemporaryDirectory() as tmp:
            if args.backend == "onnx":
                ob = OnnxBackend(export_onnx(module, Path(tmp) / "m.onnx", shape), threads=args.threads)
                bb = BlackBox(ob, num_classes=10, input_shape=shape)
            else:
                bb = BlackBox.from_module(module, num_classes=10, input_shape=shape)
            sm = Smooth(bb, make_noise("gaussian", sigma=sigma), norms=("l2",))
            big, small = list(range(args.images)), list(range(args.images_small))
            x, y = test.x, test.y

            def run(name: str, idx: list[int], sm: Smooth = sm, x: torch.Tensor = x, y: torch.Tensor = y,
                    sigma: float = sigma, **kw: Any) -> list[dict[str, Any]]:
                t = time.perf_counter()
                res = certify_rows(sm, x[idx], y[idx], idx, n0=args.n0, alpha=args.alpha, batch_size=args.batch_size,
                                   seed=0, chunk=len(idx), **kw)
                s = summarize(name, res.rows, radii, time.perf_counter() - t)
                results.append({"sigma": sigma, **s})
                print(json.dumps(results[-1]), flush=True)
                return res.rows

            if not args.art_only:
                seq = run(f"sequential max_n={args.max_n}", small, method="sequential", radii=radii,
                          max_n=args.max_n)
                results.append({"sigma": sigma, **summarize(f"sequential max_n={args.max_n} (first {args.images})",
                                                            seq[:args.images], radii, float("nan"))})
                run(f"cohen n={args.cohen_n_small}", small, n=args.cohen_n_small)
                run(f"cohen n={args.cohen_n}", big, n=args.cohen_n)
            if not args.no_art:
                art = art_certify(module, x[:args.art_images], n0=args.n0, n=args.cohen_n_small, sigma=sigma,
                                  alpha=args.alpha, batch_size=args.batch_size, threads=args.threads)
                rows = [{"idx": i, "label": int(y[i]), "predict": p, "abstain": p < 0, "radius_l2": r,
                         "queries": args.n0 + args.cohen_n_small}
                        for i, (p, r) in enumerate(zip(art["pred"], art["radius"], strict=True))]
                results.append({"sigma": sigma, **summarize(f"ART certify n={args.cohen_n_small}", rows, radii,
                                                            art["seconds"])})
                print(json.dumps(results[-1]), flush=True)
    print(f"\nMNIST-5k SmallCNN trained with Gaussian noise ({args.epochs} epochs), alpha={args.alpha}, n0={args.n0}, "
          f"backend {args.backend}, {args.threads} thread(s); samples = noisy queries per image (n0 + estimation)")
    cols = ["sigma", "method", "images", "mean", "median", "p90", "max", *[f"r={r:g}" for r in [0.0, *radii]], "s"]
    print(" | ".join(cols))
    for r in results:
        s = r["samples"]
        print(" | ".join([f"{r['sigma']:g}", r["method"], str(r["images"]), f"{s['mean']:.0f}", f"{s['median']:.0f}",
                          f"{s['p90']:.0f}", f"{s['max']:.0f}", *[f"{v:.3f}" for v in r["cert_acc"].values()],
                          f"{r['seconds']:.1f}"]))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
