"""``bbdefense run CONFIG.yaml``: a config-driven experiment (SPEC §7) with resume, records and a report;
``bbdefense check-config CONFIG.yaml`` validates a file without running it."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import out, progress_events, seed_everything
from .options import check_writable_dir, count_option


def register(app: typer.Typer) -> None:
    app.command("run")(run_config)
    app.command("check-config")(check_config)


def run_config(
    config: Path | None = typer.Argument(None, help="Experiment YAML (see configs/ and docs/experiments.md)."),
    example: str | None = typer.Option(None, "--example", help="Run a packaged example config instead of a "
                                                               "file: quick, certify_sigmas, owner_defenses."),
    out_dir: Path | None = typer.Option(None, "--out", help="Run directory (default runs/<config name>)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Keep rows already on disk."),
    workers: int = count_option(1, "--workers", help="Run the (model, attack) pairs in this many processes."),
    ray: bool = typer.Option(False, "--ray", help="Run the (model, attack) pairs as Ray tasks (pip install "
                                                  "'bbdefense[ray]'; RAY_ADDRESS picks a cluster)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Run an experiment file: target, defenses, attacks, certification, privacy; write rows and a report."""
    import time

    from ..experiments.config import load_config
    from ..experiments.packaged import example_path
    from ..experiments.runner import run_experiment
    from ..records import load_record

    if (config is None) == (example is None):
        raise typer.BadParameter("give a config file or --example NAME (one of them)")
    # the schema; run_experiment runs check_runnable before it writes anything
    cfg = load_config(config if config is not None else example_path(str(example)))
    path = out_dir or Path("runs") / cfg.name
    check_writable_dir(path, "--out")
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    with progress_events(progress) as cb:
        md = run_experiment(cfg, path, resume=resume, workers=workers, use_ray=ray, on_event=cb)
    rec = load_record(path)
    failed = [c["name"] for c in rec.checks if not c["passed"]]
    out.print(f"{cfg.name}: finished in {time.perf_counter() - t0:.1f}s; wrote {md} and {md.with_suffix('.html')}"
              + (f"; checks failed: {', '.join(failed)}" if failed else ""))


def check_config(config: Path = typer.Argument(..., help="Experiment YAML.")) -> None:
    """Validate an experiment file as `run` would (unknown keys and names, values, the data, the target's
    architecture, every defense and attack) and print what it would run; nothing is written or trained."""
    from ..experiments.config import load_config
    from ..experiments.preflight import check_runnable

    cfg = load_config(config)
    check_runnable(cfg, source=config.name)
    out.print(f"{config.name}: valid. target {cfg.target.checkpoint or cfg.target.arch}; "
              f"{len(cfg.defenses)} defense(s), {len(cfg.attacks)} attack(s), {len(cfg.certify)} certification(s), "
              f"privacy {'on' if cfg.privacy is not None else 'off'}")
