"""Empirical attacks on DUCD's certified classifier: attack success rate vs perturbation size
(Li et al., arXiv 2408.10647, §IV-E, Fig. 6-7), through the attack suite :data:`bbdefense.attacks.ATTACKS`.

The certified classifier is attacked as what it is: a randomized, label-only model
(:meth:`bbdefense.certify.Smooth.as_blackbox`: each query runs Cohen PREDICT with ``n_predict``
fresh noisy draws of the base model; abstentions answer -1, i.e. "not the true class", so an
abstention counts as a success for the attacker, the conservative choice).

* ``label`` attacks (HSJA, RayS, SignFlip) query the smoothed black box directly. They are
  minimum-norm attacks, so each runs **once** without a radius (``eps=None``, the whole budget) and the
  curve is read off its distances: at radius ``eps`` an image is broken if the closest adversarial
  found lies within ``eps`` and the smoothed classifier (re-queried) still misclassifies it. One run
  serves every eps (a run with a radius would only stop earlier), so the queries are shared;
* ``scores`` attacks (Square, NES, ...) need scores the smoothed classifier does not reveal: they run
  on the **base** model (the noise-fine-tuned surrogate) and their examples are then judged by the
  smoothed classifier (a transfer attack);
* ``white`` attacks (APGD, PGD, ACG) run white-box on the base model, judged the same way.

ASR = fraction of the images the smoothed classifier got right that it no longer gets right. The
final judgement uses :meth:`BlackBox.audit` (verification, not charged). Queries are reported per
row: those the attack charged on the model it ran against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ...errors import InputError
from ...models import BlackBox, WhiteBox
from .defense import CertifiedClassifier


def attack_success_curve(clf: CertifiedClassifier, base: nn.Module, attack: str, x: Tensor, y: Tensor,
                         eps_list: Sequence[float], *, norm: str = "l2", n_predict: int = 100,
                         attack_params: dict[str, Any] | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """ASR of ``attack`` against ``clf``'s smoothed classifier for each ``eps``.

    Args:
        clf: the certified classifier (its ``smooth`` and ``alpha`` are used).
        base: the base module ``clf`` smooths (for ``white`` / ``scores`` attacks).
        attack: a name in :data:`bbdefense.attacks.ATTACKS`.
        x, y: ``(N, C, H, W)`` images in [0, 1] and ``(N,)`` labels.
        eps_list: perturbation sizes in ``norm``.
        n_predict: noisy draws per smoothed query.
        attack_params: extra hyperparameters of the attack (e.g. ``max_queries``, ``steps``).

    Returns:
        One row per eps: ``attack``, ``norm``, ``eps``, ``asr``, ``n_correct``, ``queries``, ``mode``.
    """
    from ...attacks import ATTACKS

    cls = ATTACKS[attack]
    if not eps_list:
        raise InputError("eps_list must hold at least one perturbation size")
    smoothed = clf.smooth.as_blackbox(n=n_predict, alpha=clf.alpha, seed=seed)
    correct = smoothed.audit(x).cpu() == y.cpu()
    rows: list[dict[str, Any]] = []
    c, h, w = x.shape[1:]
    shape = (int(c), int(h), int(w))
    if cls.access == "label":
        return _min_norm_curve(cls, smoothed, x, y, correct, eps_list, norm, attack, seed, attack_params)
    for eps in eps_list:
        params = {"eps": float(eps), "norm": norm, "seed": seed, **(attack_params or {})}
        atk = cls(**params)
        if cls.access == "label":
            model: BlackBox = smoothed
            mode = "direct (smoothed, label-only)"
        elif cls.access == "white":
            model = WhiteBox(base, input_shape=shape)
            mode = "white-box on the base, judged smoothed"
        else:
            model = BlackBox.from_module(base, input_shape=shape)
            mode = "scores on the base, judged smoothed"
        q0 = model.stats.queries
        res = atk.run(model, x[correct], y[correct]) if bool(correct.any()) else None
        q = model.stats.queries - q0
        if res is None:
            asr = float("nan")
        else:
            adv = smoothed.audit(res.x_adv).cpu()
            asr = float((adv != y[correct].cpu()).float().mean())
        rows.append({"attack": attack, "norm": norm, "eps": float(eps), "asr": asr, "n_correct": int(correct.sum()),
                     "queries": int(q), "mode": mode})
    return rows


__all__ = ["attack_success_curve"]


def _min_norm_curve(cls: Any, smoothed: BlackBox, x: Tensor, y: Tensor, correct: Tensor, eps_list: Sequence[float],
                    norm: str, attack: str, seed: int, attack_params: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One minimum-norm run of a label attack on the smoothed classifier; ASR per eps from its distances."""
    import torch

    from ...attacks.base import lp_norm

    mode = "direct (smoothed, label-only; one min-norm run for all eps)"
    n_ok = int(correct.sum())
    if n_ok == 0:
        return [{"attack": attack, "norm": norm, "eps": float(e), "asr": float("nan"), "n_correct": 0, "queries": 0,
                 "mode": mode} for e in eps_list]
    params = {"norm": norm, "seed": seed, **(attack_params or {}), "eps": None}
    q0 = smoothed.stats.queries
    res = cls(**params).run(smoothed, x[correct], y[correct])
    q = smoothed.stats.queries - q0
    yc = y[correct].cpu()
    wrong = (smoothed.audit(res.x_adv).cpu() != yc) & res.success.cpu()
    dist = lp_norm(res.x_adv - x[correct], norm).cpu()
    med = float(torch.where(wrong, dist, torch.full_like(dist, float("inf"))).median())
    return [{"attack": attack, "norm": norm, "eps": float(eps),
             "asr": float((wrong & (dist <= float(eps) + 1e-6)).float().mean()), "n_correct": n_ok,
             "queries": int(q), "mode": mode, "median_min_norm": med} for eps in eps_list]
