"""Typed errors. Every user-facing failure in bbdefense is a :class:`BBDefenseError`.

Each subclass also inherits the builtin it refines, so callers may catch either
(``except InputError`` or ``except ValueError``). The CLI turns any of them into one line
on stderr and exit code 2.
"""

from __future__ import annotations


class BBDefenseError(Exception):
    """Base class of every error raised on purpose by bbdefense."""


class InputError(BBDefenseError, ValueError):
    """Bad input: wrong shape, dtype, NaN/inf, values outside [0, 1], a bad parameter value."""


class UnknownNameError(InputError):
    """A name (dataset, architecture, attack, defense, noise...) that no registry knows."""


class QueryBudgetExceeded(BBDefenseError, RuntimeError):
    """A query would exceed a black box's hard budget. Raised *before* any work is done."""


class AccessError(BBDefenseError, TypeError):
    """The model does not grant the access a method needs (e.g. scores from a label-only API,
    gradients from a black box)."""


class CheckpointError(BBDefenseError, ValueError):
    """A checkpoint is missing, corrupt, or its metadata does not match what was asked for."""


class DataError(BBDefenseError, ValueError):
    """A dataset file is missing, corrupt or in an unexpected format."""


class ConfigError(BBDefenseError, ValueError):
    """A configuration file or record is invalid."""


class RemoteError(BBDefenseError, RuntimeError):
    """A remote black box (HTTP API) failed in a way that retrying did not fix."""


class QueryRejected(AccessError):
    """A server's stateful defense refused a query as part of a suspected query attack (HTTP 403
    ``attack_suspected``); ``banned`` tells whether the key is now banned for good."""

    def __init__(self, message: str, *, banned: bool = False) -> None:
        super().__init__(message)
        self.banned = banned


class MissingExtraError(BBDefenseError, ImportError):
    """A feature needs an optional extra that is not installed; the message names the ``pip install``."""


__all__ = [
    "AccessError",
    "BBDefenseError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "InputError",
    "MissingExtraError",
    "QueryBudgetExceeded",
    "QueryRejected",
    "RemoteError",
    "UnknownNameError",
]
