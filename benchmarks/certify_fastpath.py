"""CPU fast path of certification: eager torch vs channels_last vs ONNX Runtime vs the default ``backend="auto"``
(:mod:`bbdefense.models.onnx_auto`: the path it chose is printed) for the zoo's small CNNs and ResNets, and the
certify loop (``Smooth.sample_counts``: noise, packing, counting, the counted black box) vs the raw batched
forward pass of the same backend (goal: loop >= 0.9x raw), and what the loop cannot avoid: the noise draws
alone (the same per-image streams and packing, no forward), with the ceiling a loop that draws and forwards in
turn would reach, ``1 / (1 + t_draws / t_raw)`` (the loop beats it only by drawing on the second core).

    .venv/bin/python benchmarks/certify_fastpath.py [--archs smallcnn,lenet,resnet20,resnet18] [--samples 4000]
        [--batch 500] [--threads 1] [--repeats 5]

Samples/s are the median of ``--repeats`` runs; raw, loop and draws are timed in turn within each repeat and
"loop / raw" is the median of the paired ratios (a machine whose speed drifts moves both alike).
"max |diff|" is the largest logit difference from eager on the timed batch
(``auto`` takes a path only when every logit is within 1e-5 * max(1, |eager logit|) on its probe batch; the
"decide s" line gives its export + probe time). Weights are random (speed does not depend on them).
Timings depend on the machine and its load: re-run on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # E402 below: the script runs without installing

from bbdefense.certify import Smooth, make_noise  # noqa: E402
from bbdefense.certify.streams import NoiseStream, image_seed, pack  # noqa: E402
from bbdefense.models import BlackBox, export_onnx  # noqa: E402
from bbdefense.models.backends import OnnxBackend, TorchBackend  # noqa: E402
from bbdefense.models.onnx_auto import AutoBackend  # noqa: E402
from bbdefense.models.zoo import build_model  # noqa: E402

SHAPES = {"smallcnn": (1, 28), "lenet": (1, 28)}  # the rest: 3 x 32 x 32 (CIFAR)


def paired(fns: list[Callable[[], object]], repeats: int) -> list[list[float]]:
    """Seconds of each of ``fns`` per repeat, timed in turn within a repeat (after one warm-up of each)."""
    for fn in fns:
        fn()
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            out[k].append(time.perf_counter() - t)
    return out


def draws_only(sm: Smooth, x: torch.Tensor, samples: int, batch: int) -> None:
    """``sm``'s noise work alone: the image's stream (same noise, generator, blocks, packing), no forward."""
    streams = [NoiseStream(sm.noise, sm.scale, x, image_seed(0, 0, 1), samples)]
    pending: deque[list[int]] = deque([[0, samples]])
    for done in range(0, samples, batch):
        pack(x, streams, pending, min(batch, samples - done), False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="smallcnn,lenet,resnet20,resnet18")
    ap.add_argument("--samples", type=int, default=4000, help="noisy images per timing")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads} samples={args.samples} batch={args.batch} torch={torch.__version__}\n")
    print("| arch | backend | raw samples/s | certify loop samples/s | loop / raw | draws alone samples/s | "
          "serial ceiling | vs eager raw | max abs diff |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    decide_s: dict[str, tuple[str, float, list[str]]] = {}
    for arch in args.archs.split(","):
        c, s = SHAPES.get(arch, (3, 32))
        torch.manual_seed(0)
        module = build_model(arch, num_classes=10, in_channels=c, image_size=s).eval()
        shape = (c, s, s)
        x = torch.rand((1, *shape), generator=torch.Generator().manual_seed(0))
        xb = (x + 0.25 * torch.randn((args.batch, *shape), generator=torch.Generator().manual_seed(1)))
        with torch.inference_mode():
            ref = module(xb)
        with tempfile.TemporaryDirectory() as tmp:
            backends: dict[str, Any] = {
                "eager": TorchBackend(build_model(arch, num_classes=10, in_channels=c, image_size=s)),
                "channels_last": TorchBackend(build_model(arch, num_classes=10, in_channels=c, image_size=s),
                                              memory_format="channels_last"),
                "onnx": OnnxBackend(export_onnx(module, Path(tmp) / "m.onnx", shape), threads=args.threads),
            }
            for b in backends.values():  # the same random weights everywhere
                if isinstance(b, TorchBackend):
                    b.module.load_state_dict(module.state_dict())
            auto_module = build_model(arch, num_classes=10, in_channels=c, image_size=s).eval()
            auto_module.load_state_dict(module.state_dict())
            auto = AutoBackend(auto_module, shape)  # the default of load_blackbox / --backend
            t0 = time.perf_counter()
            info = auto.decide()  # what the certify loop's plan (> 10,000 queries) would trigger
            decide_s[arch] = (info["path"], time.perf_counter() - t0, info["tried"])
            backends[f"auto -> {info['path']}"] = auto
            eager_raw = None
            for name, b in backends.items():
                diff = float((b.forward(xb) - ref).abs().max())

                def raw(b: object = b, xb: torch.Tensor = xb) -> None:
                    done = 0
                    while done < args.samples:
                        m = min(args.batch, args.samples - done)
                        b.forward(xb[:m]).argmax(1)  # type: ignore[attr-defined]  # any backend
                        done += m

                bb = BlackBox(b, num_classes=10, input_shape=shape)  # type: ignore[arg-type]  # a Backend
                sm = Smooth(bb, make_noise("gaussian", sigma=0.25))
                t_raws, t_loops, t_draws = paired(
                    [raw, lambda sm=sm, x=x: sm.sample_counts(x, args.samples, batch_size=args.batch),
                     lambda sm=sm, x=x: draws_only(sm, x, args.samples, args.batch)], args.repeats)
                ratio = statistics.median(r / lp for r, lp in zip(t_raws, t_loops, strict=True))
                t_raw, t_loop, t_draw = (statistics.median(t) for t in (t_raws, t_loops, t_draws))
                eager_raw = eager_raw or t_raw
                print(f"| {arch} | {name} | {args.samples / t_raw:.0f} | {args.samples / t_loop:.0f} | "
                      f"{ratio:.2f} | {args.samples / t_draw:.0f} | {1 / (1 + t_draw / t_raw):.2f} | "
                      f"{eager_raw / t_raw:.2f} | {diff:.1e} |", flush=True)
    print()
    for arch, (path, secs, tried) in decide_s.items():
        print(f"auto on {arch}: {path}, decided in {secs:.2f} s (export + probe){'; ' if tried else ''}"
              f"{'; '.join(tried)}")


if __name__ == "__main__":
    main()
