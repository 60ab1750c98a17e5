"""The evaluation layer: turns attack runs and certification runs into per-image rows, curves and tables.
Used by the CLI (``attack``, ``certify``, ``run``, ``evaluate``), the config runner, the demo and the paper
suites alike. Success criteria live in :mod:`bbdefense.attacks` (not here); ``NORMS`` in
:mod:`bbdefense.certify.noises`.

Stable API (what callers outside this package may use; everything else is internal):

Attacks (:mod:`.attacks`)
    ``evaluate_attack(model, attack, x, y, index=None, *, budget, grid, params, norm, eps, seed, target,
    x_init, batch_size, writer, batch_writer, on_event) -> AttackEvaluation`` runs an attack (an ``Attack``
    or a registry name + hyperparameters) in fixed batches, streams one row per image to a ``RowWriter``
    (resume: batches whose rows are on disk are skipped, an interrupted batch is re-run with the same
    seed), and returns ``rows``, the robust-accuracy-vs-queries ``grid``/``curve`` and a ``summary``
    (``robust_accuracy``, ``robust_accuracy_ci`` = 95% Clopper-Pearson, ``n``, query statistics).
    ``evaluation_from_rows(rows, batches, budget)`` rebuilds one from rows on disk.
    Helpers: ``build_attack``, ``attack_blackbox(module, attack, ...)`` (a fresh counted model for an
    attack: label-only / logits / WhiteBox, EOT, defense re-seeded), ``first_correct``,
    ``attack_inputs`` (targets and starting points), ``query_grid``, ``robust_curve``, ``summarize``.

Certification (:mod:`.certification`)
    ``certify_rows(smooth, x, y, index=None, *, n0, n, alpha, batch_size, seed, chunk, writer, on_event)
    -> CertifyRun`` certifies with a :class:`~bbdefense.certify.Smooth`, one row per image (resume by
    image index; per-image seeds, so chunking does not change a row); ``rows_from_certificates`` turns
    certificates obtained otherwise into the same rows. Rows -> figures: ``certified_accuracy(rows, norm,
    radii)``, ``certified_accuracy_ci`` (with the 95% interval, ``k`` and ``n``), ``certified_curve(rows,
    norm, grid) -> CertifiedCurve`` (with DUCD's robust score). Radius grids, defined once: ``RADII`` (the
    denoised-smoothing tables), ``default_grid(norm, sigma, d)``, ``table_radii(norm, d)`` (DUCD Table IV).

Records (:mod:`.report`)
    ``add_attack_run``, ``add_attack_curve``, ``budget_exhaustion``, ``add_certification(run,
    [CertifiedSetting(...)], d=, section=)``: the tables, plots, checks and metrics of a run record.

Owner-side defenses (:mod:`.owner`)
    ``evaluate_defenses(models, undefended, x, y, EvalConfig(...), run=...)``: the RFD Table 2 / UniG
    Table 1 layout, each attack run through :func:`evaluate_attack`.

Intervals (:mod:`.intervals`)
    ``proportion_ci(k, n, level=0.95)``: the exact two-sided Clopper-Pearson interval.
"""

from .attacks import (
    AttackEvaluation,
    AttackInputs,
    attack_blackbox,
    attack_inputs,
    build_attack,
    evaluate_attack,
    evaluation_from_rows,
    first_correct,
    query_grid,
    robust_curve,
    summarize,
)
from .certification import (
    RADII,
    CertifiedCurve,
    CertifyRun,
    certified_accuracy,
    certified_accuracy_ci,
    certified_curve,
    certify_rows,
    default_grid,
    rows_from_certificates,
    table_radii,
)
from .intervals import proportion_ci

__all__ = ["RADII", "AttackEvaluation", "AttackInputs", "CertifiedCurve", "CertifyRun", "attack_blackbox",
           "attack_inputs", "build_attack", "certified_accuracy", "certified_accuracy_ci", "certified_curve",
           "certify_rows", "default_grid", "evaluate_attack", "evaluation_from_rows", "first_correct",
           "proportion_ci", "query_grid", "robust_curve", "rows_from_certificates", "summarize", "table_radii"]
