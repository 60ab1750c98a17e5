"""``bbdefense steal``: KnockoffNets model stealing of a checkpoint seen as a black box."""

from __future__ import annotations

from pathlib import Path

import typer

from . import options as opt
from .common import out, progress_events, seed_everything


def register(app: typer.Typer) -> None:
    app.command("steal")(steal)


def steal(
    model: str = opt.model_option(help="The victim (queried as a black box)."),
    out_path: Path = typer.Option(Path("runs/stolen"), "--out",
                                  help="Checkpoint of the stolen model (OUT.safetensors + OUT.json)."),
    arch: str = typer.Option("lenet", "--arch", help="Zoo architecture of the knockoff."),
    budget: int = opt.budget_option(1000, "Victim queries (exact)."),
    strategy: str = typer.Option("random", "--strategy", help="random | adaptive (gradient bandit over classes)."),
    reward: str = typer.Option("all", "--reward", help="Adaptive reward: cert | div | loss | all."),
    output: str = opt.output_option("probs", help="What the victim reveals: probs | logits | label."),
    backend: str = opt.backend_option(),
    api_key: str | None = opt.api_key_option(),
    dataset: str = opt.dataset_option("mnist5k", help="Dataset providing the transfer and evaluation splits."),
    data_dir: Path | None = opt.data_dir_option(),
    split_seed: int | None = opt.split_seed_option(),
    transfer_split: str = typer.Option("defender", "--transfer-split", help="Split used as the transfer set."),
    eval_split: str = typer.Option("test", "--eval-split", help="Split for agreement/accuracy (audit queries)."),
    epochs: int = opt.count_option(10, "--epochs"),
    seed: int = opt.seed_option(),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Steal a model with KnockoffNets (Orekondy et al. 2019) and save it as a checkpoint."""
    from ..attacks.knockoff import knockoff_steal
    from ..models import model_source
    from ..models.checkpoint import checkpoint_paths

    seed_everything(seed)
    for p in checkpoint_paths(out_path):
        opt.check_output_file(p, "--out")
    src = model_source(model)
    dataset, splits, split_seed = opt.resolve_splits(dataset, data_dir, meta=src.meta(), split_seed=split_seed,
                                                 what=f"victim {model}")
    splits[transfer_split], splits[eval_split]  # unknown split names are refused here
    victim = src.blackbox(output=opt.narrow_choice(output, opt.OUTPUTS, "--output"), budget=budget,
                          backend=opt.narrow_choice(backend, opt.BACKENDS, "--backend"), api_key=api_key)
    with progress_events(progress) as cb:
        # typer gives str; knockoff_steal checks strategy and reward, raising an InputError that names them
        res = knockoff_steal(victim, splits[transfer_split], arch=arch, budget=budget,
                             strategy=strategy, reward=reward,  # type: ignore[arg-type]
                             epochs=epochs, eval_set=splits[eval_split], seed=seed, on_event=cb)
    path = res.save(out_path, dataset=dataset)
    f4 = lambda v: "not measured" if v is None else f"{v:.4f}"  # noqa: E731  (None: a remote victim's eval budget)
    out.print(f"wrote {path}  victim queries {res.queries}  agreement {f4(res.agreement)}  "
              f"accuracy {f4(res.accuracy)} (victim {f4(res.victim_accuracy)}) on {eval_split}  "
              f"({res.seconds:.1f}s)")
