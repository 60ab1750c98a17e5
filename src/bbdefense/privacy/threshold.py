"""Threshold membership-inference attacks and the label-only gap attack.

* :class:`ThresholdAttack`: Song & Mittal (USENIX Security 2021, §3.2, reference code
  github.com/inspire-group/membership-inference-evaluation, ``MIA_evaluate.py``): a signal
  (confidence, loss, entropy, modified entropy; see :mod:`.signals`) compared with a threshold
  chosen on reference data with known membership. The threshold maximises the reference balanced
  accuracy ``(TPR + TNR) / 2``; with ``per_class=True`` one threshold per true class (as their code
  does), falling back to the global one for classes absent from the reference data.
* :class:`GapAttack`: the label-only "gap attack" (Yeom et al. 2018; ART's
  ``MembershipInferenceBlackBoxRuleBased`` / ``LabelOnlyGapAttack``): member iff the model's label
  equals the true label. Its score is that indicator (so its AUC equals its balanced accuracy).

Interface (scikit-learn style): ``fit(model, x_in, y_in, x_out, y_out)`` learns, ``score(model, x, y)``
returns ``(N,)`` membership scores (higher = member), ``predict(model, x, y)`` ``(N,)`` bool.
``model`` is a :class:`~bbdefense.models.BlackBox` (queried once per image per call, counted).
The ``*_outputs`` variants take the probabilities ``(N, K)`` already read with
:func:`.signals.model_outputs`, so one query per image serves all attacks of an evaluation.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, InputError
from ..models import BlackBox
from .signals import SIGNALS, model_outputs, signal


def best_threshold(s_in: np.ndarray, s_out: np.ndarray) -> float:
    """Threshold ``t`` maximising ``(P(s_in >= t) + P(s_out < t)) / 2`` over all candidate values.

    Candidates are the observed scores (and +inf); ties of the objective pick the smallest ``t``.
    """
    if s_in.size == 0 or s_out.size == 0:
        raise InputError(f"need reference members and non-members, got {s_in.size} and {s_out.size}")
    cand = np.unique(np.concatenate([s_in, s_out, [np.inf]]))
    si, so = np.sort(s_in), np.sort(s_out)
    tp = si.size - np.searchsorted(si, cand, side="left")  # members with score >= t
    tn = np.searchsorted(so, cand, side="left")  # non-members with score < t
    obj = tp * so.size + tn * si.size  # (TPR + TNR) * n_in * n_out, exact in integers (ties are ties)
    return float(cand[int(np.argmax(obj))])


class MIAttack:
    """Base of the membership-inference attacks (see module docstring for the interface)."""

    name: ClassVar[str] = "mia"
    needs_scores: ClassVar[bool] = True

    def get_params(self) -> dict[str, Any]:
        return {}

    def _probs(self, model: BlackBox, x: Tensor) -> Tensor:
        if self.needs_scores and not model.reveals_scores:
            raise ConfigError(f"attack {self.name!r} needs scores but the model reveals only {model.output!r}")
        return model_outputs(model, x)

    def fit(self, model: BlackBox, x_in: Tensor, y_in: Tensor, x_out: Tensor, y_out: Tensor) -> MIAttack:
        """Learn from reference members ``(x_in, y_in)`` and non-members ``(x_out, y_out)`` of ``model``."""
        return self.fit_outputs(self._probs(model, x_in), y_in, self._probs(model, x_out), y_out)

    def fit_outputs(self, p_in: Tensor, y_in: Tensor, p_out: Tensor, y_out: Tensor) -> MIAttack:
        return self

    def score(self, model: BlackBox, x: Tensor, y: Tensor) -> np.ndarray:
        return self.score_outputs(self._probs(model, x), y)

    def predict(self, model: BlackBox, x: Tensor, y: Tensor) -> np.ndarray:
        return self.predict_outputs(self._probs(model, x), y)

    def score_outputs(self, probs: Tensor, y: Tensor) -> np.ndarray:
        raise NotImplementedError

    def predict_outputs(self, probs: Tensor, y: Tensor) -> np.ndarray:
        raise NotImplementedError


class ThresholdAttack(MIAttack):
    """Member iff ``signal(p, y) >= threshold`` (Song & Mittal 2021).

    Args:
        signal: ``confidence`` | ``loss`` | ``entropy`` | ``modified_entropy``.
        per_class: one threshold per true class (reference code) instead of one global threshold.
    """

    name = "threshold"

    def __init__(self, signal: str = "confidence", *, per_class: bool = False) -> None:
        if signal not in SIGNALS:
            raise InputError(f"unknown signal {signal!r}; choose one of: {', '.join(SIGNALS)}")
        self.signal = signal
        self.per_class = per_class
        self.threshold_: float | None = None
        self.class_thresholds_: dict[int, float] = {}

    @property
    def label(self) -> str:
        return self.signal

    def get_params(self) -> dict[str, Any]:
        return {"signal": self.signal, "per_class": self.per_class}

    def fit_outputs(self, p_in: Tensor, y_in: Tensor, p_out: Tensor, y_out: Tensor) -> ThresholdAttack:
        s_in, s_out = self.score_outputs(p_in, y_in), self.score_outputs(p_out, y_out)
        self.threshold_ = best_threshold(s_in, s_out)
        self.class_thresholds_ = {}
        if self.per_class:
            yi, yo = np.asarray(y_in).reshape(-1), np.asarray(y_out).reshape(-1)
            for c in np.intersect1d(yi, yo):
                self.class_thresholds_[int(c)] = best_threshold(s_in[yi == c], s_out[yo == c])
        return self

    def score_outputs(self, probs: Tensor, y: Tensor) -> np.ndarray:
        return signal(self.signal, probs, y).numpy()

    def predict_outputs(self, probs: Tensor, y: Tensor) -> np.ndarray:
        if self.threshold_ is None:
            raise ConfigError(f"threshold attack {self.signal!r} is not fitted; call fit() first")
        s = self.score_outputs(probs, y)
        yy = np.asarray(torch.as_tensor(y).cpu()).reshape(-1)
        t = np.array([self.class_thresholds_.get(int(c), self.threshold_) for c in yy])
        return s >= t


class GapAttack(MIAttack):
    """Label-only gap attack: member iff the predicted label equals the true label (no fitting needed)."""

    name = "gap"
    needs_scores = False
    label = "gap (label-only)"

    def score_outputs(self, probs: Tensor, y: Tensor) -> np.ndarray:
        y = torch.as_tensor(y).long().reshape(-1).cpu()
        if probs.shape[0] != y.shape[0]:
            raise InputError(f"probs has {probs.shape[0]} rows but y has {y.shape[0]} labels")
        # an all-zero row (abstention of a label API) is never "correct"
        correct = (probs.argmax(1) == y) & (probs.max(1).values > 0)
        return correct.double().numpy()

    def predict_outputs(self, probs: Tensor, y: Tensor) -> np.ndarray:
        return self.score_outputs(probs, y) > 0.5


__all__ = ["GapAttack", "MIAttack", "ThresholdAttack", "best_threshold"]
