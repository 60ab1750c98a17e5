"""``bbdefense defend ducd``: DUCD end to end through the :class:`~bbdefense.certified.DUCD` estimator:
distil under a budget (once; the transfer set is saved for resume), noise fine-tuning per (noise, sigma),
each fitted defense saved under ``<run>/defense/<noise>_<sigma>/``, Algorithm 3 certification for
l1/l2/linf through ``DUCD.certify`` (queries on the surrogate only). ``--load DIR`` certifies a saved
defense without touching the target. The WUCD and Cohen RS baselines of Table IV are in
``bbdefense paper ducd``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from . import options as opt
from .common import RunOptions, defend_app, out, progress_events, seed_everything, with_option_groups

CHUNK = 10  # images certified per call between row writes (seeds are per image index: chunking changes nothing)


def register(app: typer.Typer) -> None:
    defend_app.command("ducd")(ducd_cmd)


def _floats(s: str, what: str) -> tuple[float, ...]:
    from ..errors import InputError

    try:
        v = tuple(float(t) for t in s.split(",") if t.strip())
    except ValueError as exc:
        raise InputError(f"{what} must be comma-separated numbers, got {s!r}") from exc
    if not v or any(x <= 0 for x in v):
        raise InputError(f"{what} must be positive numbers, got {s!r}")
    return v


@with_option_groups
def ducd_cmd(
    target: str | None = opt.model_option("--target", default=None, help="The target (--target: deprecated alias); "
                                      "not needed with --load."),
    load: Path | None = typer.Option(None, "--load", help="A saved DUCD defense dir: certify it, no distillation."),
    budget: int = opt.budget_option(200_000, "Hard query budget of the distillation."),
    surrogate: str = typer.Option("smallcnn", "--surrogate", help="Zoo classifier used as the surrogate."),
    dataset: str = opt.dataset_option("mnist5k"),
    data_dir: Path | None = opt.data_dir_option(),
    split_seed: int | None = opt.split_seed_option(),
    split: str = typer.Option("defender", "--split",
                              help="Distillation data: owner_train | defender | defender_shifted."),
    output: str = opt.output_option("logits", help="What the API reveals: logits | probs | label."),
    backend: str = opt.backend_option(),
    epochs: int = opt.count_option(20, "--epochs", help="Distillation epochs over the cached transfer set."),
    norms: str = typer.Option("l1,l2,linf", "--norms"),
    sigmas: str = typer.Option("0.25,0.5", "--sigmas", help="Noise std per coordinate (pixel space)."),
    l1_noise: str = typer.Option("laplace", "--l1-noise", help="Noise for l1 (Table IV: laplace)."),
    l2_noise: str = typer.Option("gaussian", "--l2-noise", help="Noise for l2 and linf (Table IV: gaussian)."),
    beta: float | None = opt.positive_option(None, "--beta", help="Shape when a noise is gen_gaussian."),
    n_images: int = opt.count_option(100, "-n", "--n-images", help="Test images to certify."),
    n0: int = opt.count_option(100, "--n0"),
    n: int = opt.count_option(1000, "--n", help="Monte-Carlo samples for the bound (paper: 4000)."),
    alpha: float = opt.fraction_option(0.001, "--alpha"),
    zeta: float = typer.Option(1.0, "--zeta", help="Algorithm 3 abstain threshold."),
    iota: float = typer.Option(0.5, "--iota", help="Algorithm 3 certification threshold."),
    finetune_epochs: int = typer.Option(3, "--finetune-epochs"),
    api_key: str | None = opt.api_key_option(),
    out_dir: Path = typer.Option(Path("runs/ducd"), "--out"),
    *,
    run_opts: RunOptions,
) -> None:
    """DUCD: certify a black-box target through a distilled, noise-fine-tuned surrogate (l1/l2/linf)."""
    from ..certified import DUCD
    from ..certified.ducd import TransferSet
    from ..certified.ducd.evaluate import evaluate_surrogate, target_eval_note
    from ..certified.ducd.session import planned_transfer
    from ..certify.noises import NORMS
    from ..errors import CheckpointError, InputError
    from ..records import RunDir, render_report, table
    from .cmd_distill import open_target

    seed_everything(run_opts.seed)
    norm_t = tuple(t for t in norms.split(",") if t)
    for t in norm_t:
        if t not in NORMS:
            raise InputError(f"unknown norm {t!r}; choose from {', '.join(NORMS)}")
    sig = _floats(sigmas, "--sigmas")
    if beta is None and "gen_gaussian" in (l1_noise, l2_noise):
        raise InputError("a gen_gaussian noise needs its shape: give --beta")
    if split not in ("owner_train", "defender", "defender_shifted"):
        raise InputError(f"--split must be owner_train, defender or defender_shifted, got {split!r}")
    if (target is None) == (load is None):
        raise InputError("give either --model/--target (distil and fit) or --load DIR (a saved DUCD defense)")
    opt.check_writable_dir(out_dir, "--out")
    loaded = DUCD.load(load) if load is not None else None
    meta = ({"train": {"split_seed": loaded.split_seed_}} if loaded is not None and loaded.split_seed_ is not None
            else opt.checkpoint_meta(target))
    dataset, splits, split_seed = opt.resolve_splits(dataset, data_dir, meta=meta, split_seed=split_seed,
                                                 what=f"defense {load}" if load else f"target {target}")
    test = splits.test
    opt.check_count(n_images, len(test), "-n", f"test images of {dataset}")
    noises = {(l1_noise if k == "l1" else l2_noise) for k in norm_t}
    plan = ([(loaded.noise, loaded.sigma)] if loaded is not None else [(nz, s) for nz in sorted(noises) for s in sig])
    config = {"target": target, "load": str(load) if load else None, "surrogate": surrogate, "dataset": dataset,
              "split_seed": split_seed, "split": split, "output": output, "budget": budget, "epochs": epochs,
              "norms": list(norm_t), "plan": [list(p) for p in plan], "n_images": n_images, "n0": n0, "n": n,
              "alpha": alpha, "zeta": zeta, "iota": iota, "finetune_epochs": finetune_epochs}
    run = RunDir(out_dir, kind="ducd", name=f"DUCD on {Path(str(target or load)).name}", config=config,
                 seeds={"ducd": run_opts.seed}, resume=run_opts.resume)
    section = "DUCD certified defense (Table IV)"
    summary: dict[str, Any] = {}
    defenses: dict[tuple[str, float], DUCD] = {}
    with progress_events(run_opts.progress) as cb:
        if loaded is not None:
            defenses[plan[0]] = loaded
            summary["distill_queries"] = loaded.transfer_size_
            summary["target_queries_total"] = 0
        else:
            assert target is not None  # checked above: exactly one of --target / --load
            bb = open_target(target, output=output, budget=budget, api_key=api_key, backend=backend)
            n_eval = bb.audit_allowance(len(test))  # a remote target: 0 (its evaluation would be charged)
            bb.check_plan(planned_transfer(out_dir, run_opts.resume, budget, len(splits[split])), n_eval,
                          what="defend ducd")
            tpath = run.path / "transfer"
            transfer = None
            if run_opts.resume and tpath.with_suffix(".safetensors").is_file():
                try:
                    transfer = TransferSet.load(tpath)
                except CheckpointError:
                    transfer = None
            first: DUCD | None = None
            for nz, s in plan:
                est = DUCD(budget=budget, surrogate=surrogate, epochs=epochs, noise=nz, sigma=s,
                           noise_params={"beta": beta} if nz == "gen_gaussian" else None,
                           finetune_epochs=finetune_epochs, zeta=zeta, iota=iota, seed=run_opts.seed)
                est.fit(bb, splits[split], on_event=cb, split_seed=split_seed, transfer=transfer,
                        surrogate=None if first is None else first.surrogate_)
                if transfer is None:
                    transfer = est.transfer_
                    transfer.save(tpath)  # type: ignore[union-attr]
                first = first or est
                est.save(run.path / "defense" / f"{nz}_{s:g}")
                defenses[(nz, s)] = est
            q_after = bb.stats.queries
            assert first is not None and transfer is not None
            met = evaluate_surrogate(bb, first.surrogate_, test, queries=len(transfer))  # type: ignore[arg-type]
            run.add_table({**table("Surrogate (Tables I-II)", ["target acc", "surrogate acc", "ratio %", "fidelity",
                                                               "distillation queries"],
                                   [[met.target_accuracy, met.surrogate_accuracy,
                                     None if met.ratio is None else 100 * met.ratio, met.fidelity, len(transfer)]],
                                   target_eval_note(met)), "section": section})
            summary.update({"distill_queries": len(transfer), "surrogate_accuracy": met.surrogate_accuracy,
                            "target_accuracy": met.target_accuracy, "ratio": met.ratio, "fidelity": met.fidelity})
        rows = {key: _certify_rows(run, f"cert_DUCD_{key[0]}_{key[1]}", est, test, n_images,
                                   {"n0": n0, "n": n, "alpha": alpha, "seed": run_opts.seed}, cb)
                for key, est in defenses.items()}
        if loaded is None:
            summary["target_queries_total"] = bb.stats.queries - q_after
    summary.update(_tables(run, rows, norm_t, {"l1": l1_noise, "l2": l2_noise, "linf": l2_noise}, test, section,
                           f"{n_images} test images, n0={n0}, n={n}, alpha={alpha}, zeta={zeta}, iota={iota}; "
                           f"{n_images * (n0 + n)} noisy queries per (noise, sigma), made on the surrogate (0 on "
                           "the target)"))
    run.set_metrics(**{f"ducd.{k}": v for k, v in summary.items()})
    run.finish()
    md, _h = render_report(run.path)
    vs = ("target not measured" if summary.get("ratio") is None else
          f"ratio {100 * summary['ratio']:.2f}% fidelity {summary['fidelity']:.4f}")
    out.print(f"surrogate {vs} with {summary['distill_queries']} target queries")
    for k in sorted(k for k in summary if k.endswith(".score")):
        out.print(f"{k:24s} {summary[k]:.4f}")
    out.print(f"wrote {md}")


def _certify_rows(run: Any, name: str, est: Any, test: Any, m: int, cohen: dict[str, Any],
                  cb: Any) -> list[dict[str, Any]]:
    """Certify the first ``m`` test images with ``est.certify`` (per-image seeds by index), streaming rows."""
    from ..records import read_rows

    writer = run.rows(name)
    todo = [i for i in range(m) if i not in writer.done]
    for j in range(0, len(todo), CHUNK):
        idx = todo[j:j + CHUNK]
        certs = est.certify(test.x[idx], indices=idx, batch_size=1000, on_event=cb, **cohen)
        for i, c in zip(idx, certs, strict=True):
            writer.write({"idx": i, "y": int(test.y[i]), "label": int(c.label), "pA_lower": float(c.pA_lower),
                          "radius": {k: float(v) for k, v in c.radius.items()}, "abstain": bool(c.abstain),
                          "approximate": bool(c.approximate), "queries": c.n0 + c.n})
    writer.close()
    return [r for r in read_rows(run.path / "rows" / f"{name}.jsonl") if r["idx"] < m]


def _tables(run: Any, rows: dict[tuple[str, float], list[dict[str, Any]]], norms: tuple[str, ...],
            noise_for: dict[str, str], test: Any, section: str, note: str) -> dict[str, Any]:
    """Table IV layout for DUCD: per norm, certified accuracy (envelope over sigma) on the radius grid + score."""
    import numpy as np

    from ..experiments.papers.ducd import certified_accuracy, default_radii, robust_score
    from ..records import line_plot, table

    d = int(np.prod(test.input_shape))
    summary: dict[str, Any] = {}
    for norm in norms:
        nz = noise_for[norm]
        grid = [0.0, *default_radii(norm, d)]
        curves = [certified_accuracy(r, norm, grid) for (k, _s), r in sorted(rows.items()) if k == nz]
        if not curves:  # a loaded defense with another noise than this norm's: its own noise certifies it
            curves = [certified_accuracy(r, norm, grid) for r in rows.values()]
        env = np.max(np.array(curves), axis=0).tolist()
        score = robust_score(env, grid)
        summary.update({f"DUCD.{norm}.{r:g}": v for r, v in zip(grid, env, strict=True)})
        summary[f"DUCD.{norm}.score"] = score
        sig = sorted({s for (k, s) in rows if k == nz} or {s for _k, s in rows})
        run.add_table({**table(f"Certified accuracy, {norm} ({nz} noise, envelope over sigma {sig})",
                               ["method", *[f"{r:g}" for r in grid], "score"], [["DUCD", *env, score]],
                               f"{note}; score = area on [0, {grid[-1]:g}]"), "section": section})
        run.add_plot({**line_plot(f"Certified accuracy vs {norm} radius", [{"label": "DUCD", "x": grid, "y": env}],
                                  xlabel=f"{norm} radius", ylabel="certified accuracy"), "section": section})
    return summary
