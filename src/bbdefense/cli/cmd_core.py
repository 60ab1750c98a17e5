"""Core commands: info, train, export-onnx, report, demo."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from . import options as opt
from .common import console, out, parse_options, progress_events, seed_everything


def register(app: typer.Typer) -> None:
    app.command("info")(info)
    app.command("train")(train)
    app.command("export-onnx")(export_onnx_cmd)
    app.command("predict")(predict)
    app.command("report")(report)
    app.command("demo")(demo)


def info(model: str | None = opt.model_option(default=None, help="Describe it (a checkpoint: its metadata)."),
         api_key: str | None = opt.api_key_option()) -> None:
    """Show versions, registries (architectures, datasets...), or a model's description."""
    from ..data import DATASETS
    from ..models import MODELS
    from ..models.resolve import describe_model
    from ..utils import environment

    if model is not None:
        out.print_json(json.dumps(describe_model(model, api_key=api_key), default=str))
        return
    for k, v in environment().items():
        out.print(f"{k:14s} {v}")
    out.print("architectures  " + ", ".join(f"{n} ({MODELS[n].kind})" for n in MODELS))
    out.print("datasets       " + ", ".join(DATASETS))
    for mod, attr, label in (("bbdefense.attacks", "ATTACKS", "attacks"),
                             ("bbdefense.defenses", "DEFENSES", "defenses"), ("bbdefense.certify", "NOISES", "noises")):
        try:
            reg = getattr(__import__(mod, fromlist=[attr]), attr)
            out.print(f"{label:14s} " + ", ".join(reg))
        except (ImportError, AttributeError):
            pass


