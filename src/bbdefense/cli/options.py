"""The CLI's option layer: option factories that carry their bounds (refused by the parser, exit code 2,
before the command runs) and the checks a command runs first, before any work or any file is written.

A command validates everything it can in this order: its options' bounds (here, at parse time), then
the checks that need a name or a file (registries, checkpoints, datasets, folders, ports), then the
checks that need the model (an attack's hyperparameters against the model's input shape); only then
does it open its run directory (``record.json``) and start. Each refusal is a typed
:class:`~bbdefense.errors.BBDefenseError` naming the bad value, which :func:`bbdefense.cli.main` turns
into one line on stderr and exit code 2.
"""

from __future__ import annotations

import math
import socket
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from ..errors import InputError

# the checks an experiment config shares with the CLI
from ..experiments.preflight import check_radius, preflight_attack, radius_bound
from ..utils import SEED_MAX

if TYPE_CHECKING:
    from ..models.backends import OutputMode
    from ..models.resolve import BackendName


# ---------------------------------------------------------------- choices typed as their Literal

C = TypeVar("C", bound=str)

#: the values of :data:`~bbdefense.models.resolve.BackendName` and of :data:`~bbdefense.models.OutputMode`
#: (``bbdefense.models.OUTPUT_MODES``, repeated here so that this module loads no model code)
BACKENDS: tuple[BackendName, ...] = ("auto", "torch", "onnx")
OUTPUTS: tuple[OutputMode, ...] = ("logits", "probs", "label")


def narrow_choice(value: str, choices: tuple[C, ...], what: str) -> C:
    """``value`` as one of ``choices`` (the values of a ``Literal``, e.g. :data:`BACKENDS`), typed as that
    Literal: typer hands every choice over as ``str``. An InputError naming ``what``, the bad value and the
    choices otherwise."""
    for choice in choices:
        if value == choice:
            return choice
    raise InputError(f"{what} must be one of {', '.join(choices)}, got {value!r}")


def narrow_optional(value: str | None, choices: tuple[C, ...], what: str) -> C | None:
    """:func:`narrow_choice` for an option whose default is None (None stays None)."""
    return None if value is None else narrow_choice(value, choices, what)


# ---------------------------------------------------------------- option factories (bounds at parse time)
def _int_range(lo: int, hi: int | None = None) -> Any:
    """A typer callback refusing integers outside [lo, hi], naming the value."""

    def check(value: int | None) -> int | None:
        if value is not None and (value < lo or (hi is not None and value > hi)):
            upper = f" and <= {hi}" if hi is not None else ""
            raise typer.BadParameter(f"must be an integer >= {lo}{upper}, got {value}")
        return value

    return check


def seed_option(default: int = 0) -> Any:
    """``--seed``: an integer in [0, 2**32 - 1]."""
    return typer.Option(default, "--seed", callback=_int_range(0, SEED_MAX),
                        help=f"Seed, 0 to {SEED_MAX} (recorded).")


def count_option(default: int | None, *decls: str, help: str | None = None,
                 minimum: int = 1) -> Any:
    """An integer option of at least ``minimum`` (default 1): image counts, budgets, samples, epochs."""
    return typer.Option(default, *decls, callback=_int_range(minimum), help=help)


