"""Decision attacks vs the exact minimal distance on binary linear classifiers.

Usage: ``.venv/bin/python benchmarks/decision_linear.py [--n 20] [--budgets 250,1000,4000]``

For ``f(x) = argmax(W x)`` with two classes on 3x8x8 images in [0.3, 0.7] (the box never binds),
the exact minimal distances are ``|margin| / ||w1 - w0||_2`` (l2) and ``|margin| / ||w1 - w0||_1``
(linf). The table gives the median and max of (distance reached / exact distance) per attack
and per-image budget, with the queries actually spent.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--budgets", default="250,1000,4000")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from bbdefense.attacks import ATTACKS
    from bbdefense.models import BlackBox

    g = torch.Generator().manual_seed(0)
    shape, d = (3, 8, 8), 192
    w = torch.randn(2, d, generator=g)
    lin = nn.Linear(d, 2)
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.zero_()
    model = nn.Sequential(nn.Flatten(), lin)
    x = 0.3 + 0.4 * torch.rand(args.n, *shape, generator=g)
    dw = w[1] - w[0]
    margin = x.flatten(1) @ dw
    y = (margin > 0).long()
    true = {"l2": margin.abs() / dw.norm(), "linf": margin.abs() / dw.abs().sum()}
    print(f"{args.n} images, binary linear model on 3x8x8; ratio = distance reached / exact minimal distance")
    print("| attack | norm | budget/img | median ratio | max ratio | mean queries | wall s |")
    print("|---|---|---|---|---|---|---|")
    for name, norm in (("rays", "linf"), ("signflip", "linf"), ("hsja", "linf"), ("hsja", "l2")):
        for b in (int(v) for v in args.budgets.split(",")):
            bb = BlackBox.from_module(model, input_shape=shape, output="label")
            t0 = time.perf_counter()
            res = ATTACKS[name](norm=norm, eps=None, max_queries=b, seed=0).run(bb, x, y)
            dt = time.perf_counter() - t0
            r = res.extra["min_norm"] / true[norm]
            print(f"| {name} | {norm} | {b} | {float(r.median()):.3f} | {float(r.max()):.3f} | "
                  f"{float(res.queries.float().mean()):.0f} | {dt:.2f} |")


if __name__ == "__main__":
    main()
