"""Empirical attacks on DUCD's certified classifier: attack success rate vs perturbation size
(Li et al., arXiv 2408.10647, §IV-E, Fig. 6-7), through the attack suite :data:`bbdefense.attacks.ATTACKS`.

The certified classifier is attacked as what it is: a randomized, label-only model
(:meth:`bbdefense.certify.Smooth.as_blackbox`: each query runs Cohen PREDICT with ``n_predict``
fresh noisy draws of the base model; abstentions answer -1, i.e. "not the true class", so an
abstention counts as a success for the attacker, the conservative choice).

* ``label`` attacks (HSJA, RayS, SignFlip) query the smoothed black box directly;
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
    shape = tuple(x.shape[1:])
    for eps in eps_list:
        params = {"eps": float(eps), "norm": norm, "seed": seed, **(attack_params or {})}
        atk = cls(**params)
        if cls.access == "label":
            model: BlackBox = smoothed
            mode = "direct (smoothed, label-only)"
        elif cls.access == "white":
            model = WhiteBox(base, input_shape=shape)  # type: ignore[arg-type]
            mode = "white-box on the base, judged smoothed"
        else:
            model = BlackBox.from_module(base, input_shape=shape)  # type: ignore[arg-type]
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