def train(
    arch: str = typer.Option(..., "--arch", help="Zoo architecture, e.g. smallcnn, resnet18."),
    dataset: str = typer.Option(..., "--dataset", help="mnist5k, digits (embedded) or a local dataset."),
    out_path: Path = typer.Option(Path("runs/model"), "--out",
                                  help="Checkpoint path (writes OUT.safetensors + OUT.json)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Directory of a local dataset."),
    data_option: list[str] | None = typer.Option(None, "--data-option",
                                                    help="Loader option KEY=VALUE (repeatable), e.g. image_size=64."),
    mode: str = typer.Option("plain", "--mode", help="plain | gaussian | pgd (and modes other parts add)."),
    epochs: int = opt.count_option(6, "--epochs"),
    batch_size: int = opt.count_option(64, "--batch-size"),
    lr: float = opt.positive_option(1e-3, "--lr"),
    optimizer: str = typer.Option("adam", "--optimizer", help="adam | sgd"),
    sigma: float = opt.positive_option(0.25, "--sigma",
                                   help="Noise std for --mode gaussian/noise (pixel space)."),
    eps: float = opt.positive_option(0.1, "--eps", help="linf radius for --mode pgd, in (0, 1]."),
    pgd_steps: int = opt.count_option(7, "--pgd-steps"),
    noise: str | None = typer.Option(None, "--noise", help="Noise family for --mode noise."),
    beta: float | None = opt.positive_option(None, "--beta",
                                            help="Shape of the generalized Gaussian for --mode noise."),
    split: str = typer.Option("owner_train", "--split", help="owner_train | defender | defender_shifted | test"),
    split_seed: int = opt.split_seed_option(0, help="Seed of the owner/defender/test split (recorded; every command "
                                                "that evaluates the checkpoint uses it)."),
    seed: int = opt.seed_option(),
    device: str = typer.Option("auto", "--device"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train a zoo classifier and write a checkpoint (safetensors + JSON metadata)."""
    from ..data import DATASETS
    from ..errors import InputError
    from ..models.checkpoint import checkpoint_paths
    from ..models.zoo import MODELS
    from ..training import TrainConfig, train_target
    from ..utils import resolve_device
    seed_everything(seed)
    MODELS[arch], DATASETS[dataset]  # unknown names: refused before anything loads
    params = {} if beta is None else {"beta": beta}
    cfg = TrainConfig(mode=mode, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, sigma=sigma, eps=eps,
                      pgd_steps=pgd_steps, noise=noise, noise_params=params, seed=seed)
    cfg.check()
    if mode == "pgd":
        opt.check_radius(eps, "linf", (1,))
    if split not in ("owner_train", "defender", "defender_shifted", "test"):
        raise InputError(f"--split must be owner_train, defender, defender_shifted or test, got {split!r}")
    for p in checkpoint_paths(out_path):  # the checkpoint's folder is writable: checked before training
        opt.check_output_file(p, "--out")
    with progress_events(progress) as cb:
        path, meta = train_target(arch, dataset, out_path, cfg, data_dir=data_dir, split=split, split_seed=split_seed,
                                  device=resolve_device(device), data_options=parse_options(data_option), on_event=cb)
    m = meta["metrics"]
    out.print(f"wrote {path}  test accuracy {m['test_accuracy']:.4f}  ({m['n_train']} train images, "
              f"{m['train_seconds']:.1f}s)")


def export_onnx_cmd(
    model: str = opt.model_option(help="Export kinds: checkpoint, factory."),
    out_path: Path | None = typer.Option(None, "--out", help="ONNX file (default: next to the checkpoint)."),
    check: bool = typer.Option(True, "--check/--no-check", help="Compare torch and onnxruntime outputs."),
) -> None:
    """Export a checkpoint (or a factory's module) to ONNX (dynamic batch) and check it against torch (max
    |diff| <= 1e-5)."""
    from ..errors import InputError
    from ..models.checkpoint import checkpoint_paths
    from ..models.loading import export_checked
    from ..models.resolve import model_source

    src = model_source(model)
    if out_path is None and src.kind != "checkpoint":
        raise InputError(f"give --out for {model} (the default is next to a checkpoint)")
    target = out_path or checkpoint_paths(model)[0].with_suffix(".onnx")
    opt.check_output_file(target, "--out")
    module, meta = src.module("export-onnx", accepts=("checkpoint", "factory"))
    diff = export_checked(module, target, tuple(meta["input_shape"]), check=check)
    out.print(f"wrote {target}" + ("" if diff is None else f"  (max |torch - onnx| = {diff:.2e})"))


def load_images(path: Path) -> torch.Tensor:  # type: ignore[name-defined]  # noqa: F821
    """Images from a .npy or .npz file (``x`` array): ``(N, C, H, W)`` float in [0, 1] or uint8 0..255.

    Never unpickles (``allow_pickle=False``).
    """
    import numpy as np
    import torch

    from ..errors import DataError

    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    try:
        obj = np.load(path, allow_pickle=False)
        arr = obj["x"] if isinstance(obj, np.lib.npyio.NpzFile) else obj
    except (ValueError, OSError, KeyError) as exc:
        raise DataError(f"cannot read images from {path} (a .npy array or an .npz with 'x'): {exc}") from exc
    if arr.ndim != 4 or arr.shape[0] == 0:
        raise DataError(f"{path}: expected a non-empty batch of images (N, C, H, W) with N >= 1, got shape "
                        f"{tuple(arr.shape)}")
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif arr.dtype.kind == "f":
        arr = arr.astype(np.float32)
    else:
        raise DataError(f"{path}: expected uint8 or float images, got dtype {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr))


def predict(
    model: str = opt.model_option(),
    input_path: Path = typer.Option(..., "--input", help=".npy or .npz (array 'x') of (N, C, H, W) images in [0, 1]."),
    output: str = opt.output_option("label", help="label | probs | logits"),
    top_k: int | None = opt.count_option(None, "--top-k",
                                        help="With --output probs, reveal only the k largest."),
    backend: str = opt.backend_option(),
    api_key: str | None = opt.api_key_option(),
    budget: int | None = opt.budget_option(None, "Hard limit on the images queried (default: none)."),
) -> None:
    """Query a model as a black box on images from a file; prints one JSON line per image."""
    from ..models import load_blackbox

    bb = load_blackbox(model, backend=opt.narrow_choice(backend, opt.BACKENDS, "--backend"),
                       output=opt.narrow_choice(output, opt.OUTPUTS, "--output"), top_k=top_k, api_key=api_key,
                       budget=budget)
    res = bb(load_images(input_path))
    for i, r in enumerate(res.tolist()):
        out.print(json.dumps({"idx": i, output: r}), soft_wrap=True)
    console.print(f"{bb.stats.queries} queries", markup=False)


def report(run_dir: Path = typer.Argument(..., help="A run directory holding record.json.")) -> None:
    """Render report.md and report.html from a run directory's records."""
    from ..records import render_report

    md, html = render_report(run_dir)
    out.print(f"wrote {md} and {html}")


def demo(
    out_dir: Path = typer.Option(Path("runs/demo"), "--out", help="Run directory."),
    quick: bool = typer.Option(False, "--quick", help="The fast subset (under 3 minutes on 2 cores)."),
    only: list[str] | None = typer.Option(None, "--only", help="Run only these slices (repeatable)."),
    seed: int = opt.seed_option(),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Resume after the last finished slice."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """The main job: train (or reuse) the MNIST-5k target, run every defense/attack slice, write the report."""
    import time

    from ..experiments.demo import run_demo

    seed_everything(seed)
    opt.check_writable_dir(out_dir, "--out")
    t0 = time.perf_counter()
    with progress_events(progress) as cb:
        run = run_demo(out_dir, quick=quick, seed=seed, only=only, resume=resume, on_event=cb)
    m = run.record.metrics
    out.print(f"demo finished in {time.perf_counter() - t0:.1f}s; target test accuracy "
              f"{m.get('target_test_accuracy', float('nan')):.4f}")
    out.print(f"wrote {run.path / 'report.md'} and {run.path / 'report.html'}")
