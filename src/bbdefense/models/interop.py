"""Adapters for the tools people arrive with: IBM ART classifiers, RobustBench-format checkpoints.

* ``BlackBox.from_art(estimator)`` (built on :func:`art_callable`): an ART classifier (anything with ART's
  ``predict(x: np.ndarray, batch_size) -> (N, K)``, ``nb_classes``, ``input_shape`` and ``clip_values``)
  as a query-counted :class:`~bbdefense.models.BlackBox`. Images stay in [0, 1] on our side; an estimator
  whose ``clip_values`` are ``(0, 255)`` gets them scaled.
* :func:`to_art`: a :class:`~bbdefense.models.BlackBox` (e.g. a bbdefense defense wrapped with
  ``BlackBox.from_module``) or a :class:`~bbdefense.certify.Smooth` classifier as ART's
  ``BlackBoxClassifier``, so ART's attacks run against it (every query still goes through, and is counted
  by, the black box). Needs ART installed.
* :func:`load_robustbench_state`: a RobustBench-format state dict file (``torch.save`` of the weights,
  optionally under ``"state_dict"``/``"model_state_dict"``, keys optionally prefixed ``module.`` by
  DataParallel, as RobustBench's ``load_model`` handles them) loaded into a zoo architecture, keys matched
  by name (``body.``/``head.`` added as the zoo's split needs) or, failing that, by position with equal
  shapes; any leftover is an error naming the keys.

torchattacks-style calls live on the attacks (``x_adv = attack(model, x, y)``); a model defined in the
user's own package comes in through :func:`bbdefense.models.resolve.model_source` (``module:factory``).

References: ART's ``BlackBoxClassifier`` and ``ClassifierMixin.predict`` contract (Nicolae et al. 2018,
arXiv 1807.01069); RobustBench's model loading (Croce et al. 2021, arXiv 2010.09670).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import CheckpointError, InputError, MissingExtraError
from .backends import OutputMode
from .zoo import build_model


def _art_scale(estimator: Any) -> float:
    clip = getattr(estimator, "clip_values", None)
    if clip is None:
        return 1.0
    lo, hi = (float(v) for v in np.asarray(clip).reshape(-1)[:2])
    if lo != 0.0 or hi not in (1.0, 255.0):
        raise InputError(f"ART estimator clip_values must be (0, 1) or (0, 255), got {(lo, hi)}")
    return hi


def art_callable(estimator: Any, *, returns: OutputMode = "logits", batch_size: int = 128) -> tuple[
        Callable[[Tensor], Tensor], int, tuple[int, int, int]]:
    """``(fn, num_classes, input_shape)`` of an ART classifier, for :meth:`BlackBox.from_art
    <bbdefense.models.BlackBox.from_art>`: ``fn(x)`` sends ``x`` (in [0, 1], scaled to the estimator's
    ``clip_values``) to ``estimator.predict`` and returns its ``returns`` as a tensor."""
    for attr in ("predict", "nb_classes", "input_shape"):
        if not hasattr(estimator, attr):
            raise InputError(f"not an ART classifier: {type(estimator).__name__} has no {attr!r}")
    shape = tuple(int(s) for s in estimator.input_shape)
    if len(shape) != 3:
        raise InputError(f"ART estimator input_shape must be (C, H, W), got {shape}")
    if getattr(estimator, "channels_first", True) is False:
        raise InputError("ART estimator has channels_first=False; bbdefense images are (N, C, H, W)")
    scale = _art_scale(estimator)

    def fn(x: Tensor) -> Tensor:
        arr = x.detach().cpu().numpy().astype(np.float32) * scale
        out = np.asarray(estimator.predict(arr, batch_size=batch_size))
        return torch.from_numpy(out.astype(np.int64 if returns == "label" else np.float32))

    return fn, int(estimator.nb_classes), (shape[0], shape[1], shape[2])


def _is_smooth(model: Any) -> bool:
    return hasattr(model, "certify") and hasattr(getattr(model, "model", None), "num_classes")


def art_predict_fn(model: Any, **smooth_kw: Any) -> Any:
    """The ``predict_fn(x: np.ndarray) -> (N, K)`` that :func:`to_art` gives ART: class probabilities of a
    :class:`BlackBox` (one-hot for a label-only box), or one-hot ``Smooth.predict`` labels (all zeros for an
    abstention) with ``smooth_kw`` (``n``, ``alpha``, ``batch_size``, ``seed``)."""
    smooth = _is_smooth(model)  # duck-typed: certify sits above models in the layers

    def predict(x: np.ndarray) -> np.ndarray:
        xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
        if smooth:
            k = model.model.num_classes
            labels = model.predict(xt, **smooth_kw)
            out = torch.zeros(len(xt), k)
            ok = labels >= 0
            out[ok.nonzero().flatten(), labels[ok].long()] = 1.0
            return out.numpy()
        if model.output == "label":
            lab = model.predict_label(xt)
            return torch.nn.functional.one_hot(lab.long(), model.num_classes).float().numpy()
        out = model.query(xt)
        return (out.softmax(1) if model.output == "logits" else out).detach().cpu().numpy()

    return predict


def to_art(model: Any, **smooth_kw: Any) -> Any:
    """A :class:`BlackBox` or a :class:`~bbdefense.certify.Smooth` as ART's ``BlackBoxClassifier`` (inputs in
    [0, 1], ``(N, C, H, W)``); see :func:`art_predict_fn` for what it answers. Raises
    :class:`MissingExtraError` without ART (``pip install adversarial-robustness-toolbox``)."""
    try:
        from art.estimators.classification import BlackBoxClassifier
    except ImportError as exc:
        raise MissingExtraError("to_art needs IBM ART (art is not installed): "
                                "pip install adversarial-robustness-toolbox") from exc
    bb = model.model if _is_smooth(model) else model
    return BlackBoxClassifier(art_predict_fn(model, **smooth_kw), tuple(bb.input_shape), bb.num_classes,
                              clip_values=(0.0, 1.0))


# ------------------------------------------------------------------------------------ RobustBench
def _state_of(obj: Any, path: Path) -> dict[str, Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors (got {type(obj).__name__})")
    out: dict[str, Tensor] = {}
    for k, v in obj.items():
        for prefix in ("module.", "model."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def match_state(model: nn.Module, src: Mapping[str, Tensor], *, skip: Sequence[str] = ("normalize.",)) -> dict[
        str, Tensor]:
    """``src`` renamed to ``model``'s keys: by name (``k``, ``body.k``, or the last layer's ``head.*``), else by
    position with equal shapes. Keys starting with ``skip`` (the zoo's normalisation) are not expected."""
    want = {k: v for k, v in model.state_dict().items() if not k.startswith(tuple(skip))}
    out: dict[str, Tensor] = {}
    for k, v in src.items():
        leaf = k.rsplit(".", 1)[-1]
        for cand in (k, f"body.{k}", f"head.{leaf}"):
            if cand in want and cand not in out and tuple(want[cand].shape) == tuple(v.shape):
                out[cand] = v
                break
    if len(out) == len(want) == len(src):
        return out
    if len(want) == len(src) and all(tuple(a.shape) == tuple(b.shape) for a, b in zip(want.values(), src.values(),
                                                                                        strict=True)):
        return dict(zip(want, src.values(), strict=True))
    missing = [k for k in want if k not in out][:5]
    unused = [k for k in src if not any(v is src[k] for v in out.values())][:5]
    raise CheckpointError(f"state dict does not fit the architecture: {len(src)} tensors for {len(want)}; "
                          f"unmatched architecture keys {missing}, unused file keys {unused}")


def load_robustbench_state(path: str | Path, arch: str, *, num_classes: int = 10, in_channels: int = 3,
                           image_size: int = 32, mean: Sequence[float] | None = None,
                           std: Sequence[float] | None = None) -> nn.Module:
    """A RobustBench-format state dict file loaded into the zoo architecture ``arch`` (eval mode).

    RobustBench models take images in [0, 1] and normalise inside themselves if at all, so the zoo's
    normalisation defaults to the identity (``mean`` 0, ``std`` 1); pass the model's own when its weights
    expect normalised inputs. Loading is ``torch.load(weights_only=True)``: a file cannot run code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"state dict file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read {path} as a torch state dict: {str(exc).splitlines()[0]}") from exc
    model = build_model(arch, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                        mean=list(mean) if mean is not None else [0.0] * in_channels,
                        std=list(std) if std is not None else [1.0] * in_channels)
    state = match_state(model, _state_of(obj, path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.startswith("normalize.")] + list(unexpected)
    if bad:  # pragma: no cover - match_state already checked every key
        raise CheckpointError(f"{path}: keys left unmatched: {bad[:5]}")
    if not all(bool(torch.isfinite(p.detach()).all()) for p in model.parameters()):
        raise CheckpointError(f"{path}: weights contain non-finite values")
    return model.eval()


__all__ = ["art_callable", "art_predict_fn", "load_robustbench_state", "match_state", "to_art"]
