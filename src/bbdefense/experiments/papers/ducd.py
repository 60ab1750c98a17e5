"""The DUCD experiment end to end (Li et al., arXiv 2408.10647, §IV-D, Table IV and Fig. 5), written
into a :class:`~bbdefense.records.RunDir` as it goes:

1. distil a surrogate from the black-box target under the query budget (:mod:`.distill`);
2. per norm's noise (default: Laplace for l1, Gaussian for l2 and linf, as Table IV) and per sigma:

   * **DUCD**: fine-tune the surrogate with that noise on the transfer set labelled by the target's
     own answers (no new query), smooth it, certify with Algorithm 3 (:mod:`.defense`); the
     certification queries go to the *surrogate*, never to the target;
   * **WUCD** (ablation, needs the target module): the same fine-tuning + Algorithm 3 applied to
     the target itself with white-box access, on the owner's training split;
   * **RS** (Cohen et al. 2019, needs a Gaussian-trained target per sigma): Cohen CERTIFY on a
     copy of the target architecture trained from scratch with Gaussian noise;

3. certified accuracy on a radius grid (``radius >= r``, abstentions wrong; pitfall 5), the
   envelope over sigma and the robust score ``sum trapz(max_sigma Acc_sigma(r), r)`` on that grid
   (Eq. 8; the grid and ``r_max`` are recorded since the paper does not state them).

One row per certified image is streamed to ``rows/cert_<method>_<noise>_<sigma>.jsonl``; a rerun
skips the images already written. Per-image seeds are ``seed + idx``, so results do not depend
on chunking.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np
from torch import Tensor, nn

from ...certified.ducd.defense import CertifiedClassifier, noise_finetune
from ...certified.ducd.distill import DistillConfig, TransferSet, distill
from ...certify.noises import NORMS
from ...data import ImageDataset
from ...evaluation.distributed import RayOptions
from ...events import EventCallback, emit
from ...models import BlackBox
from ...records import RunDir, line_plot, read_rows, table
from .settings import CertifiedTable, CertifySettings

TABLE_IV_NOISE: dict[str, tuple[str, dict[str, Any]]] = {"l1": ("laplace", {}), "l2": ("gaussian", {}),
                                                         "linf": ("gaussian", {})}


def default_radii(norm: str, d: int) -> list[float]:
    """Radius grids: l1/l2 ``0.25..2.0`` step 0.25 (Table IV's step); linf the l2 grid divided by
    ``sqrt(d)`` (pitfall 16: a Gaussian l2 radius R certifies ``R / sqrt(d)`` in linf)."""
    base = [0.25 * i for i in range(1, 9)]
    return [round(r / float(np.sqrt(d)), 5) for r in base] if norm == "linf" else base


@dataclass
class DUCDConfig(CertifiedTable):
    """Settings of :func:`run_ducd` (recorded in the run config)."""

    sigmas: tuple[float, ...] = (0.25, 0.5)
    norms: tuple[str, ...] = NORMS
    noise_for_norm: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=lambda: dict(TABLE_IV_NOISE))
    n_images: int = 100
    certify: CertifySettings = field(default_factory=lambda: CertifySettings(n0=100, n=1000))
    zeta: float = 1.0
    iota: float = 0.5
    finetune_epochs: int = 3
    finetune_lr: float = 1e-3
    certify_batch: int = 1000
    method: Literal["cohen", "sequential"] = "cohen"  # sequential: decide Table IV's radii, at most n samples
    seed: int = 0


def certified_accuracy(rows: list[dict[str, Any]], norm: str, radii: Sequence[float]) -> list[float]:
    """``P[label == y and radius_norm >= r]`` for each ``r`` (abstentions count as wrong)."""
    if not rows:
        return [float("nan")] * len(radii)
    ok = np.array([r["label"] == r["y"] and r["label"] >= 0 for r in rows])
    rad = np.array([r["radius"].get(norm, -1.0) for r in rows], dtype=float)
    return [float((ok & (rad >= t)).mean()) for t in radii]


def robust_score(envelope: Sequence[float], radii: Sequence[float]) -> float:
    """Eq. 8 on a grid: the trapezoid area under ``E(r) = max_sigma Acc_sigma(r)`` over the grid
    ``radii`` (starting at 0 so the clean smoothed accuracy counts); :func:`bbdefense.certify.metrics.robust_score`."""
    from ...certify.metrics import robust_score as _score

    return float(_score(list(envelope), list(radii))["score"])


@dataclass(frozen=True)
class _Algorithm3Rows:
    """DUCD's rows of a chunk (a picklable chunk certifier, :data:`bbdefense.evaluation.distributed.RowsFn`):
    Algorithm 3 (:class:`CertifiedClassifier` on ``smooth``'s black box and noise) per image ``i`` with the
    seed ``cfg.seed + i``, here and on Ray workers alike (so the rows do not depend on where they ran)."""

    cfg: DUCDConfig
    norm: str
    d: int

    def classifier(self, bb: BlackBox, noise: Any) -> CertifiedClassifier:
        c = self.cfg
        return CertifiedClassifier(bb, noise, zeta=c.zeta, iota=c.iota, n0=c.n0, n=c.n, alpha=c.alpha,
                                   batch_size=c.certify_batch)

    def row(self, clf: CertifiedClassifier, x: Tensor, y: int, i: int) -> dict[str, Any]:
        c = self.cfg
        seq = {} if c.method == "cohen" else {"method": c.method, "radii": default_radii(self.norm, self.d),
                                              "norm": self.norm, "max_n": c.n}
        cert = clf.certify(x, seed=c.seed + i, **seq)[0]
        return {"idx": i, "y": int(y), "label": int(cert.label), "pA_lower": float(cert.pA_lower),
                "radius": {k: float(v) for k, v in cert.radius.items()}, "abstain": bool(cert.abstain),
                "approximate": bool(cert.approximate), "queries": int(cert.queries)}

    def __call__(self, smooth: Any, x: Tensor, y: Tensor, ids: list[int]) -> list[dict[str, Any]]:
        clf = self.classifier(smooth.model, smooth.noise)
        return [self.row(clf, x[j:j + 1], int(y[j]), i) for j, i in enumerate(ids)]


def certify_rows(run: RunDir, name: str, model: nn.Module, noise: Any, test: ImageDataset, cfg: DUCDConfig,
                 *, on_event: EventCallback | None = None, norm: str = "l2",
                 ray: RayOptions | None = None) -> tuple[list[dict[str, Any]], int]:
    """Certify the first ``cfg.n_images`` test images with Algorithm 3 on ``model``; stream rows.

    ``cfg.method="sequential"`` decides :func:`default_radii` of ``norm`` (the noise's table norm) with at
    most ``cfg.n`` samples per image. ``ray``: on Ray workers (:func:`~bbdefense.evaluation.distributed.
    certify_rows_ray`, the fine-tuned module shipped), the same rows.
    Returns ``(rows, queries)``: ``queries`` counts the noisy queries made on ``model`` in this call.
    """
    c, h, w = test.input_shape
    bb = BlackBox.from_module(model, input_shape=(c, h, w), num_classes=test.num_classes, name=name)
    rows_fn = _Algorithm3Rows(cfg, norm, c * h * w)
    clf = rows_fn.classifier(bb, noise)
    writer = run.rows(name)
    m = min(cfg.n_images, len(test))
    if ray is not None:
        from ...evaluation.distributed import SmoothSpec, certify_rows_ray

        certify_rows_ray(SmoothSpec.of(clf.smooth), test.x[:m], test.y[:m], range(m), chunk=ray.chunk,
                         writer=writer, on_event=on_event, task=f"certify:{name}", address=ray.address,
                         workers=ray.workers, cpus_per_worker=ray.cpus_per_worker,
                         gpus_per_worker=ray.gpus_per_worker, charge=bb, rows_fn=rows_fn)
    else:
        emit(on_event, "start", f"certify:{name}", total=m, unit="images")
        for i in range(m):
            spent = 0
            if i not in writer.done:
                row = rows_fn.row(clf, test.x[i:i + 1], int(test.y[i]), i)
                writer.write(row)
                spent = row["queries"]
            emit(on_event, "advance", f"certify:{name}", queries=spent)
        emit(on_event, "end", f"certify:{name}")
    writer.close()
    rows = [r for r in read_rows(run.path / "rows" / f"{name}.jsonl") if r["idx"] < m]
    return rows, bb.stats.queries


def run_ducd(run: RunDir, bb: BlackBox, surrogate: nn.Module, distill_data: ImageDataset, test: ImageDataset,
             cfg: DUCDConfig, *, distill_cfg: DistillConfig | None = None, transfer: TransferSet | None = None,
             target_module: nn.Module | None = None, owner_train: ImageDataset | None = None,
             rs_model: Callable[[float], nn.Module] | None = None, section: str = "DUCD certified defense",
             models: dict[tuple[str, str, float], nn.Module] | None = None,
             on_event: EventCallback | None = None, ray: RayOptions | None = None) -> dict[str, Any]:
    """Run DUCD (and WUCD / RS when their white-box inputs are given); write tables and plots.

    Args:
        bb: the black-box target (its budget bounds the distillation; certification never queries it).
        surrogate: a fresh zoo classifier (trained in place) — or an already distilled one with
            ``transfer`` given (then no query is made).
        target_module / owner_train: white-box access for WUCD (skipped when None).
        rs_model: ``sigma -> Gaussian-trained target`` for Cohen RS (skipped when None).
        models: if given, filled with the smoothed base models ``(method, noise, sigma) -> module``.
        ray: certify on Ray workers (:func:`certify_rows`; the same rows).

    Returns the summary metrics (also in ``run.record.metrics``).
    """
    from ...certified.ducd.evaluate import evaluate_surrogate, target_eval_note
    from ...certify import make_noise

    q0 = bb.stats.queries
    res, transfer = distill(bb, surrogate, distill_data, distill_cfg, transfer=transfer, on_event=on_event)
    met = evaluate_surrogate(bb, surrogate, test, queries=len(transfer))
    target_q = bb.stats.queries - q0
    run.add_table({**table("Surrogate (Tables I-II)", ["target acc", "surrogate acc", "ratio %", "fidelity",
                                                       "distillation queries", "loss"],
                           [[met.target_accuracy, met.surrogate_accuracy,
                             None if met.ratio is None else 100 * met.ratio, met.fidelity, len(transfer), res.loss]],
                           target_eval_note(met)), "section": section})
    # DUCD fine-tunes on the whole transfer set labelled by the target's answers (no new query).
    labels = transfer.out.long() if transfer.output == "label" else transfer.out.argmax(1)
    ft_data = ImageDataset("transfer", transfer.x, labels, list(test.classes), test.mean, test.std)
    d = int(np.prod(test.input_shape))
    per: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    queries: dict[tuple[str, str, float], int] = {}
    noises = dict(cfg.noise_for_norm[k] for k in cfg.norms)
    norms_of = {nz: next(k for k in cfg.norms if cfg.noise_for_norm[k][0] == nz) for nz in noises}
    for nz, params in noises.items():
        for s in cfg.sigmas:
            noise = make_noise(nz, sigma=s, **params)
            # partial binds this iteration's noise, sigma and params now (a closure would see the loop's last ones
            # if it were ever called after the loop moved on)
            methods: list[tuple[str, Callable[[], nn.Module]]] = [
                ("DUCD", partial(noise_finetune, surrogate, ft_data, noise=nz, sigma=s, noise_params=params,
                                 epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, seed=cfg.seed))]
            if target_module is not None and owner_train is not None:
                methods.append(("WUCD", partial(noise_finetune, target_module, owner_train, noise=nz, sigma=s,
                                                noise_params=params, epochs=cfg.finetune_epochs, lr=cfg.finetune_lr,
                                                seed=cfg.seed)))
            if rs_model is not None and nz == "gaussian":
                methods.append(("RS", partial(rs_model, s)))
            for meth, build in methods:
                emit(on_event, "info", "ducd", message=f"{meth} {nz} sigma={s}")
                base = build()
                if models is not None:
                    models[(meth, nz, s)] = base
                rows, q = certify_rows(run, f"cert_{meth}_{nz}_{s}", base, noise, test, cfg, on_event=on_event,
                                       norm=norms_of[nz], ray=ray)
                per[(meth, nz, s)] = rows
                queries[(meth, nz, s)] = q
    summary = _tables(run, per, cfg, d, section)
    summary.update({"distill_queries": len(transfer), "target_queries_total": target_q,
                    "surrogate_accuracy": met.surrogate_accuracy, "target_accuracy": met.target_accuracy,
                    "ratio": met.ratio, "fidelity": met.fidelity})
    run.set_metrics(**{f"ducd.{k}": v for k, v in summary.items()})
    return summary


def _tables(run: RunDir, per: dict[tuple[str, str, float], list[dict[str, Any]]], cfg: DUCDConfig, d: int,
            section: str) -> dict[str, Any]:
    """Table IV layout (per norm: rows = methods, columns = radii + score) and the curves."""
    summary: dict[str, Any] = {}
    methods = sorted({m for m, _, _ in per}, key=["RS", "WUCD", "DUCD"].index)
    for norm in cfg.norms:
        nz = cfg.noise_for_norm[norm][0]
        radii = default_radii(norm, d)
        grid = [0.0, *radii]
        rows_t, series = [], []
        for meth in methods:
            # Cohen RS is Gaussian smoothing whatever the norm: its l2 certificate converts to l1 (same radius,
            # ||.||_2 <= ||.||_1) and linf (radius / sqrt(d)), so it is the baseline of every norm's table
            mnz = "gaussian" if meth == "RS" else nz
            curves = [certified_accuracy(per[(meth, mnz, s)], norm, grid) for s in cfg.sigmas
                      if (meth, mnz, s) in per]
            if not curves:
                continue
            env = np.max(np.array(curves), axis=0).tolist()
            score = robust_score(env, grid)
            rows_t.append([meth if mnz == nz else f"{meth} ({mnz})", *env, score])
            series.append({"label": meth, "x": grid, "y": env})
            for r, v in zip(grid, env, strict=True):
                summary[f"{meth}.{norm}.{r:g}"] = v
            summary[f"{meth}.{norm}.score"] = score
        qn = cfg.n_images * (cfg.n0 + cfg.n)
        run.add_table({**table(f"Certified accuracy, {norm} ({nz} noise, envelope over sigma {list(cfg.sigmas)})",
                               ["method", *[f"{r:g}" for r in grid], "score"], rows_t,
                               f"{cfg.n_images} test images, n0={cfg.n0}, n={cfg.n}, alpha={cfg.alpha}, "
                               f"zeta={cfg.zeta}, iota={cfg.iota}; {qn} noisy queries per (method, sigma), made on "
                               f"the smoothed base model (DUCD: the surrogate, 0 on the target); score = area on "
                               f"[0, {radii[-1]:g}]"), "section": section})
        run.add_plot({**line_plot(f"Certified accuracy vs {norm} radius", series, xlabel=f"{norm} radius",
                                  ylabel="certified accuracy"), "section": section})
    _pa_r(run, cfg, d, section)
    return summary


def _pa_r(run: RunDir, cfg: DUCDConfig, d: int, section: str) -> None:
    """Fig. 5: certified radius vs pA for DUCD's noise per norm and Cohen RS (Gaussian), same sigma."""
    from ...certify import make_noise
    from ...certify.metrics import pa_r_curves

    s = max(cfg.sigmas)
    ps = [0.55, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999]
    for norm in cfg.norms:
        nz, params = cfg.noise_for_norm[norm]
        series = []
        for label, noise in (("DUCD (" + nz + ")", make_noise(nz, sigma=s, **params)),
                             ("RS (gaussian)", make_noise("gaussian", sigma=s))):
            for c in pa_r_curves([noise], [norm], d, ps, numerical=False):
                series.append({"label": label, "x": c["x"], "y": c["y"]})
        if series:
            run.add_plot({**line_plot(f"pA-R curve, {norm}, sigma={s:g} (Fig. 5)", series, xlabel="pA lower bound",
                                      ylabel=f"certified {norm} radius"), "section": section})


__all__ = [
    "TABLE_IV_NOISE",
    "DUCDConfig",
    "certified_accuracy",
    "certify_rows",
    "default_radii",
    "robust_score",
    "run_ducd",
]
