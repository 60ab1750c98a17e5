"""The ``bbdefense`` command line (typer).

Commands live in ``cli/cmd_*.py`` modules, each with a ``register(app)`` function, discovered at
start-up, so every part of the library adds its commands without editing a shared file. Defense
commands attach to :data:`~bbdefense.cli.common.defend_app` (``bbdefense defend <method>``).

Every user error (a :class:`~bbdefense.errors.BBDefenseError` or a usage error) becomes one line
on stderr and exit code 2; never a traceback.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import warnings

import typer

try:  # typer >= 0.20 vendors click as typer._click; older versions use click itself
    from typer import _click as click
except ImportError:  # pragma: no cover
    import click  # type: ignore[no-redef]

from ..errors import BBDefenseError
from .common import console, defend_app

app = typer.Typer(
    name="bbdefense",
    help="Black-box adversarial defense of image classifiers: defenses, query attacks, certification, privacy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_registered = False


def _register_commands() -> None:
    global _registered
    if _registered:
        return
    for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if m.name.startswith("cmd_"):
            importlib.import_module(f"{__name__}.{m.name}").register(app)
    app.add_typer(defend_app, name="defend")
    _registered = True


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    _register_commands()
    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            rv = command.main(args=args, prog_name="bbdefense", standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except BBDefenseError as exc:
        console.print(f"error: {exc}", markup=False, soft_wrap=True)
        return 2
    except click.exceptions.NoArgsIsHelpError as exc:
        console.print(exc.format_message() if hasattr(exc, "format_message") else str(exc), markup=False)
        return 2
    except click.exceptions.UsageError as exc:
        cmd = exc.ctx.command_path if exc.ctx is not None else "bbdefense"
        console.print(f"error: {cmd}: {exc.format_message()}", markup=False, soft_wrap=True)
        return 2
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        console.print("aborted", markup=False)
        return 130
    except KeyboardInterrupt:
        console.print("interrupted: results written so far are kept; rerun the same command to resume", markup=False)
        return 130


def run() -> None:  # pragma: no cover - console-script entry
    sys.exit(main())


__all__ = ["app", "main", "run"]
