"""Experiment configuration files (SPEC §7): one YAML file describes a run (data, target, defenses,
attacks, certification, privacy); :func:`load_config` validates it (unknown keys are rejected, names
are checked against the registries) and :func:`bbdefense.experiments.runner.run_experiment` runs it.

Example (``configs/quick.yaml`` is a complete one)::

    name: owner-defenses-quick
    seed: 0
    data: {dataset: mnist5k, n: 50}
    target: {arch: smallcnn, train: {epochs: 6}}
    defenses:
      - {name: rnd, params: {nu: 0.275}}
    attacks:
      - {name: square, budget: 1000, params: {norm: linf, eps: 0.3, p_init: 0.8}}
    certify:
      - {noise: gaussian, sigma: 0.25, n0: 20, n: 200}
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError, InputError
from ..utils import SEED_MAX

#: noises whose shape parameter must be given (a silent default would certify another noise than meant)
SHAPE_PARAMS = {"gen_gaussian": "beta"}
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _known_name(what: str, name: str, registry: Any) -> str:
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join(sorted(registry))}")
    return name


def _in_registry(what: str, package: str, attr: str) -> Callable[[str], str]:
    """A validator refusing names not in the registry ``package.attr`` (imported when a config is validated,
    so that loading this module loads no algorithm code), listing the known ones."""

    def check(name: str) -> str:
        return _known_name(what, name, getattr(importlib.import_module(package, __package__), attr))

    return check


#: names checked against their registry, declared once
DatasetName = Annotated[str, AfterValidator(_in_registry("dataset", "..data", "DATASETS"))]
DefenseName = Annotated[str, AfterValidator(_in_registry("defense", "..defenses", "DEFENSES"))]
AttackName = Annotated[str, AfterValidator(_in_registry("attack", "..attacks", "ATTACKS"))]
NoiseName = Annotated[str, AfterValidator(_in_registry("noise", "..certify", "NOISES"))]


def _check_params(what: str, name: str, cls: type, params: dict[str, Any], reserved: tuple[str, ...] = ()) -> None:
    """Reject keys ``cls.__init__`` does not take (naming the accepted ones)."""
    import inspect

    sig = inspect.signature(cls).parameters  # the class's call signature: ``__init__``'s without ``self``
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.values()):
        return
    accepted = [k for k in sig if k not in ("self", *reserved)]
    for key in params:
        if key not in accepted:
            raise ValueError(f"{what} {name!r} has no parameter {key!r}; it takes: {', '.join(accepted)}")


class DataConfig(_Strict):
    """Evaluation data: the ``test`` split of ``dataset`` (``make_splits`` with ``split_seed``).

    ``n`` images are attacked (the first ``n`` the undefended target classifies correctly) and
    certified (the first ``n`` test images); ``n_clean`` test images give each defense's clean
    accuracy (mean of ``clean_passes`` passes) and logit difference (UniG Table 1)."""

    dataset: DatasetName = "mnist5k"
    data_dir: str | None = None
    split_seed: int = Field(0, ge=0, le=SEED_MAX)
    n: int = Field(100, ge=1)
    n_clean: int = Field(1000, ge=1)
    clean_passes: int = Field(3, ge=1)

    @model_validator(mode="after")
    def _data_dir(self) -> DataConfig:
        from ..data import EMBEDDED

        if self.dataset not in EMBEDDED:
            if self.data_dir is None:
                raise ValueError(f"dataset {self.dataset!r} is read from a local folder: give data.data_dir")
            if not Path(self.data_dir).is_dir():
                raise ValueError(f"data_dir not found: {self.data_dir}")
        return self


class TrainSection(_Strict):
    """Fields of :class:`bbdefense.training.TrainConfig` (its defaults where omitted)."""

    mode: Literal["plain", "gaussian", "pgd", "noise"] = "plain"
    epochs: int = Field(6, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    optimizer: str = "adam"
    weight_decay: float = Field(0.0, ge=0)
    sigma: float = Field(0.25, gt=0)
    eps: float = Field(0.1, gt=0)
    pgd_steps: int = Field(7, ge=1)
    noise: str | None = None
    noise_params: dict[str, Any] = Field(default_factory=dict)


class TargetConfig(_Strict):
    """The target: an existing ``checkpoint`` (or ``.onnx`` file), or a zoo ``arch`` trained on the data's
    owner split with ``train`` (cached in the run directory and reused)."""

    checkpoint: str | None = None
    arch: str | None = None
    train: TrainSection = Field(default_factory=TrainSection)
    backend: Literal["torch", "onnx"] = "torch"

    @model_validator(mode="after")
    def _one_source(self) -> TargetConfig:
        if (self.checkpoint is None) == (self.arch is None):
            raise ValueError("give exactly one of target.checkpoint or target.arch")
        if self.arch is not None:
            from ..models.zoo import MODELS

            _known_name("architecture", self.arch, MODELS)
        if self.checkpoint is not None:
            from ..models.checkpoint import checkpoint_paths, read_meta

            p = Path(self.checkpoint)
            if p.suffix == ".onnx":
                if not p.is_file():
                    raise ValueError(f"ONNX file not found: {p}")
            elif not checkpoint_paths(p)[0].is_file():
                raise ValueError(f"checkpoint not found: {checkpoint_paths(p)[0]}")
            else:
                read_meta(p)  # CheckpointError (a ValueError) naming the problem
        return self


class DefenseConfig(_Strict):
    """An owner-side defense of :data:`bbdefense.defenses.DEFENSES` wrapped around the target."""

    name: DefenseName
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _params(self) -> DefenseConfig:
        from ..defenses import DEFENSES

        _check_params("defense", self.name, DEFENSES[self.name], self.params, reserved=("model", "module"))
        return self

    @property
    def key(self) -> str:
        return self.label or self.name


class AttackConfig(_Strict):
    """An attack of :data:`bbdefense.attacks.ATTACKS` run on the undefended target and on every defense.

    ``params`` are the attack's keyword hyperparameters (``norm``, ``eps``, ...); ``budget`` is its
    per-image ``max_queries``; ``budgets: [100, 1000, 2500]`` runs the attack once per budget instead
    (entries ``NAME@BUDGET``; Square's schedule depends on the budget, so a curve read off one long run
    is not the same); ``eot`` > 1 wraps the model in ``EOTBlackBox(m=eot)``; ``criterion`` is the
    success criterion on randomized models."""

    name: AttackName
    budget: int = Field(1000, ge=1)
    budgets: list[int] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    eot: int = Field(1, ge=1)
    criterion: str | None = None
    targeted: bool = False
    label: str | None = None

    @field_validator("name")
    @classmethod
    def _runnable(cls, v: str) -> str:
        from ..attacks import ATTACKS

        if ATTACKS[v].requires:
            raise ValueError(f"attack {v!r} needs {', '.join(ATTACKS[v].requires)}, which a config cannot give")
        return v

    @model_validator(mode="after")
    def _params(self) -> AttackConfig:
        from ..attacks import ATTACKS

        if self.criterion is not None:
            allowed = ATTACKS[self.name].criteria  # declared by the attack (attacks/criteria.py)
            if not allowed:
                raise ValueError(f"attack {self.name!r} takes no success criterion")
            if self.criterion not in allowed:
                raise ValueError(f"criterion of {self.name!r} must be one of {', '.join(allowed)}, got "
                                 f"{self.criterion!r}")
        if "max_queries" in self.params:
            raise ValueError("give the per-image query budget as 'budget' (or 'budgets'), not params.max_queries")
        _check_params("attack", self.name, ATTACKS[self.name], self.params, reserved=("max_queries",))
        return self

    @field_validator("budgets")
    @classmethod
    def _positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or min(v) < 1 or len(set(v)) != len(v)):
            raise ValueError(f"budgets must be distinct positive integers, got {v}")
        return v

    @property
    def key(self) -> str:
        return self.label or (f"eot{self.eot}-{self.name}" if self.eot > 1 else self.name)

    def expand(self) -> list[AttackConfig]:
        """One entry per budget (``budgets`` given) or ``[self]``."""
        if self.budgets is None:
            return [self]
        return [self.model_copy(update={"budget": b, "budgets": None, "label": f"{self.key}@{b}"})
                for b in self.budgets]


def _default_norms() -> list[Literal["l1", "l2", "linf"]]:
    """``certify.norms`` by default: l2 only (a typed function: mypy reads a lambda's ``["l2"]`` as list[str])."""
    return ["l2"]


class CertifyConfig(_Strict):
    """Certification of the target (undefended) smoothed with ``noise`` at ``sigma``: Cohen CERTIFY
    (``method: cohen``, ``randomized`` Clopper-Pearson optional) or the anytime-valid sequential test at
    ``radii`` with at most ``max_n`` samples per image (``method: sequential``)."""

    noise: NoiseName = "gaussian"
    sigma: float = Field(0.25, gt=0)
    noise_params: dict[str, float] = Field(default_factory=dict)
    n0: int = Field(100, ge=1)
    n: int = Field(1000, ge=1)
    alpha: float = Field(0.001, gt=0, lt=1)
    norms: list[Literal["l1", "l2", "linf"]] = Field(default_factory=_default_norms)
    batch_size: int = Field(100, ge=1)
    method: Literal["cohen", "sequential"] = "cohen"
    randomized: bool = False
    radii: list[float] = Field(default_factory=lambda: [0.25, 0.5, 1.0])
    max_n: int = Field(100_000, ge=1)

    @model_validator(mode="after")
    def _noise_params(self) -> CertifyConfig:
        from ..certify import make_noise

        need = SHAPE_PARAMS.get(self.noise)
        if need is not None and need not in self.noise_params:
            raise ValueError(f"noise {self.noise!r} needs its shape in noise_params.{need}")
        make_noise(self.noise, sigma=self.sigma, **self.noise_params)  # InputError (a ValueError) if bad
        return self

    @property
    def key(self) -> str:
        return f"{self.noise}-{self.sigma:g}"


class ExperimentConfig(_Strict):
    """A whole run. ``defenses``, ``attacks``, ``certify`` and ``privacy`` may each be empty."""

    name: str = "experiment"
    seed: int = Field(0, ge=0, le=SEED_MAX)
    data: DataConfig = Field(default_factory=DataConfig)
    target: TargetConfig
    defenses: list[DefenseConfig] = Field(default_factory=list)
    attacks: list[AttackConfig] = Field(default_factory=list)
    certify: list[CertifyConfig] = Field(default_factory=list)
    privacy: dict[str, Any] | None = None

    @field_validator("name")
    @classmethod
    def _plain(cls, v: str) -> str:
        if not _PLAIN_NAME.fullmatch(v):
            raise ValueError(f"name must be a plain folder name (letters, digits, '.', '_', '-'; it names "
                             f"the run directory under runs/), got {v!r}")
        return v

    @model_validator(mode="after")
    def _unique(self) -> ExperimentConfig:
        for what, keys in (("defense", [d.key for d in self.defenses]),
                           ("attack", [e.key for a in self.attacks for e in a.expand()]),
                           ("certify", [c.key for c in self.certify])):
            dup = sorted({k for k in keys if keys.count(k) > 1})
            if dup:
                raise ValueError(f"two {what} entries share the name {dup[0]!r}: give one a distinct 'label'")
        if "undefended" in [d.key for d in self.defenses]:
            raise ValueError("'undefended' is reserved for the target itself")
        if self.privacy is not None:
            import dataclasses

            from ..privacy.study import StudyConfig

            known = {f.name for f in dataclasses.fields(StudyConfig)} - {"seed"}
            bad = sorted(set(self.privacy) - known)
            if bad:
                raise ValueError(f"privacy: unknown key {bad[0]!r}; known: {', '.join(sorted(known))}")
            try:
                self.study_config().check()  # its own checks of the values (InputError)
            except TypeError as exc:
                raise ValueError(f"privacy: {exc}") from None
            except InputError as exc:
                raise ValueError(f"privacy: {exc}") from None
        if self.target.checkpoint is not None and self.target.checkpoint.endswith(".onnx") and (
                self.defenses or self.attacks or self.privacy is not None):
            raise ValueError("defenses, attacks and privacy need the target as a torch checkpoint, not an "
                             ".onnx file (certify works on either)")
        return self

    def study_config(self) -> Any:
        """The :class:`~bbdefense.privacy.study.StudyConfig` of ``privacy`` (None when off)."""
        if self.privacy is None:
            return None
        from ..privacy.study import StudyConfig

        # values as the config file gave them (StudyConfig checks them); lists become the tuples it takes
        params: dict[str, Any] = {"seed": self.seed, **{k: (tuple(v) if isinstance(v, list) else v)
                                                        for k, v in self.privacy.items()}}
        return StudyConfig(**params)


def _describe(err: ValidationError) -> str:
    e = err.errors()[0]
    where = ".".join(str(p) for p in e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        msg = "unknown key"
    elif e["type"] != "value_error" and "input" in e and not isinstance(e["input"], (dict, list)):
        msg += f", got {e['input']!r}"  # pydantic's own messages do not name the bad value
    extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where}: {msg}{extra}" if where else f"{msg}{extra}"


def parse_config(data: Any, *, source: str = "config") -> ExperimentConfig:
    """Validate a parsed mapping; raises :class:`ConfigError` naming the first bad key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a YAML experiment file (the schema; :func:`.preflight.check_runnable` adds the checks that
    need the data and the model)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start]
        raise ConfigError(f"{p.name}: not UTF-8 text (byte {bad:#04x} at offset {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p.name}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_config(data, source=p.name)
