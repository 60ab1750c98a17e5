"""The estimator contract every certified defense of a black box shares (scikit-learn shape).

A certified defense is built from its hyperparameters, fitted against a black box on the defender's
data, and then *is* a smoothed classifier::

    est = Cls(**hyperparameters)                 # paper defaults; get_params() round-trips
    est.fit(blackbox, data, on_event=None)       # queries charged on the black box, recorded in est.queries_
    est.smoothed(noise=None) -> Smooth           # the fitted smoothed classifier (bbdefense.certify.Smooth)
    est.certify(x, n0=..., n=..., alpha=..., seed=...) -> list[Certificate]
    est.as_blackbox(**kw) -> BlackBox            # the smoothed classifier as a label-only randomized model
    est.save(dir); Cls.load(dir)                 # a checkpoint: safetensors weights + defense.json

Fitted attributes end in ``_`` (``queries_``, ``split_seed_``, ``blackbox_``); a fitted-only method
called on an unfitted estimator raises :class:`NotFittedError` naming the method.

The checkpoint directory holds one ``<part>.safetensors`` + ``<part>.json`` per fitted module
(written with :func:`bbdefense.models.save_checkpoint`, hashed) and ``defense.json`` with the class,
registry name, hyperparameters, queries spent, split seed, fitted state and :data:`FORMAT_VERSION`.
Nothing is pickled. The black box itself is never saved: defenses that smooth the black box
(ZO-AE-DS, IRS-Net) take it again at :meth:`CertifiedDefense.load` or :meth:`smoothed`.
"""
from __future__ import annotations

import hashlib
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from torch import Tensor, nn

from ..certify import Certificate, Noise, Smooth
from ..errors import CheckpointError, InputError
from ..events import EventCallback
from ..models import BlackBox, CheckpointMeta, save_checkpoint
from ..models.checkpoint import checkpoint_paths, read_json_record, read_meta
from ..registry import Registry
from ..utils import environment

FORMAT = "bbdefense-certified-defense"
FORMAT_VERSION = 1
META_FILE = "defense.json"

class NotFittedError(InputError):
    """A method that needs a fitted defense was called before ``fit`` or ``load``."""


