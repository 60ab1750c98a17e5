"""Runs inside the ART venv: ART's rule-based (gap) membership inference and an independent
confidence AUC (NumPy forward + scikit-learn) on a model given as NumPy weights. Prints JSON."""

import json
import sys

import numpy as np
from art.attacks.inference.membership_inference import MembershipInferenceBlackBoxRuleBased
from art.estimators.classification import BlackBoxClassifier
from sklearn.metrics import roc_auc_score

d = np.load(sys.argv[1])
x, y, truth = d["x"], d["y"], d["truth"]


def logits(v: np.ndarray) -> np.ndarray:
    h = np.maximum(v.reshape(v.shape[0], -1) @ d["w1"].T + d["b1"], 0.0)
    return h @ d["w2"].T + d["b2"]


def probs(v: np.ndarray) -> np.ndarray:
    z = logits(v.astype(np.float64))
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


clf = BlackBoxClassifier(probs, input_shape=x.shape[1:], nb_classes=int(d["w2"].shape[0]), clip_values=(0.0, 1.0))
member = MembershipInferenceBlackBoxRuleBased(clf).infer(x, y).reshape(-1).astype(int)
p = probs(x)
auc = roc_auc_score(truth, p[np.arange(len(y)), y])
print(json.dumps({"member": member.tolist(), "auc": float(auc)}))
