"""Shadow-model membership inference (Shokri et al., "Membership inference attacks against machine
learning models", IEEE S&P 2017, §IV; ART ``MembershipInferenceBlackBox`` for the attack-model idea).

The attacker trains a shadow model with the target's recipe on data it owns (``shadow_in``,
disjoint from the target's training set), queries it on ``shadow_in`` (members) and on further
data ``shadow_out`` (non-members), and trains a binary attack classifier on those outputs. Shokri
et al. train one attack model per class on the raw probability vector; with few examples per class
we use one attack model whose features are the probability vector sorted in decreasing order, the
true-class probability and its log (label-aware, class-agnostic). The attack model is a
scikit-learn ``GradientBoostingClassifier`` (seeded), scores are its member probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.ensemble import GradientBoostingClassifier
from torch import Tensor, nn

from ..data import ImageDataset
from ..errors import ConfigError, InputError
from ..training import TrainConfig, train_classifier
from .threshold import MIAttack


def shadow_features(probs: Tensor, y: Tensor) -> np.ndarray:
    """Attack-model features ``(N, K + 2)``: sorted probabilities, ``p_y``, ``log p_y``."""
    p = probs.double().cpu()
    y = torch.as_tensor(y).long().reshape(-1).cpu()
    if p.shape[0] != y.shape[0]:
        raise InputError(f"probs has {p.shape[0]} rows but y has {y.shape[0]} labels")
    srt = torch.sort(p, dim=1, descending=True).values
    py = p.gather(1, y[:, None])
    return torch.cat([srt, py, torch.log(py.clamp_min(1e-30))], dim=1).numpy()


class ShadowModelAttack(MIAttack):
    """Shokri et al. attack: an attack classifier trained on a shadow model's outputs.

    ``fit(shadow_model, x_in, y_in, x_out, y_out)`` is called with the **shadow** model and its own
    member / non-member data; ``score``/``predict`` are then applied to the target.

    Args:
        n_estimators, max_depth, learning_rate: the gradient-boosting attack model.
        seed: its ``random_state``.
    """

    name = "shadow"
    label = "shadow (Shokri)"

    def __init__(self, *, n_estimators: int = 100, max_depth: int = 3, learning_rate: float = 0.1,
                 seed: int = 0) -> None:
        if n_estimators < 1 or max_depth < 1 or not learning_rate > 0:
            raise InputError(f"bad attack-model hyperparameters: n_estimators={n_estimators}, "
                             f"max_depth={max_depth}, learning_rate={learning_rate}")
        self.n_estimators, self.max_depth, self.learning_rate, self.seed = n_estimators, max_depth, learning_rate, seed
        self.model_: GradientBoostingClassifier | None = None

    def get_params(self) -> dict[str, Any]:
        return {"n_estimators": self.n_estimators, "max_depth": self.max_depth, "learning_rate": self.learning_rate,
                "seed": self.seed}

    def fit_outputs(self, p_in: Tensor, y_in: Tensor, p_out: Tensor, y_out: Tensor) -> ShadowModelAttack:
        f = np.concatenate([shadow_features(p_in, y_in), shadow_features(p_out, y_out)])
        t = np.concatenate([np.ones(p_in.shape[0]), np.zeros(p_out.shape[0])])
        if p_in.shape[0] == 0 or p_out.shape[0] == 0:
            raise InputError(f"need shadow members and non-members, got {p_in.shape[0]} and {p_out.shape[0]}")
        self.model_ = GradientBoostingClassifier(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                                 learning_rate=self.learning_rate, random_state=self.seed)
        self.model_.fit(f, t)
        return self

    def score_outputs(self, probs: Tensor, y: Tensor) -> np.ndarray:
        if self.model_ is None:
            raise ConfigError("shadow attack is not fitted; call fit() with the shadow model first")
        return np.asarray(self.model_.predict_proba(shadow_features(probs, y))[:, 1])

    def predict_outputs(self, probs: Tensor, y: Tensor) -> np.ndarray:
        return self.score_outputs(probs, y) >= 0.5


def train_shadow(module: nn.Module, data: ImageDataset, cfg: TrainConfig) -> nn.Module:
    """Train the (fresh) shadow ``module`` in place on ``data`` with the target's recipe ``cfg``."""
    train_classifier(module, data, cfg)
    return module


__all__ = ["ShadowModelAttack", "shadow_features", "train_shadow"]
