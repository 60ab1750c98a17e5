"""Owner-side defense commands: ``bbdefense defend rfd|unig|rnd|snd|aaa|anti-adversary|mixup-inference``
(build, calibrate, measure, save a defense file) and ``bbdefense evaluate`` (the robust-accuracy table)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from . import options as opt
from .common import defend_app, out, progress_events, seed_everything

OWNER_DEFENSES = ("rfd", "unig", "rnd", "snd", "aaa", "anti_adversary", "mixup_inference")


def register(app: typer.Typer) -> None:
    for name in OWNER_DEFENSES:
        defend_app.command(name.replace("_", "-"), help=_HELP[name])(_make_defend(name))
    app.command("evaluate")(evaluate)


_HELP = {
    "rfd": "Randomized Feature Defense: noise on hidden features (--layers), nu calibrated with --calibrate-drop.",
    "unig": "UniG: per-query re-optimised Hadamard module on penultimate features (--combine for single queries).",
    "rnd": "Random Noise Defense: Gaussian noise on each query input, nu calibrated with --calibrate-drop.",
    "snd": "Small Noise Defense: RND with a small fixed nu (0.01).",
    "aaa": "Adversarial Attack on Attackers: 8-bit rounding + attractor logit post-processing.",
    "anti_adversary": "Anti-adversary layer (k signed-gradient steps toward the predicted class).",
    "mixup_inference": "Mixup inference (MI-OL) with the owner's training images.",
}


def _load(model: str, command: str, dataset: str | None, data_dir: Path | None,
          split_seed: int | None) -> tuple[Any, dict[str, Any], Any]:
    """The owner's module (a kind with a torch module) and the splits of the seed it records."""
    from ..models import model_source

    module, meta = model_source(model).module(command)
    _, splits, _ = opt.resolve_splits(dataset, data_dir, meta=meta, split_seed=split_seed, what=f"model {model}")
    return module, meta, splits