class CertifiedDefense(ABC):
    """Base class of :data:`CERTIFIED` (see the module docstring for the contract).

    Subclasses declare their hyperparameters as keyword-only ``__init__`` arguments stored under the
    same attribute names, implement :meth:`fit`, :meth:`smoothed`, :meth:`_modules` (the fitted
    modules to save), :meth:`_state` (JSON-able fitted state) and :meth:`_restore` (rebuild from it).
    """

    name: ClassVar[str] = ""
    queries_: int
    split_seed_: int | None
    blackbox_: BlackBox | None
    data_: str | None

    # ------------------------------------------------------------------ hyperparameters
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters; ``type(est)(**est.get_params())`` builds an equal unfitted estimator."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        """Change hyperparameters (checked as in ``__init__``); the estimator must be refitted."""
        unknown = sorted(set(params) - set(self._param_names()))
        if unknown:
            raise InputError(f"{type(self).__name__} has no hyperparameter {unknown[0]!r}; "
                             f"choose from {', '.join(self._param_names())}")
        type(self).__init__(self, **{**self.get_params(), **params})
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        shown = [f"{k}={v!r}" for k, v in self.get_params().items() if sig.parameters[k].default != v]
        return f"{type(self).__name__}({', '.join(shown)})"

    # ------------------------------------------------------------------ fitted state
    @property
    def fitted(self) -> bool:
        return getattr(self, "queries_", None) is not None

    def _check_fitted(self, method: str) -> None:
        if not self.fitted:
            cls = type(self).__name__
            raise NotFittedError(f"{cls}.{method}() needs a fitted defense: call {cls}(...).fit(blackbox, data) "
                                 f"or {cls}.load(dir) first")

    def _reset(self) -> None:
        self.queries_ = None  # type: ignore[assignment]
        self.split_seed_ = None
        self.blackbox_ = None
        self.data_: str | None = None

    def _fitted(self, blackbox: BlackBox, data: Any, q0: int, split_seed: int | None) -> Self:
        """Record what every fit records: the queries charged since ``q0``, the split seed, the black box,
        the data's name (``dataset:split`` for :func:`~bbdefense.data.make_splits` splits)."""
        self.queries_ = blackbox.stats.queries - q0
        self.split_seed_ = split_seed
        self.blackbox_ = blackbox
        self.data_ = str(getattr(data, "name", "")) or None
        return self

    @staticmethod
    def _check_data(data: Any, what: str) -> None:
        from ..data import ImageDataset

        if not isinstance(data, ImageDataset):
            raise InputError(f"{what} needs an ImageDataset of the defender's images, got {type(data).__name__}")

    def _target(self, blackbox: BlackBox | None, method: str) -> BlackBox:
        """The black box to smooth: ``blackbox`` if given, else the one the defense was fitted or loaded with."""
        bb = blackbox if blackbox is not None else self.blackbox_
        if bb is None:
            raise InputError(f"{type(self).__name__}.{method}() smooths a black box and none is attached (the "
                             f"defense was loaded from a checkpoint): pass blackbox=, or load(dir, blackbox=...)")
        if not isinstance(bb, BlackBox):
            raise InputError(f"blackbox must be a BlackBox, got {type(bb).__name__}")
        return bb

    # ------------------------------------------------------------------ the estimator API
    @abstractmethod
    def fit(self, blackbox: BlackBox, data: Any, *, on_event: EventCallback | None = None,
            split_seed: int | None = None) -> Self:
        """Fit against ``blackbox`` on the defender's ``data``; sets ``queries_`` (charged on ``blackbox``)."""

    @abstractmethod
    def smoothed(self, noise: Noise | None = None, *, blackbox: BlackBox | None = None) -> Smooth:
        """The fitted smoothed classifier (``noise``: default the noise the defense was fitted for)."""

    def certify(self, x: Tensor, *, n0: int = 100, n: int = 10_000, alpha: float = 0.001, batch_size: int = 1000,
                seed: int = 0, indices: Sequence[int] | None = None, on_event: EventCallback | None = None,
                blackbox: BlackBox | None = None, noise: Noise | None = None) -> list[Certificate]:
        """Cohen CERTIFY of :meth:`smoothed` on ``x`` ``(N, C, H, W)``: one certificate per image."""
        self._check_fitted("certify")
        return self.smoothed(noise, blackbox=blackbox).certify(x, n0=n0, n=n, alpha=alpha, batch_size=batch_size,
                                                               seed=seed, indices=indices, on_event=on_event)

    def predict(self, x: Tensor, *, n: int = 10_000, alpha: float = 0.001, batch_size: int = 1000, seed: int = 0,
                blackbox: BlackBox | None = None, noise: Noise | None = None) -> Tensor:
        """Cohen PREDICT of :meth:`smoothed`: ``(N,)`` int64 labels, -1 where it abstains."""
        self._check_fitted("predict")
        return self.smoothed(noise, blackbox=blackbox).predict(x, n=n, alpha=alpha, batch_size=batch_size, seed=seed)

    def as_blackbox(self, *, blackbox: BlackBox | None = None, noise: Noise | None = None, **kw: Any) -> BlackBox:
        """The smoothed classifier as a label-only randomized :class:`BlackBox` (``kw``: :meth:`Smooth.as_blackbox`)."""
        self._check_fitted("as_blackbox")
        return self.smoothed(noise, blackbox=blackbox).as_blackbox(**kw)

    # ------------------------------------------------------------------ persistence
    @abstractmethod
    def _modules(self) -> dict[str, tuple[nn.Module, str, dict[str, Any], str]]:
        """``part -> (module, arch, arch_kwargs, kind)`` of the fitted modules to save."""

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """JSON-able fitted state (shapes, histories, ...) that :meth:`_restore` rebuilds from."""

    @abstractmethod
    def _restore(self, state: dict[str, Any], directory: Path) -> None:
        """Rebuild the fitted modules from ``state`` and the weights in ``directory`` (:func:`load_weights`)."""

    def save(self, directory: str | Path) -> Path:
        """Write the fitted defense into ``directory`` (created); returns the path of ``defense.json``."""
        self._check_fitted("save")
        d = Path(directory)
        parts = self._modules()
        dataset, _, split = (self.data_ or "").partition(":")
        train = {"split_seed": self.split_seed_, "split": split or None, "defense": self.name}
        for part, (module, arch, kwargs, kind) in parts.items():
            save_checkpoint(d / part, module, CheckpointMeta(arch=arch, arch_kwargs=kwargs, kind=kind,
                                                             dataset=dataset or None, train=train,
                                                             extra={"defense": self.name, "part": part},
                                                             **_classifier_fields(self._state(), kind)))
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "class": type(self).__name__, "name": self.name,
                "params": _jsonable(self.get_params()), "queries": int(self.queries_), "split_seed": self.split_seed_,
                "data": self.data_, "parts": sorted(parts), "state": _jsonable(self._state()),
                "versions": environment()}
        path = d / META_FILE
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
            tmp.replace(path)
        except OSError as exc:
            raise CheckpointError(f"cannot write {path}: {exc.strerror or exc}") from None
        return path

    @classmethod
    def load(cls, directory: str | Path, *, blackbox: BlackBox | None = None) -> Self:
        """Rebuild a fitted defense saved by :meth:`save`; ``blackbox`` is attached for :meth:`smoothed`."""
        meta = read_defense_meta(directory)
        if meta["class"] != cls.__name__:
            raise CheckpointError(f"{directory} holds a {meta['class']} defense, not a {cls.__name__}")
        try:
            est = cls(**meta["params"])
        except (TypeError, InputError) as exc:
            raise CheckpointError(f"{directory}: its hyperparameters do not fit {cls.__name__}: {exc}") from None
        est._restore(meta["state"], Path(directory))
        est.queries_ = int(meta["queries"])
        est.split_seed_ = None if meta.get("split_seed") is None else int(meta["split_seed"])
        est.data_ = meta.get("data")
        est.blackbox_ = blackbox
        return est