def _check_positive(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a finite number > 0, got {value}")
    return value


def _check_nonnegative(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"must be a finite number >= 0, got {value}")
    return value


def _check_fraction(value: float | None) -> float | None:
    if value is not None and not 0 < value < 1:
        raise typer.BadParameter(f"must be in (0, 1), got {value}")
    return value


def positive_option(default: float | None, *decls: str, help: str | None = None) -> Any:
    """A float option that must be finite and > 0 (noise std, learning rate, shape parameters)."""
    return typer.Option(default, *decls, callback=_check_positive, help=help)


def nonnegative_option(default: float | None, *decls: str,
                       help: str | None = None) -> Any:
    """A float option that must be finite and >= 0."""
    return typer.Option(default, *decls, callback=_check_nonnegative, help=help)


def fraction_option(default: float | None, *decls: str, help: str | None = None) -> Any:
    """A float option in the open interval (0, 1) (failure probabilities such as ``--alpha``)."""
    return typer.Option(default, *decls, callback=_check_fraction, help=help)


def port_option(default: int = 8000) -> Any:
    """``--port``: a TCP port in [1, 65535]."""
    return typer.Option(default, "--port", callback=_int_range(1, 65535), help="TCP port, 1 to 65535.")


# ---------------------------------------------------------------- parsing
def parse_int_list(text: str, what: str, *, minimum: int = 1) -> tuple[int, ...]:
    """``"100,1000"`` -> ``(100, 1000)``; refuses non-integers, values below ``minimum`` and an empty list."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        vals = tuple(int(t) for t in items)
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < minimum:
        raise InputError(f"{what} must be comma-separated integers >= {minimum}, got {text!r}")
    return vals


def check_names(names: Iterable[str], registry: Any) -> list[str]:
    """Every name is in ``registry`` (else an UnknownNameError listing the choices)."""
    out = []
    for name in names:
        registry[name]  # raises UnknownNameError naming the bad one and the choices
        out.append(name)
    return out


# ---------------------------------------------------------------- files, folders, ports
def check_writable_dir(folder: str | Path, what: str) -> None:
    """``folder`` exists as a writable folder or can be created: its nearest existing ancestor is a folder
    in which a file can be created. Probed with an anonymous temporary file; nothing is left behind."""
    target = Path(folder).expanduser()
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise InputError(f"{what}: {probe} is a file, not a folder" if probe == target else
                         f"{what}: {target} cannot be created because {probe} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise InputError(f"{what}: cannot write in {probe} ({exc.strerror or exc})") from None


def check_output_file(path: str | Path, what: str) -> None:
    """A file to be written at ``path``: not a folder, and its folder writable
    (see :func:`check_writable_dir`)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise InputError(f"{what}: {p} is a folder; give a file path")
    check_writable_dir(p.parent, what)


def check_free_port(host: str, port: int) -> None:
    """``host:port`` can be bound now (refuses a busy port or an unknown host before the model is loaded)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(f"--host {host!r} cannot be resolved ({exc})") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as exc:
            raise InputError(f"cannot serve on {host}:{port}: {exc.strerror or exc} (another server there? "
                             "choose another --port)") from None


# ---------------------------------------------------------------- values that need the model or the data
def check_count(n: int, available: int, what: str, of: str) -> None:
    """Refuse asking for more items than exist (rather than silently using fewer)."""
    if n > available:
        raise InputError(f"{what} {n} asks for more than the {available} {of}; give {what} {available} or "
                         "fewer")


# ---------------------------------------------------------------- what a command works on: the model
_MODEL_HELP = ("The model: a checkpoint (X, X.safetensors or X.json), an .onnx file, a TorchScript .pt file, "
               "the http(s):// URL of a bbdefense server, or package.module:factory (see README, 'Models').")


def model_option(*decls: str, help: str | None = None, default: Any = ...) -> Any:
    """``--model SPEC``: every kind :func:`bbdefense.models.resolve.model_source` accepts (a string, never a
    path: ``http://host`` stays a URL). ``decls`` adds aliases (``"--target"``, deprecated)."""
    extra = f" {help}" if help else ""
    return typer.Option(default, "--model", *decls, help=_MODEL_HELP + extra)


def api_key_option() -> Any:
    """``--api-key``: the key sent to a server URL (default ``$BBDEFENSE_API_KEY``)."""
    return typer.Option(None, "--api-key", envvar="BBDEFENSE_API_KEY", show_envvar=False,
                        help="API key for a server URL (default: $BBDEFENSE_API_KEY).")


def _check_backend(value: str) -> str:
    if value not in BACKENDS:
        raise typer.BadParameter(f"must be auto, torch or onnx, got {value!r}")
    return value


def backend_option() -> Any:
    """``--backend auto|torch|onnx``: how a checkpoint or factory module runs (an .onnx file always runs on
    onnxruntime, a URL on its server). ``auto`` (default): eager for the first 10,000 images, then the fastest
    CPU path that agrees with eager within 1e-5 (:mod:`bbdefense.models.onnx_auto`)."""
    return typer.Option("auto", "--backend", callback=_check_backend,
                        help="auto (default: eager for 10,000 images, then ONNX Runtime or channels_last where "
                             "they agree with eager within 1e-5) | torch (always eager) | onnx (onnxruntime) "
                             "for a checkpoint or factory module.")


def budget_option(default: int | None, help: str, *, minimum: int = 1) -> Any:
    """``--budget``: a query budget (what it bounds, per image or in total, is the command's ``help``)."""
    return count_option(default, "--budget", help=help, minimum=minimum)


def output_option(default: str | None = None, help: str | None = None) -> Any:
    """``--output logits|probs|label``: what the black box reveals (default: logits for a local model, the
    server's mode for a URL)."""
    return typer.Option(default, "--output", help=help or "What the model reveals: logits | probs | label "
                                                           "(default: logits locally, the server's mode for a URL).")


def dataset_option(default: str | None = None, help: str | None = None) -> Any:
    """``--dataset``: the data a command evaluates on (default: the one the model records)."""
    return typer.Option(default, "--dataset", help=help or "Dataset (default: the one the checkpoint records).")


def data_dir_option() -> Any:
    """``--data-dir``: the folder of a local dataset."""
    return typer.Option(None, "--data-dir", help="Directory of a local dataset.")


# ---------------------------------------------------------------- where a command runs: Ray
def ray_option(what: str = "the work") -> Any:
    """``--ray``: run ``what`` on Ray workers (docs/scale-out.md)."""
    return typer.Option(False, "--ray", help=f"Run {what} on Ray workers (pip install 'bbdefense[ray]'; "
                                             "see docs/scale-out.md); rows come back here.")


def address_option() -> Any:
    """``--address``: the Ray cluster to join (with ``--ray``)."""
    return typer.Option(None, "--address", help="Ray cluster to join with --ray: HOST:PORT printed by `ray start "
                                                "--head`, ray://HOST:PORT or auto (default $RAY_ADDRESS, else a "
                                                "local Ray on this machine).")


def check_ray(ray: bool, address: str | None) -> None:
    """With ``--ray``: Ray installed and the cluster answering (else one ConfigError line), before any work.
    ``--address`` without ``--ray`` is refused."""
    if address is not None and not ray:
        raise InputError(f"--address {address} needs --ray")
    if ray:
        from ..cluster import connect

        connect(address)


# ---------------------------------------------------------------- what a command evaluates on
def split_seed_option(default: int | None = None, help: str | None = None) -> Any:
    """``--split-seed``: the seed of the owner/defender/test split (default: the checkpoint's own)."""
    return typer.Option(default, "--split-seed", callback=_int_range(0, SEED_MAX),
                        help=help or "Seed of the owner/defender/test split (default: the seed the checkpoint "
                                     "was trained with, else 0).")


def checkpoint_meta(model: str | Path | None) -> dict[str, Any] | None:
    """The recorded metadata of ``model``: a checkpoint's (its split seed, dataset...), what a
    ``package.module:factory`` declares, ``None`` for an ONNX or TorchScript file, a URL, or nothing.
    A bad spec raises its :class:`~bbdefense.models.resolve.ModelSpecError`, a checkpoint with broken
    metadata its :class:`~bbdefense.errors.CheckpointError` (see :func:`bbdefense.models.resolve.model_meta`)."""
    from ..models.resolve import model_meta

    return model_meta(model)


def resolve_splits(dataset: str | None, data_dir: str | Path | None, *, meta: dict[str, Any] | None,
                   split_seed: int | None, what: str = "the model") -> tuple[str, Any, int]:
    """``(dataset, splits, split_seed)`` a command evaluates ``what`` on: the one place every command
    resolves its test split.

    The split seed is the one the checkpoint records (:func:`~bbdefense.models.checkpoint.split_seed_of`),
    so a model trained with ``--split-seed 3`` is never attacked, certified or evaluated on images of
    its own training split; ``--split-seed`` applies to models that record none (ONNX, TorchScript,
    URLs) and is refused when it contradicts the checkpoint. A checkpoint trained on the test split
    itself is refused. The dataset defaults to the checkpoint's.
    """
    from ..data import load_dataset, make_splits
    from ..models.checkpoint import split_seed_of, training_split_of

    recorded = split_seed_of(meta) if meta else None
    if recorded is not None and split_seed is not None and split_seed != recorded:
        raise InputError(f"--split-seed {split_seed} contradicts {what}, trained with split seed {recorded}: "
                         f"its 'test' images would include its training images (omit --split-seed)")
    if meta and training_split_of(meta) == "test":
        raise InputError(f"{what} was trained on the test split: evaluating it there would measure training images")
    if dataset is None:
        dataset = (meta or {}).get("dataset")
        if dataset is None:
            raise InputError(f"{what} records no dataset: pass --dataset")
    seed = recorded if recorded is not None else (split_seed or 0)
    return str(dataset), make_splits(load_dataset(str(dataset), data_dir), seed=seed), seed


__all__ = ["SEED_MAX", "api_key_option", "backend_option", "budget_option", "check_count", "check_free_port",
           "check_names", "check_output_file", "check_radius", "check_writable_dir", "checkpoint_meta", "count_option",
           "data_dir_option", "dataset_option", "fraction_option", "model_option", "nonnegative_option",
           "output_option", "parse_int_list", "port_option", "positive_option", "preflight_attack", "radius_bound",
           "resolve_splits", "seed_option", "split_seed_option"]
