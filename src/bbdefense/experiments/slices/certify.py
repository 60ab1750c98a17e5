"""Demo slice: certified accuracy vs radius of Gaussian-augmented targets at two sigmas (Cohen CERTIFY),
their envelope and DUCD's robust score, and the sequential test next to Cohen (samples per image), with the
queries spent next to every figure."""

from __future__ import annotations

import math

from ...certify import Smooth, make_noise
from ...certify.metrics import envelope, radius_grid, robust_score
from ...evaluation.certification import abstain_rate, certified_accuracy, certified_accuracy_ci, certify_rows
from ...evaluation.report import glance_accuracy, samples_summary
from ...models import load_blackbox
from ...records import line_plot, table
from ...training import TrainConfig, train_target
from ..context import DemoContext, register_slice

SIGMAS = (0.25, 0.5)
GLANCE_RADII = (0.25, 0.5, 1.0)  # the radii of the at-a-glance table
SEQ_RADII = GLANCE_RADII  # the radii the sequential test decides
ARCH = "lenet"  # the cheapest zoo classifier: two trainings + certification fit the slice budget
TITLE = "Certification (randomized smoothing)"


@register_slice("certify", TITLE, order=40)
def certify_slice(ctx: DemoContext) -> None:
    n_img, n0, n = (30, 20, 200) if ctx.quick else (100, 100, 1000)
    alpha = 0.001
    sec = ctx.section(TITLE, (
        f"Cohen CERTIFY (n0={n0}, n={n}, alpha={alpha}) on {n_img} MNIST-5k test images for {ARCH} targets trained "
        f"with Gaussian noise at sigma in {list(SIGMAS)} (2 epochs, cached). Certified accuracy at r counts correct "
        "certificates with radius >= r; abstentions are wrong. l2 radii are the closed form sigma Phi^-1(pA); "
        "l1/linf follow by norm conversion. Robust score = area under the envelope over sigma (DUCD Eq. 8). "
        "One row per image streams to rows/certify_sigma<s>.jsonl (bbdefense.evaluation.certification)."))
    test = ctx.splits.test
    x, y = test.x[:n_img], test.y[:n_img]
    d = int(math.prod(ctx.input_shape))
    grids = {"l2": radius_grid(2.0), "l1": radius_grid(2.0), "linf": radius_grid(2.0 / math.sqrt(d))}
    curves: dict[str, dict[float, list[float]]] = {k: {} for k in grids}
    rows, seq_rows, total_q = [], [], 0
    for s in SIGMAS:
        cfg = TrainConfig(mode="gaussian", sigma=s, epochs=2, seed=ctx.seed)
        path, meta = train_target(ARCH, "mnist5k", ctx.cache_dir / f"certify_{ARCH}_gauss{s:g}", cfg, reuse=True,
                                  on_event=ctx.on_event)
        bb = load_blackbox(path, backend="torch")  # the documented figures are eager torch's
        with ctx.run.rows(f"certify_sigma{s:g}") as w:
            res = certify_rows(Smooth(bb, make_noise("gaussian", sigma=s)), x, y, n0=n0, n=n, alpha=alpha,
                               seed=ctx.seed, chunk=n_img, writer=w, on_event=ctx.on_event)
        q = sum(int(r["queries"]) for r in res.rows)  # all rows, also those of an interrupted run
        total_q += q
        for nm, g in grids.items():
            curves[nm][s] = certified_accuracy(res.rows, nm, g)
        c2 = curves["l2"][s]
        at = [c2[round(r / 2.0 * (len(c2) - 1))] for r in (0.25, 0.5, 1.0)]
        cis = certified_accuracy_ci(res.rows, "l2", [0.0, *GLANCE_RADII])
        for c in cis:
            col = "clean accuracy" if c["radius"] == 0 else f"certified accuracy, l2 r={c['radius']:g}"
            glance_accuracy(ctx.run, f"{ARCH}+RS sigma={s:g}", col, c["k"], c["n"])
        ci = cis[0]
        rows.append([s, meta["metrics"]["test_accuracy"], c2[0], [round(ci["low"], 3), round(ci["high"], 3)], *at,
                     abstain_rate(res.rows), q, round(res.seconds, 1)])
        # the same images decided by the anytime-valid sequential test, capped at Cohen's n per image
        with ctx.run.rows(f"certify_seq_sigma{s:g}") as w:
            seq = certify_rows(Smooth(bb, make_noise("gaussian", sigma=s)), x, y, n0=n0, alpha=alpha, seed=ctx.seed,
                               chunk=n_img, writer=w, on_event=ctx.on_event, method="sequential", radii=SEQ_RADII,
                               max_n=n)
        total_q += seq.queries
        for name, rr in ((f"Cohen n={n}", res.rows), (f"sequential max_n={n}", seq.rows)):
            sm_ = samples_summary(rr)
            seq_rows.append([s, name, *certified_accuracy(rr, "l2", [0.0, *SEQ_RADII]), round(sm_["mean"]),
                             round(sm_["median"]), round(sm_["max"]), sum(int(r["queries"]) for r in rr)])
    ctx.run.add_table({**table("Sequential (anytime-valid) vs Cohen: samples per image",
                               ["sigma", "method", "cert acc r=0", *[f"cert acc r={r:g}" for r in SEQ_RADII],
                                "mean samples", "median samples", "max samples", "queries"], seq_rows,
                               f"{n_img} images, alpha={alpha}, n0={n0} selection samples included; the sequential "
                               "test stops each image once robustness at every radius is decided (each decision "
                               "wrong with probability <= alpha, whatever the stopping time; "
                               "bbdefense.certify.sequential)"), "section": sec})
    g2 = grids["l2"]
    series = [{"label": f"sigma={s:g} ({rows[i][-2]} queries)", "x": g2.tolist(), "y": curves["l2"][s], "marker": ""}
              for i, s in enumerate(SIGMAS)]
    series.append({"label": "envelope (max over sigma)", "x": g2.tolist(),
                   "y": envelope(curves["l2"]).tolist(), "marker": ""})
    ctx.run.add_plot({**line_plot(f"Certified accuracy vs l2 radius ({total_q} queries)", series,
                                  xlabel="l2 radius", ylabel="certified accuracy"), "section": sec})
    ctx.run.add_table({**table("Gaussian smoothing of noise-trained targets",
                               ["sigma", "base test acc", "smoothed acc (r=0)", "r=0 95% CI", "cert acc r=0.25",
                                "cert acc r=0.5", "cert acc r=1.0", "abstain rate", "queries", "seconds"], rows,
                               f"{n_img} images, {n0}+{n} queries per image; 95% CI: Clopper-Pearson over the "
                               "images"), "section": sec})
    scores = [[nm, robust_score(curves[nm], grids[nm].tolist())["score"], float(grids[nm][-1]), len(grids[nm]), total_q]
              for nm in ("l1", "l2", "linf")]
    ctx.run.add_table({**table("Robust score (DUCD Eq. 8, envelope over sigma)",
                               ["norm", "robust score", "r_max", "grid points", "queries"], scores,
                               "trapezoid rule over linspace(0, r_max, 81); l1/linf from the l2 radius"),
                       "section": sec})
    ctx.run.set_metrics(certify_queries=total_q, certify_robust_score_l2=scores[1][1])
