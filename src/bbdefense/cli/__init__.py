"""The ``bbdefense`` command line (typer).

Commands live in ``cli/cmd_*.py`` modules, each with a ``register(app)`` function, discovered at
start-up, so every part of the library adds its commands without editing a shared file. Defense
commands attach to :data:`~bbdefense.cli.common.defend_app` (``bbdefense defend <method>``).

Exit codes (:func:`main`): 0 success; 2 bad input (a :class:`~bbdefense.errors.BBDefenseError`, a
usage error or an option out of range; checked before any work or any file is written, see
:mod:`.options`): one line on stderr, never a traceback; 130 interrupted (Ctrl-C): one line saying how
to resume; 1 an unexpected error (a bug): one line naming it and the file holding its traceback
(``$BBDEFENSE_LOG_DIR``, default ``<tmp>/bbdefense-logs``).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import warnings
from pathlib import Path

import typer

try:  # typer >= 0.20 vendors click as typer._click; older versions use click itself
    from typer import _click as click
except ImportError:  # pragma: no cover
    import click  # type: ignore[no-redef]  # the same module under its older name

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


def _one_line(text: str) -> str:
    """A message on one line (a multi-line message joined with '; ')."""
    return "; ".join(ln.strip() for ln in str(text).splitlines() if ln.strip())


def _log_traceback(exc: BaseException, args: list[str]) -> Path | None:
    """Write the traceback of an unexpected error to ``$BBDEFENSE_LOG_DIR`` (default
    ``<tmp>/bbdefense-logs``); returns the file, or None when it cannot be written."""
    import os
    import tempfile
    import time
    import traceback

    folder = Path(os.environ.get("BBDEFENSE_LOG_DIR") or Path(tempfile.gettempdir()) / "bbdefense-logs")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        path.write_text(f"bbdefense {' '.join(args)}\n\n"
                        + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        return path
    except OSError:
        return None


def _error(message: str) -> None:
    console.print(_one_line(message), markup=False, soft_wrap=True)


def _invoke(args: list[str]) -> int:
    command = typer.main.get_command(app)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        # make_context + invoke (what click's main does), without typer's standalone wrapper, which turns
        # Ctrl-C into a bare exit code 130 before this module can say how to resume
        with command.make_context("bbdefense", args) as ctx:
            rv = command.invoke(ctx)
    return int(rv) if isinstance(rv, int) and not isinstance(rv, bool) else 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``); returns the exit code (see the module docstring).

    Every exception type ends here as one line on stderr: bad input (any :class:`BBDefenseError`, usage
    errors, pydantic validation errors) exits 2, Ctrl-C 130, and anything else, a bug, 1 with its traceback
    written to a log file whose path the line gives.
    """
    from pydantic import ValidationError

    _register_commands()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _invoke(args)
    except BBDefenseError as exc:
        _error(f"error: {exc}")
        return 2
    except click.exceptions.NoArgsIsHelpError as exc:  # `bbdefense` / a group without arguments: its help
        console.print(exc.format_message(), markup=False)
        return 2
    except click.exceptions.UsageError as exc:
        cmd = exc.ctx.command_path if exc.ctx is not None else "bbdefense"
        _error(f"error: {cmd}: {exc.format_message()}")
        return 2
    except click.exceptions.ClickException as exc:
        _error(f"error: {exc.format_message()}")
        return 2
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or exc.title
        _error(f"error: {where}: {first.get('msg')}")
        return 2
    except typer.Exit as exc:  # --help, ctx.exit(code)
        return int(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        _error("interrupted: the rows written so far are kept; rerun the same command to resume "
               "(run directories resume by default)")
        return 130
    except SystemExit as exc:  # a library that calls sys.exit (e.g. a server that could not start)
        code = exc.code
        if code is None or isinstance(code, int):
            return int(code or 0)
        _error(f"error: {code}")
        return 1
    except Exception as exc:  # a bug: one line, the traceback in a file
        trace_path = _log_traceback(exc, args)
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        tail = f"traceback written to {trace_path}" if trace_path else "the traceback could not be written to a file"
        _error(f"internal error (a bug, please report it): {what}; {tail}")
        return 1


def run() -> None:  # pragma: no cover - console-script entry
    sys.exit(main())


__all__ = ["app", "main", "run"]
