"""``bbdefense paper NAME [--quick] [--out DIR] [--method M] [--ray [--address A]]``: reproduce one paper's tables
at this scale, the paper's figures beside ours (:mod:`bbdefense.experiments.papers`); ``bbdefense paper --list``
lists the suites. ``--ray`` shards the certification of the suites that certify onto Ray workers (same rows)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import options as opt
from .common import out, progress_events, seed_everything


def register(app: typer.Typer) -> None:
    app.command("paper")(paper)


def paper(
    name: str | None = typer.Argument(None, help="Suite: rfd, unig, ducd, zo-ae-ds or irs-net (see --list)."),
    list_: bool = typer.Option(False, "--list", help="List the suites (paper, tables reproduced, times) and exit."),
    quick: bool = typer.Option(False, "--quick", help="The fast version (a few minutes on 2 cores)."),
    out_dir: Path | None = typer.Option(None, "--out", help="Run directory (default runs/paper-NAME[-quick])."),
    cache: Path | None = typer.Option(None, "--cache", help="Trained models cache (default OUT/cache)."),
    seed: int = opt.seed_option(),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Keep the rows already on disk."),
    method: str | None = typer.Option(None, "--method", help="Certification method of the suites that certify "
                                      "(ducd, irs-net, zo-ae-ds): cohen (default) | sequential."),
    ray: bool = opt.ray_option("the suite's certification (ducd, irs-net, zo-ae-ds; images sharded into chunks)"),
    address: str | None = opt.address_option(),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Run a paper suite into a resumable run directory; its report puts the paper's figures beside ours."""
    import time

    from ..errors import InputError
    from ..experiments.papers import PAPERS, run_paper

    if list_:
        out.print("name | paper | tables reproduced | quick time | full time")
        for n in PAPERS:
            s = PAPERS[n]
            out.print(f"{n} | {s.citation} | {', '.join(s.tables)} | {s.quick_time or '-'} | {s.full_time or '-'}")
        return
    if name is None:
        raise InputError("paper: give a suite name (" + ", ".join(PAPERS) + ") or --list")
    suite = PAPERS[name]  # an unknown name raises UnknownNameError listing the suites, before anything is written
    if (ray or method is not None) and not suite.certifies:
        raise InputError(f"paper {name}: --ray and --method apply to the suites that certify ("
                         f"{', '.join(n for n in PAPERS if PAPERS[n].certifies)}); {name} does not")
    meth = None if method is None else opt.narrow_choice(method, ("cohen", "sequential"), "--method")
    path = out_dir or Path("runs") / f"paper-{name}{'-quick' if quick else ''}"
    opt.check_writable_dir(path, "--out")
    opt.check_ray(ray, address)  # Ray installed and the cluster answering, before any work
    shard = None
    if ray:
        from ..evaluation.distributed import RayOptions

        shard = RayOptions(address=address)
    seed_everything(seed)
    t0 = time.perf_counter()
    with progress_events(progress) as cb:
        run = run_paper(name, path, quick=quick, seed=seed, cache_dir=cache, resume=resume, on_event=cb, ray=shard,
                        method=meth)
    out.print(f"paper {name}{' (quick)' if quick else ''}: finished in {time.perf_counter() - t0:.1f}s; "
              f"wrote {run.path / 'report.md'} and {run.path / 'report.html'}")
