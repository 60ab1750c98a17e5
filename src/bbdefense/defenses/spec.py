"""Build defenses from short text specs (CLI, demo, configs) with their data needs resolved.

A spec is ``name`` or ``name:key=value,key=value`` (values parsed as JSON when they can be, so
``layers=stage2``, ``nu=0.05``, ``stateless=true``; several layers with ``layers=stage1+stage2``).
Two keys are handled here rather than passed to the constructor:

* ``calibrate=<drop>``: calibrate the noise level (``nu``) by bisection to that clean-accuracy drop
  on the held-out ``calibration`` data (rfd, rnd, snd);
* ``combine=true`` (unig) / mixup inference: the reference samples are taken from the owner's
  training data (``reference`` data), ``k=5`` for UniG's single-sample mode, 100 for mixup.

A spec may also be the path of a JSON file written by ``bbdefense defend`` (``{"defense": name,
"params": {...}}``): the stored, already calibrated parameters are used as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..errors import InputError
from .base import DEFENSES, Defense
from .calibrate import CalibrationResult, calibrate_noise
from .metrics import clean_accuracy, logit_difference


@dataclass
class BuiltDefense:
    name: str
    defense: Defense
    calibration: CalibrationResult | None
    spec: str


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"rfd:layers=stage2,calibrate=0.02"`` -> ``("rfd", {"layers": ["stage2"], "calibrate": 0.02})``."""
    spec = spec.strip()
    if spec.endswith(".json") and Path(spec).is_file():
        d = json.loads(Path(spec).read_text())
        if "defense" not in d:
            raise InputError(f"{spec} is not a defense file (no 'defense' key)")
        return str(d["defense"]), dict(d.get("params", {}))
    name, _, rest = spec.partition(":")
    DEFENSES[name]  # raises UnknownNameError listing the defenses
    params: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, val = item.partition("=")
        if not eq:
            raise InputError(f"bad defense option {item!r} in {spec!r}; expected key=value")
        try:
            v: Any = json.loads(val)
        except json.JSONDecodeError:
            v = val
        if key == "layers":
            v = [s for s in str(val).split("+") if s]
        params[key.strip()] = v
    return name, params


def build_from_spec(spec: str, module: nn.Module, *, calibration: tuple[Tensor, Tensor] | None = None,
                    reference: tuple[Tensor, Tensor] | None = None, passes: int = 5, seed: int = 0,
                    on_event: Any = None) -> BuiltDefense:
    """Build the defense a spec describes around ``module`` (see the module docstring).

    Raises:
        UnknownNameError: unknown defense name.
        InputError: bad options, or calibration / reference data needed but not given.
    """
    name, params = parse_spec(spec)
    drop = params.pop("calibrate", None)
    combine = bool(params.pop("combine", False))
    params.setdefault("seed", seed)
    if name == "unig" and combine:
        if reference is None:
            raise InputError("unig:combine=true needs reference training samples")
        k = int(params.get("k", 5))
        params["reference"] = (reference[0][:100 + k], reference[1][:100 + k])
    if name == "mixup_inference" and "reference" not in params:
        if reference is None:
            raise InputError("mixup_inference needs reference training samples")
        params["reference"] = (reference[0][:100], reference[1][:100])
    if drop is not None and "nu" not in params:
        params["nu"] = 0.0
    try:
        d = DEFENSES[name](module, **params)
    except TypeError as exc:
        raise InputError(f"bad options for defense {name!r}: {exc}") from exc
    cal = None
    if drop is not None:
        if calibration is None:
            raise InputError(f"{name}: calibrate={drop} needs held-out calibration data")
        init = 0.01 if name in ("rnd", "snd") else 0.05
        cal = calibrate_noise(d, calibration[0], calibration[1], target_drop=float(drop), passes=passes, seed=seed,
                              init=init, on_event=on_event)
    return BuiltDefense(name, d, cal, spec)