def _classifier_fields(state: dict[str, Any], kind: str) -> dict[str, Any]:
    """Classifier checkpoints carry what ``load_checkpoint`` checks (so ``bbdefense certify --model`` takes them)."""
    if kind != "classifier":
        return {}
    return {k: state[k] for k in ("num_classes", "input_shape", "mean", "std") if k in state}


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def read_defense_meta(directory: str | Path) -> dict[str, Any]:
    """Read and check ``directory/defense.json`` (raises :class:`CheckpointError`)."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise CheckpointError(f"no certified defense in {directory} (missing {META_FILE})")
    return read_json_record(path, what="certified defense", fmt=FORMAT, version_key="format_version",
                            version=FORMAT_VERSION, required=("class", "params", "queries", "state"))


def load_weights(path: str | Path, module: nn.Module) -> nn.Module:
    """Load a checkpoint's weights (hash-checked) into ``module`` (strict); returns it in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    wpath, _ = checkpoint_paths(path)
    meta = read_meta(path)
    if not wpath.is_file():
        raise CheckpointError(f"checkpoint weights not found: {wpath}")
    if hashlib.sha256(wpath.read_bytes()).hexdigest() != meta["sha256"]:
        raise CheckpointError(f"checkpoint weights {wpath} do not match their recorded hash (corrupt or replaced)")
    try:
        module.load_state_dict(load_file(str(wpath)), strict=True)
    except (SafetensorError, OSError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"checkpoint {wpath.name} does not fit {type(module).__name__}: {first}") from None
    return module.eval()


CERTIFIED: Registry[type[CertifiedDefense]] = Registry("certified defense")


def load_defense(directory: str | Path, *, blackbox: BlackBox | None = None) -> CertifiedDefense:
    """Load any saved certified defense, its class looked up in :data:`CERTIFIED` by the recorded name."""
    meta = read_defense_meta(directory)
    cls = CERTIFIED[str(meta.get("name", ""))]
    return cls.load(directory, blackbox=blackbox)


__all__ = ["CERTIFIED", "FORMAT_VERSION", "CertifiedDefense", "NotFittedError", "load_defense", "load_weights",
           "read_defense_meta"]