def _make_defend(name: str):
    def defend_cmd(
        model: str = opt.model_option(help="The owner's model (a kind with a torch module)."),
        dataset: str | None = opt.dataset_option(),
        data_dir: Path | None = opt.data_dir_option(),
        split_seed: int | None = opt.split_seed_option(),
        calibrate_drop: float | None = opt.fraction_option(
            None, "--calibrate-drop", help="Calibrate nu to this clean-accuracy drop (fraction, e.g. 0.02) on the "
                                           "held-out defender split (rfd, rnd, snd)."),
        layers: str | None = typer.Option(None, "--layers", help="rfd: layer names joined by '+', e.g. stage2 "
                                                                    "or penultimate (see docs/owner-defenses.md)."),
        nu: float | None = opt.nonnegative_option(None, "--nu",
                                                 help="Noise std (rfd, rnd, snd) when not calibrating."),
        combine: bool = typer.Option(False, "--combine", help="unig: pad each query with k=5 stored training samples."),
        option: list[str] | None = typer.Option(None, "--option", "-o", help="Extra hyperparameter key=value "
                                                                                "(repeatable), e.g. -o lr=1."),
        passes: int = opt.count_option(5, "--passes", help="Stochastic passes averaged for clean accuracy."),
        n_test: int | None = opt.count_option(None, "--n-test",
                                             help="Test images for clean accuracy (default all)."),
        out_path: Path | None = typer.Option(None, "--out", help="Write the defense file (JSON) here."),
        budget: int | None = opt.budget_option(None, "Queries the defended model may answer in the test "
                                                     "measurement (clean-accuracy passes and logit difference; "
                                                     "calibration on the defender split is not charged); "
                                                     "QueryBudgetExceeded beyond."),
        seed: int = opt.seed_option(),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        from ..defenses.spec import build_from_spec, check_spec, defense_label, measure_defense

        seed_everything(seed)
        if out_path is not None:
            opt.check_output_file(out_path, "--out")
        module, _meta, splits = _load(model, f"defend {name.replace('_', '-')}", dataset, data_dir, split_seed)
        if n_test is not None:
            opt.check_count(n_test, len(splits.test), "--n-test", "test images")
        opts = list(option or [])
        if calibrate_drop is not None:
            opts.append(f"calibrate={calibrate_drop}")
        if layers is not None:
            opts.append(f"layers={layers}")
        if nu is not None:
            opts.append(f"nu={nu}")
        if combine:
            opts.append("combine=true")
        spec = name + (":" + ",".join(opts) if opts else "")
        cal = (splits.defender.x, splits.defender.y)
        ref = (splits.owner_train.x, splits.owner_train.y)
        check_spec(spec, module, ref, seed)
        with progress_events(progress) as cb:
            built = build_from_spec(spec, module, calibration=cal, reference=ref, passes=passes, seed=seed,
                                    on_event=cb)
        rep = measure_defense(built, module, splits.test.x[:n_test], splits.test.y[:n_test], passes=passes, seed=seed,
                              budget=budget)
        out.print(f"{defense_label(built)}: test clean accuracy {rep.accuracy:.4f} (undefended "
                  f"{rep.undefended_accuracy:.4f}, mean of {rep.passes} passes), logit difference "
                  f"{rep.logit_difference:.4f}")
        if built.calibration is not None:
            c = built.calibration
            out.print(f"calibrated on the defender split: nu={c.value:.5g}, accuracy {c.accuracy:.4f} "
                      f"(drop {c.drop:+.4f}, target {c.target_drop}, {len(c.history)} levels tried)")
        if out_path is not None:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(json.dumps(rep.record(model, combine=combine), indent=2))
            out.print(f"wrote {out_path}")

    defend_cmd.__name__ = f"defend_{name}"
    return defend_cmd


def evaluate(
    model: str = opt.model_option(help="The owner's model (the undefended row; a kind with a torch module)."),
    defense: list[str] | None = typer.Option(
        None, "--defense", "-d", help="Defense spec (repeatable): name[:key=value,...], e.g. "
                                      "rfd:layers=stage2,calibrate=0.02 ; unig ; rnd:calibrate=0.02 ; a JSON file "
                                      "from `defend --out`. Suffix @NAME to wrap an --extra-model."),
    extra_model: list[str] | None = typer.Option(
        None, "--extra-model", help="NAME=SPEC, e.g. at=runs/at (evaluated undefended too; any --model kind with "
                                    "a torch module)."),
    attacks: str = typer.Option("square,nes,signhunter,simba,bandits", "--attacks", help="Score attacks."),
    decision_attacks: str = typer.Option("rays,signflip", "--decision-attacks", help="Label-only attacks."),
    budgets: str = typer.Option("100,1000,2500", "--budgets", help="Query budgets per image."),
    eot: str = typer.Option("square", "--eot", help="Attacks also run with EOT on randomized defenses ('' = none)."),
    eot_m: int = opt.count_option(10, "--eot-m", help="EOT samples averaged per evaluation."),
    eot_budget: int | None = opt.count_option(
        None, "--eot-budget", help="Queries per image for the EOT runs (default the largest budget; "
        "m x budget gives the EOT attack as many iterations as the plain one)."),
    eps: float = typer.Option(0.1, "--eps", help="Attack radius (linf, pixel units), in (0, 1]."),
    n: int = opt.count_option(100, "--n", help="Test images attacked."),
    n_clean: int | None = opt.count_option(None, "--n-clean", help="Test images for clean accuracy and logit "
                                                                  "difference (default all)."),
    criterion: str = typer.Option(
        "fast_exp", "--criterion", help="fast_exp (RFD reference: re-check each claimed success with 9 re-queries, "
        "continue on a false alarm) | majority (re-check the final x_adv only) | single | fooled_once"),
    passes: int = opt.count_option(5, "--passes", help="Clean-accuracy passes (and calibration passes)."),
    dataset: str | None = opt.dataset_option(),
    data_dir: Path | None = opt.data_dir_option(),
    split_seed: int | None = opt.split_seed_option(),
    out_dir: Path = typer.Option(Path("runs/owner-eval"), "--out", help="Run directory (rows stream; resumable)."),
    budget: int | None = opt.budget_option(None, "Queries the attack runs of this invocation may spend in all "
                                                 "(clean-accuracy and calibration passes run the owner's own "
                                                 "model and are not charged); QueryBudgetExceeded beyond."),
    seed: int = opt.seed_option(),
    resume: bool = typer.Option(True, "--resume/--no-resume"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Robust accuracy of defenses under the attack suite (UniG Table 1 / RFD Table 2 layout)."""
    from ..attacks import ATTACKS
    from ..errors import InputError
    from ..evaluation.owner import EvalConfig, check_defense_specs, evaluate_specs
    from ..models import model_source
    from ..records import RunDir, render_report

    seed_everything(seed)
    names = {what: [a.strip() for a in text.split(",") if a.strip()]
             for what, text in (("--attacks", attacks), ("--decision-attacks", decision_attacks),
                                ("--eot", eot))}
    for what, listed in names.items():
        opt.check_names(listed, ATTACKS)
        for a in listed:
            if ATTACKS[a].requires:
                needs = ", ".join(ATTACKS[a].requires)
                raise InputError(f"{what}: attack {a!r} needs {needs}, which evaluate cannot give")
    if not names["--attacks"] and not names["--decision-attacks"]:
        raise InputError("give at least one attack (--attacks or --decision-attacks)")
    budget_list = opt.parse_int_list(budgets, "--budgets")
    opt.check_writable_dir(out_dir, "--out")
    module, meta, splits = _load(model, "evaluate", dataset, data_dir, split_seed)
    opt.check_radius(eps, "linf", tuple(meta["input_shape"]))
    opt.check_count(n, len(splits.test), "--n", "test images")
    if n_clean is not None:
        opt.check_count(n_clean, len(splits.test), "--n-clean", "test images")
    extras = {}
    for item in extra_model or []:
        key, eq, path = item.partition("=")
        if not eq:
            raise InputError(f"--extra-model expects NAME=CKPT, got {item!r}")
        extras[key] = model_source(path).module("evaluate --extra-model").module
    cfg = EvalConfig(attacks=tuple(names["--attacks"]), decision_attacks=tuple(names["--decision-attacks"]),
                     budgets=budget_list, eot=tuple(names["--eot"]), eot_m=eot_m, eot_budget=eot_budget,
                     eps=eps, criterion=criterion, clean_passes=passes, seed=seed)
    cfg.check()
    config = {"model": str(model), "defenses": list(defense or []), "extra": list(extra_model or []),
              "n_clean": n_clean,
              "eval": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()}, "n": n}
    # every spec (and its values) is checked before anything is written
    check_defense_specs(defense or [], {"": module, **extras}, (splits.owner_train.x, splits.owner_train.y), seed)
    run = RunDir(out_dir, kind="owner-eval", name="owner-side defenses", config=config, seeds={"eval": seed},
                 resume=resume)
    with progress_events(progress) as cb:
        res = evaluate_specs(run, module, defense or [], splits, cfg, n=n, n_clean=n_clean, extras=extras,
                             budget=budget, on_event=cb)
    t = res["tables"][0]
    out.print(t["title"])
    widths = [max(len(str(c)), 8) for c in t["columns"]]
    out.print("  ".join(str(c).ljust(w) for c, w in zip(t["columns"], widths, strict=True)))
    for row in t["rows"]:
        out.print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
    out.print(t["caption"])
    run.finish()
    md, _ = render_report(run.path)
    out.print(f"wrote {md}")
