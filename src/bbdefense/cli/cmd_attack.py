"""``bbdefense attack``: run one attack of the registry on a checkpoint's test images and write
records (one row per image, resumable) and a report (robust accuracy, median queries of
successes, robust accuracy vs queries)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from . import options as opt
from .common import out, progress_events, seed_everything


def register(app: typer.Typer) -> None:
    app.command("attack")(attack)


def parse_eps(text: str) -> float:
    """``"0.1"`` or ``"8/255"`` -> float (> 0)."""
    from ..errors import InputError

    try:
        if "/" in text:
            a, b = text.split("/", 1)
            val = float(a) / float(b)
        else:
            val = float(text)
    except (ValueError, ZeroDivisionError) as exc:
        raise InputError(f"--eps must be a number or a fraction like 8/255, got {text!r}") from exc
    if not val > 0:
        raise InputError(f"--eps must be > 0, got {text!r}")
    return val


def parse_params(items: list[str] | None) -> dict[str, object]:
    """``["q=20", "basis=pixel"]`` -> ``{"q": 20, "basis": "pixel"}`` (values read as JSON when they parse)."""
    from ..errors import InputError

    params: dict[str, object] = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"--param expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            params[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            params[k.strip()] = v
    return params


def attack(
    model: str = opt.model_option(help="White-box attacks need a kind with a torch module."),
    attack_name: str = typer.Option("square", "--attack", help="A name of the attack registry (bbdefense info)."),
    norm: str = typer.Option("linf", "--norm", help="linf | l2 (where the attack supports it)."),
    eps: str = typer.Option("0.1", "--eps", help="Radius in [0, 1] pixel scale; fractions like 8/255 work."),
    max_queries: int = opt.count_option(1000, "--max-queries",
                                        help="Per-image query budget of the attack (its max_queries)."),
    budget: int | None = opt.budget_option(None, "Hard limit on the queries this run spends in all, as on every "
                                                 "command (default: none; --max-queries bounds each image)."),
    n: int = opt.count_option(100, "-n", "--n", help="Attack the first N correctly classified test images."),
    backend: str = opt.backend_option(),
    api_key: str | None = opt.api_key_option(),
    output: str | None = opt.output_option(),
    out_dir: Path | None = typer.Option(None, "--out", help="Run directory (default runs/attack-NAME-NORM)."),
    targeted: bool = typer.Option(False, "--targeted", help="Random target class != label per image (seeded); "
                                  "attacks that take starting points (hsja, signflip) start from a test image of the "
                                  "target class."),
    criterion: str | None = typer.Option(None, "--criterion",
                                         help="single | majority | fooled_once (randomized models)."),
    eot: int = opt.count_option(1, "--eot", help="Average M queries per evaluation (EOTBlackBox; charges M)."),
    param: list[str] | None = typer.Option(None, "--param", help="Extra attack hyperparameter KEY=VALUE (repeatable)."),
    dataset: str | None = opt.dataset_option(),
    data_dir: Path | None = opt.data_dir_option(),
    split_seed: int | None = opt.split_seed_option(),
    batch_size: int = opt.count_option(100, "--batch-size", help="Images attacked together (a resource knob)."),
    seed: int = opt.seed_option(),
    resume: bool = typer.Option(True, "--resume/--no-resume"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Attack a model through its query-counted black box; write rows, record and report."""
    from ..errors import InputError
    from ..evaluation.attacks import attack_inputs, build_attack, evaluate_attack, first_correct
    from ..evaluation.report import add_attack_run
    from ..models import model_source
    from ..records import RunDir, render_report

    seed_everything(seed)
    eps_v = parse_eps(eps)
    params = parse_params(param)
    if criterion is not None:
        params["criterion"] = criterion
    atk = build_attack(attack_name, norm=norm, eps=eps_v, max_queries=max_queries, seed=seed, params=params)
    run_path = out_dir or Path("runs") / f"attack-{atk.name}-{norm}"
    opt.check_writable_dir(run_path, "--out")
    src = model_source(model)
    bb = (src.whitebox(f"attack --attack {atk.name}", budget=budget) if atk.access == "white" else
          src.blackbox(backend=opt.narrow_choice(backend, opt.BACKENDS, "--backend"),
                       output=opt.narrow_optional(output, opt.OUTPUTS, "--output"), api_key=api_key, budget=budget))
    output = bb.output
    got = atk.get_params()
    if got.get("eps") is not None and "norm" in got:
        opt.check_radius(got["eps"], str(got["norm"]), bb.input_shape)
    if eot > 1:
        from ..attacks.eot import EOTBlackBox

        bb = EOTBlackBox(bb, m=eot)
    opt.preflight_attack(atk, bb)  # the attack's own checks (norm, criterion, params), no query
    dataset, splits, split_seed = opt.resolve_splits(dataset, data_dir, meta=src.meta(),
                                                 split_seed=split_seed, what=f"model {model}")
    test = splits.test
    opt.check_count(n, len(test), "-n", f"test images of {dataset}")
    sel, scanned, correct = first_correct(bb, test.x, test.y, n)
    if len(sel) == 0:
        raise InputError("the model classifies no test image correctly; nothing to attack")
    if len(sel) < n:
        raise InputError(f"-n {n}: the model classifies only {len(sel)} of the {len(test)} test images of "
                         f"{dataset} correctly; give -n {len(sel)} or fewer")
    inp = attack_inputs(test.x, test.y, sel, targeted=targeted, num_classes=bb.num_classes, seed=seed,
                        takes_init=atk.takes_init)
    config = {"model": str(model), "backend": backend, "output": output, "dataset": dataset,
              "split_seed": split_seed, "n": n,
              "attack": atk.name, "params": atk.get_params(), "targeted": targeted, "eot": eot,
              "batch_size": batch_size}
    run = RunDir(run_path, kind="attack", name=f"{atk.name} attack on {src.name}", config=config,
                 seeds={"attack": seed}, resume=resume)
    t0 = time.perf_counter()
    with run.rows("attack") as writer, run.rows("batches") as bwriter, progress_events(progress) as cb:
        ev = evaluate_attack(bb, atk, inp.x, inp.y, inp.index, budget=max_queries, target=inp.target, x_init=inp.x_init,
                             batch_size=batch_size, writer=writer, batch_writer=bwriter, on_event=cb)
    add_attack_run(run, ev, label=f"{atk.name} {norm} eps={eps_v:g}", section="Attack", text=(
        f"{atk.name} ({norm}, eps={eps_v:g}, budget {max_queries} queries/image{', targeted' if targeted else ''}) on "
        f"the first {len(ev.rows)} correctly classified test images of {dataset} ({correct} of the first {scanned} "
        f"test images are correct; the clean check uses audit queries, "
        f"{'charged by the remote API' if bb.audit_charged else 'free on a local model'}). Robust accuracy is over the "
        "attacked (correctly classified) images."), clean_accuracy_scanned=correct / max(scanned, 1),
        wall_seconds=round(time.perf_counter() - t0, 3))
    run.finish()
    md, _ = render_report(run.path)
    summary = ev.summary
    med = summary["median_queries_success"]
    lo, hi = summary["robust_accuracy_ci"]
    out.print(f"{atk.name} {norm} eps={eps_v:g}: robust accuracy {summary['robust_accuracy']:.3f} "
              f"[95% CI {lo:.3f}, {hi:.3f}] on {len(ev.rows)} images, success {summary['attack_success_rate']:.3f}, "
              f"median queries of successes {'-' if med is None else f'{med:g}'}, total queries "
              f"{summary['total_queries']}")
    out.print(f"wrote {md}")
