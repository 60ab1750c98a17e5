"""The checks an experiment config and a CLI command run before any work or any file is written, once
the data and the target's architecture are known (the schema in :mod:`.config` needs neither):
radii within the images' range, each attack's own hyperparameter checks on an empty batch (no query),
and :func:`check_runnable` for a whole config (``check-config`` and ``run`` both call it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import BBDefenseError, ConfigError, InputError
from .config import ExperimentConfig

if TYPE_CHECKING:
    from ..attacks.base import Attack
    from ..models import BlackBox


def radius_bound(norm: str, input_shape: Sequence[int]) -> float | None:
    """The largest ``norm`` distance between two images in [0, 1]^d (None for an unknown norm): 1 for linf,
    sqrt(d) for l2, d for l1. A radius beyond it constrains nothing: almost surely a unit mistake."""
    d = math.prod(input_shape)
    return {"linf": 1.0, "l2": math.sqrt(d), "l1": float(d)}.get(norm)


def check_radius(eps: Any, norm: str, input_shape: Sequence[int], what: str = "--eps") -> None:
    """``eps`` in (0, bound] for ``norm`` on images in [0, 1] (:func:`radius_bound`), else InputError."""
    if isinstance(eps, bool) or not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise InputError(f"{what} must be a finite number > 0, got {eps!r}")
    bound = radius_bound(norm, input_shape)
    if bound is not None and eps > bound:
        hint = " (8/255 ~ 0.031 is a common linf radius)" if norm == "linf" else ""
        raise InputError(f"{what} {eps:g} is outside (0, {bound:g}] for {norm} on images in [0, 1] of "
                         f"{math.prod(input_shape)} values: no {norm} distance between two images is "
                         f"larger{hint}")


def preflight_attack(attack: Attack, model: BlackBox) -> None:
    """Run ``attack`` on an empty batch: its own checks of its hyperparameters (norm, eps, criterion, ...)
    and of the model's access run before any image is attacked, spending no query.

    Only typed errors count as a refusal: an attack whose code cannot handle a batch of zero images
    after its checks passed is no bad input (its real run reports any other problem)."""
    import torch

    x = torch.zeros((0, *model.input_shape))
    y = torch.zeros(0, dtype=torch.long)
    try:
        attack.run(model, x, y)
    except BBDefenseError:
        raise
    except Exception:
        pass


def check_runnable(cfg: ExperimentConfig, *, source: str = "config") -> None:
    """The checks that need the data and the target's architecture, run before anything is written or
    trained (``check-config`` and ``run`` both call it): ``data.n`` (and an explicit ``data.n_clean``) fit
    the test split; the training recipe; every defense built around the target's architecture (its own
    checks of its parameters); every attack's radius within the images' range (:func:`check_radius`) and
    its hyperparameters (:func:`preflight_attack`, no query). Raises :class:`ConfigError` naming the entry."""
    import torch

    from ..attacks import ATTACKS
    from ..data import load_dataset, make_splits
    from ..defenses import build_defense
    from ..evaluation.attacks import build_attack
    from ..models import BlackBox, WhiteBox
    from ..models.checkpoint import read_meta, split_seed_of
    from ..models.zoo import build_model
    from ..training import TrainConfig

    where = "data"
    try:
        ds = load_dataset(cfg.data.dataset, cfg.data.data_dir)
        test = make_splits(ds, seed=cfg.data.split_seed).test
        if cfg.data.n > len(test):
            raise InputError(f"n {cfg.data.n} asks for more than the {len(test)} test images of "
                             f"{cfg.data.dataset}; give n: {len(test)} or fewer")
        if "n_clean" in cfg.data.model_fields_set and cfg.data.n_clean > len(test):
            raise InputError(f"n_clean {cfg.data.n_clean} asks for more than the {len(test)} test images of "
                             f"{cfg.data.dataset}; give n_clean: {len(test)} or fewer")
        where = "target"
        t = cfg.target
        if t.arch is not None:
            TrainConfig(**t.train.model_dump(), seed=cfg.seed).check()
            c, h, _ = ds.input_shape
            arch, kwargs = t.arch, {"num_classes": ds.num_classes, "in_channels": c, "image_size": h,
                                    "mean": list(ds.mean), "std": list(ds.std)}
            shape, k = ds.input_shape, int(ds.num_classes)
        elif t.checkpoint is not None and not t.checkpoint.endswith(".onnx"):
            meta = read_meta(t.checkpoint)
            recorded = split_seed_of(meta)
            if recorded is not None and recorded != cfg.data.split_seed:
                raise InputError(f"target checkpoint {t.checkpoint} was trained with split seed {recorded} but "
                                 f"data.split_seed is {cfg.data.split_seed}: its 'test' images would include its "
                                 f"training images (set data.split_seed: {recorded})")
            arch, kwargs = meta["arch"], meta["arch_kwargs"]
            shape, k = tuple(meta["input_shape"]), int(meta["num_classes"])
            if shape != tuple(ds.input_shape):
                raise InputError(f"checkpoint {t.checkpoint} takes images of shape {list(shape)}, dataset "
                                 f"{cfg.data.dataset} has {list(ds.input_shape)}")
        else:  # an ONNX target: only certification, checked by its own schema
            return
        with torch.random.fork_rng(devices=[]):  # a throw-away initialisation: the global stream is untouched
            module = build_model(arch, **kwargs).eval()
            for d in cfg.defenses:
                where = f"defenses.{d.key}"
                build_defense(d.name, module, **{"seed": cfg.seed, **d.params})
        for entry in cfg.attacks:
            for a in entry.expand():
                where = f"attacks.{a.key}"
                params = dict(a.params)
                if a.criterion is not None:
                    params["criterion"] = a.criterion
                atk = build_attack(a.name, max_queries=a.budget, seed=cfg.seed, params=params)
                got = atk.get_params()
                if got.get("eps") is not None and "norm" in got:
                    check_radius(got["eps"], str(got["norm"]), shape, what="eps")
                access = ATTACKS[a.name].access
                bb: BlackBox = (WhiteBox(module, num_classes=k, input_shape=shape) if access == "white" else
                                BlackBox.from_module(module, num_classes=k, input_shape=shape,
                                                     output="label" if access == "label" else "logits"))
                preflight_attack(atk, bb)
    except ConfigError:
        raise
    except BBDefenseError as exc:
        raise ConfigError(f"{source}: {where}: {exc}") from None
