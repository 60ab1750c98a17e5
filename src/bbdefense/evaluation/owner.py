"""Evaluation of owner-side defenses through the attack suite, in the layouts of RFD Table 2 and
UniG Table 1: clean accuracy (mean of several passes), logit difference, and robust accuracy per
attack and query budget, with the queries spent next to every figure.

Protocol (recorded in every row and in ``docs/owner-defenses.md``):

* every model (undefended or defended) is wrapped in a fresh query-counted
  :class:`~bbdefense.models.BlackBox` (logits) per attack run; a randomized defense is re-seeded
  before each run, so runs are reproducible; UniG keeps its momentum across the queries of a run
  (the reference's statefulness) and its batch shrinks as images are fooled (as in the reference);
* score attacks (Square, NES, SignHunter, SimBA, Bandits) run once **per budget** (Square's
  ``p`` schedule depends on the budget, pitfall 13), decision attacks (RayS, SignFlip, when the
  attack suite provides them) at the largest budget on a label-only black box;
* the EOT adaptive attack wraps the defended black box in ``EOTBlackBox(m)``: ``m`` queries averaged
  per evaluation, charged ``m`` each, so the attack gets ``budget // m`` iterations (pitfall 9);
* **robust accuracy** = fraction of all evaluated test images that the attack did not fool (the
  RFD code attacks all examples; initially misclassified images count as fooled), with success on
  randomized models decided by ``criterion`` (default ``majority`` of 9 re-queries through
  ``audit``, uncounted, the RFD ``fast_exp`` spirit; ``single`` and ``fooled_once`` on request);
* rows stream to ``RunDir.rows("owner_eval")`` as produced (key ``defense|attack|budget``), so an
  interrupted evaluation resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks.base import Attack
from ..data.splits import Splits
from ..defenses.base import Defense
from ..defenses.metrics import clean_metrics
from ..errors import InputError, QueryBudgetExceeded
from ..events import EventCallback, emit
from ..models.backends import module_num_classes
from ..records import RunDir, table
from .attacks import attack_blackbox, evaluate_attack
from .intervals import proportion_ci

SCORE_ATTACKS = ("square", "nes", "signhunter", "simba", "bandits")
DECISION_ATTACKS = ("rays", "signflip")


@dataclass
class EvalConfig:
    """What to run. ``attack_params`` maps an attack name to extra hyperparameters."""

    attacks: Sequence[str] = SCORE_ATTACKS
    budgets: Sequence[int] = (100, 1000, 2500)
    decision_attacks: Sequence[str] = DECISION_ATTACKS
    eot: Sequence[str] = ("square",)
    eot_m: int = 10
    eot_budget: int | None = None
    eps: float = 0.1
    norm: str = "linf"
    criterion: str = "fast_exp"
    k: int = 9
    clean_passes: int = 5
    attack_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 0

    def check(self) -> None:
        if not self.budgets or any(int(b) < 1 for b in self.budgets):
            raise InputError(f"budgets must be positive integers, got {list(self.budgets)}")
        if not self.eps > 0:
            raise InputError(f"eps must be > 0, got {self.eps!r}")
        if self.eot_m < 1:
            raise InputError(f"eot_m must be >= 1, got {self.eot_m!r}")
        if self.criterion not in ("single", "majority", "fooled_once", "fast_exp"):
            raise InputError(f"criterion must be single, majority, fooled_once or fast_exp, got {self.criterion!r}")


@dataclass
class EvalRow:
    defense: str
    attack: str
    budget: int
    robust_accuracy: float
    queries: int
    mean_queries: float
    audit_queries: int
    criterion: str
    seconds: float
    n: int

    @property
    def key(self) -> str:
        return f"{self.defense}|{self.attack}|{self.budget}"


def _params(cls: type[Attack], cfg: EvalConfig, budget: int) -> dict[str, Any]:
    """The constructor arguments of one run: the common settings and ``cfg.attack_params`` where the
    attack declares them (:meth:`Attack.param_names`), and the success criterion (``attacks.criteria``)."""
    params: dict[str, Any] = {"norm": cfg.norm, "eps": cfg.eps, "max_queries": int(budget), "seed": cfg.seed}
    params.update(cfg.attack_params.get(cls.name, {}))
    sig = cls.param_names()
    if cls.criteria:  # attacks without an in-attack re-check: fast_exp -> majority at the end
        crit = "majority" if cfg.criterion == "fast_exp" and "fast_exp" not in cls.criteria else cfg.criterion
        params.setdefault("criterion", crit)
        params.setdefault("k", cfg.k)
    return {k: v for k, v in params.items() if k in sig}


def run_attack(model: nn.Module, attack: str, x: Tensor, y: Tensor, *, budget: int, cfg: EvalConfig,
               eot_m: int | None = None, defense_name: str = "model", limit: int | None = None) -> EvalRow:
    """One attack run at one budget on ``model`` (all of ``x`` in one batch, through
    :func:`~bbdefense.evaluation.attacks.evaluate_attack`); returns its :class:`EvalRow`. ``limit``: the run's
    black box refuses queries past this many (:class:`~bbdefense.errors.QueryBudgetExceeded`). The row's
    ``queries`` are what its black box charged (checked: they must agree)."""
    from ..attacks import ATTACKS

    cls = ATTACKS[attack]
    shape = tuple(x.shape[1:])
    num_classes = module_num_classes(model)  # metadata, not an uncounted forward pass
    if num_classes is None:
        raise InputError(f"cannot tell the class count of {type(model).__name__} from its metadata")
    # x is (N, C, H, W), so shape is (C, H, W); a torch.Size slice only types as tuple[int, ...]
    bb = attack_blackbox(model, attack, num_classes=num_classes, input_shape=shape,  # type: ignore[arg-type]
                         name=defense_name, eot=eot_m, reseed=cfg.seed, budget=limit)
    label = attack if eot_m is None else f"eot{eot_m}-{attack}"
    ev = evaluate_attack(bb, cls(**_params(cls, cfg, budget)), x, y, budget=int(budget),
                         batch_size=max(len(x), 1), task=f"{label} on {defense_name}")
    success = torch.tensor([bool(r["success"]) for r in ev.rows], dtype=torch.bool)
    queries = torch.tensor([int(r["queries"]) for r in ev.rows], dtype=torch.int64)
    robust = float((~success).float().mean()) if len(success) else 0.0
    mean_q = float(queries.float().mean()) if len(queries) else float("nan")
    crit = ev.batches[0]["criterion"] if ev.batches else "single"
    if int(queries.sum()) != bb.stats.queries:  # the rows' sum is the one counter's, or accounting broke
        raise RuntimeError(f"{label} on {defense_name}: rows sum to {int(queries.sum())} queries, the black box "
                           f"charged {bb.stats.queries}")
    return EvalRow(defense_name, label, int(budget), robust, int(queries.sum()), mean_q, ev.audit_queries, crit,
                   round(ev.seconds, 2), int(x.shape[0]))


def evaluate_defenses(models: Mapping[str, nn.Module], undefended: nn.Module, x: Tensor, y: Tensor,
                      cfg: EvalConfig, *, x_clean: Tensor | None = None, y_clean: Tensor | None = None,
                      run: RunDir | None = None, section: str | None = None,
                      bases: Mapping[str, nn.Module] | None = None, budget: int | None = None,
                      on_event: EventCallback | None = None) -> dict[str, Any]:
    """Evaluate each model of ``models`` (name -> module; include the undefended one to get its row).

    Args:
        models: models to evaluate, e.g. ``{"undefended": net, "rfd (2%)": rfd, "unig": unig}``.
        undefended: the owner's model, the reference of the logit difference.
        x, y: attacked test images ``(N, C, H, W)`` in [0, 1] and labels ``(N,)``.
        cfg: attacks, budgets, eps, criterion, EOT settings.
        x_clean, y_clean: images for clean accuracy and logit difference (default ``x, y``).
        run: a run directory; rows stream to ``rows/owner_eval.jsonl`` and the tables are added.
        bases: per model name, the undefended model its logit difference is measured against
            (e.g. the AT checkpoint for "rfd @at"); default ``undefended``.
        budget: queries the attack runs of this call may spend in all (each run's black box refuses what
            would pass the rest: :class:`~bbdefense.errors.QueryBudgetExceeded`); clean passes run the
            owner's own model and are not charged. ``None``: no limit.

    Returns:
        ``{"clean": {name: {...}}, "rows": [EvalRow as dict], "tables": [table dicts]}``.
    """
    from ..attacks import ATTACKS

    cfg.check()
    if x.dim() != 4 or y.shape != (x.shape[0],):
        raise InputError(f"expected images (N, C, H, W) and labels (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    xc = x if x_clean is None else x_clean
    yc = y if y_clean is None else y_clean
    writer = run.rows("owner_eval", key="key") if run is not None else None
    done: dict[str, dict[str, Any]] = {}
    if writer is not None:
        from ..records import read_rows

        # a writer is only opened on a run, so run is not None here (mypy cannot tie the two)
        path = run.path / "rows" / "owner_eval.jsonl"  # type: ignore[union-attr]
        if path.is_file():
            done = {r["key"]: r for r in read_rows(path)}
    clean: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    jobs: list[tuple[str, str, int, int | None]] = []
    budgets = sorted(int(b) for b in cfg.budgets)
    for name in models:
        for a in cfg.attacks:
            if a in ATTACKS:
                jobs += [(name, a, b, None) for b in budgets]
        for a in cfg.decision_attacks:
            if a in ATTACKS:
                jobs.append((name, a, budgets[-1], None))
        if getattr(models[name], "randomized", False):
            for a in cfg.eot:
                if a in ATTACKS:
                    jobs.append((name, a, int(cfg.eot_budget or budgets[-1]), cfg.eot_m))
    missing = [a for a in (*cfg.attacks, *cfg.decision_attacks) if a not in ATTACKS]
    emit(on_event, "start", "owner-eval", total=len(jobs) + len(models), unit="runs")
    for name, model in models.items():
        key = f"{name}|clean|0"
        if key in done:
            c = done[key]
        else:
            ref = (bases or {}).get(name, undefended)
            c = {"key": key, "defense": name, "attack": "clean", "budget": 0,
                 **clean_metrics(model, ref, xc, yc, passes=cfg.clean_passes, seed=cfg.seed),
                 "params": model.get_params() if isinstance(model, Defense) else {}}
            c = {k: (v if not isinstance(v, tuple) else list(v)) for k, v in c.items()}
            if writer is not None:
                writer.write(_jsonable(c))
        clean[name] = c
        emit(on_event, "advance", "owner-eval")
    total, spent = budget, 0  # queries charged by the attack runs so far
    for name, attack, budget, m in jobs:
        label = attack if m is None else f"eot{m}-{attack}"
        key = f"{name}|{label}|{budget}"
        if key in done:
            rows.append(done[key])
            emit(on_event, "advance", "owner-eval")
            continue
        left = None if total is None else total - spent
        try:
            r = run_attack(models[name], attack, x, y, budget=budget, cfg=cfg, eot_m=m, defense_name=name,
                           limit=left)
        except QueryBudgetExceeded as exc:
            raise QueryBudgetExceeded(f"query budget exceeded: the attack runs spent {spent} of {total}, and "
                                      f"{label}@{budget} on {name} was refused ({exc})") from None
        spent += r.queries
        row = {"key": key, **asdict(r)}
        rows.append(row)
        if writer is not None:
            writer.write(row)
        emit(on_event, "info", "owner-eval", message=f"{name} {label}@{budget}: robust {r.robust_accuracy:.3f} "
                                                      f"({r.queries} queries, {r.seconds:.1f}s)")
        emit(on_event, "advance", "owner-eval")
    emit(on_event, "end", "owner-eval")
    if writer is not None:
        writer.close()
    tables = owner_tables(clean, rows, cfg, n=int(x.shape[0]), missing=missing)
    if run is not None:
        for t in tables:
            run.add_table({**t, "section": section or "Owner-side defenses"})
    return {"clean": clean, "rows": rows, "tables": tables, "missing_attacks": missing}


def check_defense_specs(specs: Sequence[str], bases: Mapping[str, nn.Module],
                        reference: tuple[Tensor, Tensor] | None, seed: int) -> None:
    """Refuse a bad defense spec before any work: its syntax, its values (each defense built once, uncalibrated,
    on a throw-away copy: :func:`~bbdefense.defenses.spec.check_spec`) and the extra model a ``spec@NAME``
    wraps (``bases``: name -> module, ``""`` the owner's)."""
    from ..defenses.spec import check_spec, parse_spec, split_wrapped

    for spec in specs:
        spec_s, on = split_wrapped(spec)
        parse_spec(spec_s)
        if on and on not in bases:
            raise InputError(f"defense {spec!r} wraps unknown extra model {on!r}; give --extra-model {on}=CKPT")
        check_spec(spec_s, bases[on], reference, seed)


def evaluate_specs(run: RunDir, module: nn.Module, specs: Sequence[str], splits: Splits, cfg: EvalConfig, *,
                   n: int, n_clean: int | None = None, extras: Mapping[str, nn.Module] | None = None,
                   section: str = "Owner-side defenses", budget: int | None = None,
                   on_event: EventCallback | None = None) -> dict[str, Any]:
    """Build the defense each spec names (``name[:key=value,...][@EXTRA]``, see :mod:`bbdefense.defenses.spec`)
    around the owner's ``module`` or the extra model it names, calibrated on the defender split with the owner's
    training split as reference (``cfg.clean_passes`` passes, ``cfg.seed``; calibrations go to ``run``'s
    metrics), then :func:`evaluate_defenses` on the undefended model, the ``extras`` (name -> module, evaluated
    undefended too) and every defense: attacked on the first ``n`` test images, clean accuracy on the first
    ``n_clean`` (all by default); ``budget``: the attack runs' total query limit. Returns
    :func:`evaluate_defenses`'s result."""
    from ..defenses.spec import build_from_spec, defense_label, split_wrapped

    bases: dict[str, nn.Module] = {"": module, **(extras or {})}
    models: dict[str, nn.Module] = {"undefended": module, **(extras or {})}
    ref_of: dict[str, nn.Module] = {}
    cal = (splits.defender.x, splits.defender.y)
    ref = (splits.owner_train.x, splits.owner_train.y)
    for spec in specs:
        spec_s, on = split_wrapped(spec)
        built = build_from_spec(spec_s, bases[on], calibration=cal, reference=ref, passes=cfg.clean_passes,
                                seed=cfg.seed, on_event=on_event)
        label = defense_label(built) + (f" @{on}" if on else "")
        models[label] = built.defense
        ref_of[label] = bases[on]
        if built.calibration is not None:
            run.set_metrics(**{f"calibration.{label}": built.calibration.as_dict()})
    test = splits.test
    return evaluate_defenses(models, module, test.x[:n], test.y[:n], cfg, x_clean=test.x[:n_clean],
                             y_clean=test.y[:n_clean], run=run, section=section, bases=ref_of, budget=budget,
                             on_event=on_event)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out[k] = {kk: vv for kk, vv in v.items() if isinstance(vv, (int, float, str, bool, list, type(None)))}
        else:
            out[k] = v
    return out


def owner_tables(clean: Mapping[str, Mapping[str, Any]], rows: Sequence[Mapping[str, Any]], cfg: EvalConfig, *,
                 n: int, missing: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The UniG-Table-1 / RFD-Table-2 layout: one row per defense, clean accuracy, logit difference,
    robust accuracy per ``attack@budget`` column, and the total queries the attacks spent."""
    cols_keys: list[str] = []
    for r in rows:
        ck = f"{r['attack']}@{r['budget']}"
        if ck not in cols_keys:
            cols_keys.append(ck)
    columns = ["defense", "clean acc", "logit diff", *cols_keys, "queries spent", "criterion"]
    body = []
    for name, c in clean.items():
        cells: dict[str, Any] = {f"{r['attack']}@{r['budget']}": r["robust_accuracy"] for r in rows
                                 if r["defense"] == name}
        qs = sum(int(r["queries"]) for r in rows if r["defense"] == name)
        crit = sorted({str(r["criterion"]) for r in rows if r["defense"] == name}) if c.get("randomized") else ["-"]
        body.append([name, round(float(c["clean_accuracy"]), 4), round(float(c["logit_difference"]), 4),
                     *[None if cells.get(k) is None else round(float(cells[k]), 3) for k in cols_keys], qs,
                     "/".join(crit)])
    caption = (f"robust accuracy over {n} test images, {cfg.norm} eps {cfg.eps}; clean accuracy = mean of "
               f"{cfg.clean_passes} passes; logit diff = mean l2(defended - undefended logits); EOT m = {cfg.eot_m} "
               f"(charged m queries per evaluation); success on randomized models: {cfg.criterion}"
               f"{f'@{cfg.k}' if cfg.criterion == 'majority' else ''} (re-queries uncounted, reported as audit)")
    if missing:
        caption += f"; not available in this build: {', '.join(missing)}"
    t = table("Owner-side defenses: clean accuracy, logit difference, robust accuracy", columns, body, caption)
    detail = table("Owner-side defenses: every attack run",
                   ["defense", "attack", "budget", "robust acc", "95% CI", "queries", "mean queries/image",
                    "audit queries", "criterion", "seconds"],
                   [[r["defense"], r["attack"], r["budget"], round(float(r["robust_accuracy"]), 3), _ci(r),
                     r["queries"], round(float(r["mean_queries"]), 1), r["audit_queries"], r["criterion"],
                     r["seconds"]] for r in rows],
                   "queries = charged queries summed over images (the oracle's counter); 95% CI: Clopper-Pearson "
                   "over the images")
    return [t, detail]


def _ci(r: Mapping[str, Any]) -> list[float] | None:
    """The 95% Clopper-Pearson interval of a run's robust accuracy (``robust_accuracy`` of ``n`` images)."""
    n = int(r.get("n", 0))
    if n < 1:
        return None
    lo, hi = proportion_ci(round(float(r["robust_accuracy"]) * n), n)
    return [round(lo, 3), round(hi, 3)]


__all__ = ["DECISION_ATTACKS", "SCORE_ATTACKS", "EvalConfig", "EvalRow", "check_defense_specs", "evaluate_defenses",
           "evaluate_specs", "owner_tables",
           "run_attack"]
