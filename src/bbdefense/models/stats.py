"""The counters of a query oracle: :class:`QueryStats` (what ``BlackBox.stats`` reports), the log
entries, and the meter that every view of one oracle shares. Only ``BlackBox._forward`` writes a meter (and
``BlackBox.add_worker_queries``, which adds what a copy of the oracle counted in a Ray worker)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class QueryStats:
    """Counters of a black box.

    ``queries`` counts images forwarded through :meth:`BlackBox.query` (charged to the budget);
    ``audit_queries`` counts images forwarded through :meth:`BlackBox.audit` (verification by an
    evaluator, reported separately); ``calls`` counts batches.

    Whether audit queries cost anything depends on the backend (``audit_charged``): a local model's
    audits are free, but a remote API bills every image it receives, so there they are charged:
    against ``audit_budget`` when one was declared, otherwise against ``budget`` together with the
    queries. ``charged`` is what the backend billed: ``queries`` plus the charged audits.
    """

    queries: int
    calls: int
    audit_queries: int
    budget: int | None
    seconds: float
    audit_charged: bool = False
    audit_budget: int | None = None

    @property
    def charged(self) -> int:
        """Images the backend billed: every query, plus every audit where audits are charged."""
        return self.queries + (self.audit_queries if self.audit_charged else 0)

    @property
    def remaining(self) -> int | None:
        """Queries left under ``budget`` (charged audits without their own budget count against it)."""
        if self.budget is None:
            return None
        shared = self.audit_queries if self.audit_charged and self.audit_budget is None else 0
        return max(self.budget - self.queries - shared, 0)

    @property
    def audit_remaining(self) -> int | None:
        """Audit images still allowed (None: no limit; free audits on a local model have none)."""
        if self.audit_budget is not None:
            return max(self.audit_budget - self.audit_queries, 0)
        return self.remaining if self.audit_charged else None


@dataclass
class QueryLogEntry:
    """One logged oracle call (kept only with ``log_queries=True``)."""

    call: int
    n: int
    kind: Literal["query", "audit"]
    time: float


@dataclass
class _Meter:
    """The counters and limits of one oracle. Views of a black box (:meth:`BlackBox.with_backend`,
    the EOT wrapper) share one meter, so a query through any of them is charged once, here."""

    budget: int | None = None
    audit_budget: int | None = None
    queries: int = 0
    calls: int = 0
    audit: int = 0
    seconds: float = 0.0
    log: list[QueryLogEntry] = field(default_factory=list)


__all__ = ["QueryLogEntry", "QueryStats"]
