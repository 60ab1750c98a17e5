"""Cost of a query through ``BlackBox`` vs calling the model directly.

For the MNIST SmallCNN (random weights: cost does not depend on them) at batch 1, 100 and 1000,
torch and ONNX backends: median seconds per call over interleaved repeats, the oracle's overhead
over the raw call, and ONNX's speed relative to torch. Run: ``.venv/bin/python benchmarks/oracle_overhead.py``.

The raw torch call is ``module(x)`` under ``torch.inference_mode()``; the raw ONNX call is
``session.run`` on a numpy array. The oracle adds input validation (one ``aminmax`` pass), budget
and counting bookkeeping, and the output mode (logits here).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bbdefense.models import BlackBox, OnnxBackend, build_model, export_onnx


def _time(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--seconds", type=float, default=1.5, help="approximate time per measurement")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    module = build_model("smallcnn", num_classes=10, in_channels=1, image_size=28, mean=[0.1307], std=[0.3081]).eval()
    tmp = Path(tempfile.mkdtemp())
    onnx_path = export_onnx(module, tmp / "smallcnn.onnx", (1, 28, 28))
    tb = BlackBox.from_module(module, input_shape=(1, 28, 28))
    ob_backend = OnnxBackend(onnx_path, threads=args.threads)
    ob = BlackBox(ob_backend, num_classes=10, input_shape=(1, 28, 28))
    sess, name = ob_backend.session, ob_backend.input_name

    def raw_torch(x):
        with torch.inference_mode():
            return module(x)

    rows = []
    for batch in (1, 100, 1000):
        x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(batch))
        xn = x.numpy()
        fns = {  # defaults bind this batch's tensors (the lambdas are only called inside this iteration)
            "torch raw": lambda x=x: raw_torch(x),
            "torch BlackBox": lambda x=x: tb(x),
            "onnx raw": lambda xn=xn: sess.run(None, {name: xn}),
            "onnx BlackBox": lambda x=x: ob(x),
        }
        for f in fns.values():  # warm-up
            f()
        t1 = statistics.median(_time(fns["torch raw"], 3))
        reps = max(5, int(args.seconds / max(t1, 1e-5) / 4))
        samples: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(4):  # interleave to share any drift in machine load
            for k, f in fns.items():
                samples[k] += _time(f, reps)
        med = {k: statistics.median(v) for k, v in samples.items()}
        rows.append((batch, med))
    print(f"threads={args.threads}  (median seconds per call; overhead = BlackBox / raw - 1)")
    print(f"{'batch':>6} | {'torch raw':>10} | {'torch BB':>10} | {'overhead':>8} | {'onnx raw':>10} |"
          f" {'onnx BB':>10} | {'overhead':>8} | {'onnx speed-up':>13}")
    print("-" * 100)
    for batch, m in rows:
        ot = m["torch BlackBox"] / m["torch raw"] - 1
        oo = m["onnx BlackBox"] / m["onnx raw"] - 1
        print(f"{batch:>6} | {m['torch raw']:>10.6f} | {m['torch BlackBox']:>10.6f} | {ot:>+8.1%} |"
              f" {m['onnx raw']:>10.6f} | {m['onnx BlackBox']:>10.6f} | {oo:>+8.1%} |"
              f" {m['torch BlackBox'] / m['onnx BlackBox']:>12.2f}x")
    _ = np  # numpy is used through the onnx path


if __name__ == "__main__":
    main()