def check_spec(spec: str, module: nn.Module, reference: tuple[Tensor, Tensor] | None = None, seed: int = 0) -> None:
    """Refuse a bad spec before any work: build its defense once, uncalibrated, on a throw-away copy (the global
    RNG is restored), so the defense's own checks of its values (``nu=-1``, an unknown layer...) run before any
    calibration, attack or file. ``calibrate`` must be a clean-accuracy drop in (0, 1)."""
    import torch

    _, params = parse_spec(spec)
    drop = params.get("calibrate")
    is_number = isinstance(drop, (int, float)) and not isinstance(drop, bool)
    if drop is not None and not (is_number and 0 < drop < 1):
        raise InputError(f"defense {spec!r}: calibrate must be a clean-accuracy drop in (0, 1), got {drop!r}")
    head, _, rest = spec.partition(":")
    plain = spec if spec.strip().endswith(".json") else head + ":" + ",".join(
        item for item in rest.split(",") if not item.strip().startswith("calibrate="))
    with torch.random.fork_rng(devices=[]):
        build_from_spec(plain, module, reference=reference, seed=seed)


def split_wrapped(spec: str) -> tuple[str, str]:
    """``"rfd:nu=0.1@at"`` -> ``("rfd:nu=0.1", "at")``: a spec and the name of the extra model it wraps
    (``""``: the main model)."""
    if "@" not in spec:
        return spec, ""
    head, _, on = spec.rpartition("@")
    return head, on


def defense_label(b: BuiltDefense) -> str:
    """A short row label: ``rfd[stage2] nu=0.31 (-2.0%)``."""
    p = b.defense.get_params()
    s = b.name
    opts = {} if b.spec.strip().endswith(".json") else parse_spec(b.spec)[1]
    extra = [f"{k}={v}" for k, v in opts.items() if k not in ("layers", "nu", "calibrate", "combine", "seed")]
    if extra:
        s += "{" + ",".join(extra) + "}"
    if "layers" in p:
        s += f"[{'+'.join(p['layers'])}]"
    if "nu" in p:
        s += f" nu={p['nu']:.3g}"
    if b.calibration is not None:
        s += f" (~{100 * b.calibration.target_drop:.0f}% drop)"
    if getattr(b.defense, "combine", False):
        s += " combine"
    return s


@dataclass
class DefenseReport:
    """What ``bbdefense defend`` reports of a built defense on test images: its clean accuracy (mean of
    ``passes`` stochastic passes, 1 for a deterministic defense), the undefended model's, and UniG's logit
    difference; :meth:`record` is the JSON defense file (read back by :func:`parse_spec`)."""

    built: BuiltDefense
    accuracy: float
    undefended_accuracy: float
    logit_difference: float
    passes: int

    def record(self, model: str, *, combine: bool = False) -> dict[str, Any]:
        b = self.built
        params = _jsonable(b.defense.get_params())
        if b.name == "unig" and combine:
            params["combine"] = True
        return {"defense": b.name, "params": params, "model": str(model), "spec": b.spec,
                "calibration": None if b.calibration is None else _jsonable(b.calibration.as_dict()),
                "test_clean_accuracy": self.accuracy, "undefended_test_accuracy": self.undefended_accuracy,
                "logit_difference": self.logit_difference}


def measure_defense(built: BuiltDefense, module: nn.Module, x: Tensor, y: Tensor, *, passes: int = 5, seed: int = 0,
                    budget: int | None = None) -> DefenseReport:
    """Clean accuracy of the defense and of ``module`` on ``(x, y)`` and the logit difference between them.

    ``budget``: the defense answers through a counted :class:`~bbdefense.models.BlackBox` with this hard
    limit (:class:`~bbdefense.errors.QueryBudgetExceeded` past it; the same figures), ``passes * N + N``
    queries for a randomized defense; ``None``: no limit. The undefended model is the owner's own, free.
    """
    from ..models import BlackBox
    from ..models.backends import module_num_classes

    d = built.defense
    base = clean_accuracy(module, x, y)[0]
    oracle = None if budget is None else BlackBox.from_module(
        d, num_classes=module_num_classes(d), input_shape=tuple(x.shape[1:]),  # type: ignore[arg-type]  # (C, H, W)
        budget=budget, name=f"defend {built.name}")
    acc, _ = clean_accuracy(d, x, y, passes=passes, seed=seed, oracle=oracle)
    d.reseed(seed)
    ld = logit_difference(d, module, x, oracle=oracle)
    return DefenseReport(built, acc, base, ld, passes if d.randomized else 1)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if isinstance(v, (int, float, str, bool, list, type(None)))}


__all__ = ["BuiltDefense", "DefenseReport", "build_from_spec", "defense_label", "measure_defense", "parse_spec"]
