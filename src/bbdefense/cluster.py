"""Ray execution shared by every caller that scales out (certification shards, the config runner's attack
jobs, the privacy study's shadow models): connect to a cluster or start a local one, fail fast when that
cannot work, and run work items on Ray with results streamed back to the driver, which alone writes files.

Two shapes of work:

* :func:`run_chunks`: a pool of **actors**, each built once from a picklable ``factory`` (so a model is
  loaded once per worker, not per chunk) and then fed chunks; results come back in completion order to
  ``on_result(i, result)``. A chunk whose worker dies (the process killed, the node lost: Ray's
  ``RayActorError`` / ``WorkerCrashedError``) is resubmitted by this driver to a fresh actor that replaces
  the dead one, up to ``retries`` times per chunk; the caller dedupes by key, so a retried chunk neither
  loses nor duplicates rows. A chunk that *raises* (``RayTaskError``: bad input, a bug) fails the
  run with the worker's own exception, at once, not after the other chunks and never as a hang.
* :func:`run_tasks`: stateless Ray tasks (one per item, e.g. one (model, attack) job), same error rules.

Fail fast: :func:`connect` refuses in one line (a :class:`~bbdefense.errors.ConfigError`) when Ray is not
installed or when ``address`` does not answer a TCP connect within :data:`CONNECT_TIMEOUT_S`, before any
work. A session already started by the caller (``ray.init`` in a notebook or a test) is used as it is.

Workers import bbdefense from the driver's source folder when that path exists on their node (a local
cluster, identical checkouts), else their own installed copy (docs/scale-out.md: what each worker needs).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import BBDefenseError, ConfigError

#: seconds to wait for a cluster address to accept a TCP connection before refusing it
CONNECT_TIMEOUT_S = 5.0
RAY_MISSING = "--ray needs Ray: pip install 'bbdefense[ray]'"


class WorkerLostError(BBDefenseError, RuntimeError):
    """A work item whose worker died more often than the retries allow (a crash loop, a lost node)."""


def import_ray() -> ModuleType:
    """The ``ray`` module, or a ConfigError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def _probe(address: str, timeout: float) -> None:
    """Refuse ``address`` unless something accepts a TCP connection there within ``timeout`` seconds."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address must be HOST:PORT, ray://HOST:PORT or auto, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"--address {address}: no Ray cluster answers there within {timeout:g}s "
                          f"({exc.strerror or type(exc).__name__}); start one with `ray start --head` and pass "
                          "the address it prints") from None


def worker_env() -> dict[str, str]:
    """The environment variables a worker gets: ``PYTHONPATH`` = this bbdefense's source folder + the
    driver's ``PYTHONPATH``, so a local worker runs the driver's code (not another installed copy)."""
    src = str(Path(__file__).resolve().parents[1])
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    return {"PYTHONPATH": os.pathsep.join([src, *extra])}


def connect(address: str | None = None, *, timeout: float = CONNECT_TIMEOUT_S) -> ModuleType:
    """Connect to the Ray cluster at ``address`` (``HOST:PORT`` of ``ray start --head``, ``ray://HOST:PORT``,
    ``auto``; default ``$RAY_ADDRESS`` or else a local Ray on this machine's cores) and return ``ray``.
    Idempotent; an already started session is used as it is. Refusals are one-line ConfigErrors."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _probe(address, timeout)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                 runtime_env={"env_vars": worker_env()})
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        where = f"--address {address}" if address else "a local Ray"
        raise ConfigError(f"{where}: cannot start or join Ray ({str(exc).splitlines()[0] if str(exc) else exc!r})"
                          ) from None
    return ray


def _system_errors(ray: ModuleType) -> tuple[type[BaseException], ...]:
    """Ray's errors for a lost worker (as opposed to ``RayTaskError``, an exception the work raised)."""
    ex = ray.exceptions
    names = ("RayActorError", "WorkerCrashedError", "ObjectLostError", "OwnerDiedError", "NodeDiedError",
             "LocalRayletDiedError", "TaskUnschedulableError", "ActorUnschedulableError")
    return tuple(getattr(ex, n) for n in names if hasattr(ex, n))


def _reraise(exc: BaseException) -> BaseException:
    """The exception a worker raised, unwrapped from its ``RayTaskError`` (so a typed error stays typed)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


@dataclass
class RunStats:
    """What :func:`run_chunks` measured: ``workers``; ``startup_s`` (actors created and their factories
    run: the model loads); ``wall_s`` (first chunk submitted to last result); ``compute_s`` (the work
    itself, summed inside the actors); ``retried`` chunks; the workers' ``pids``."""

    workers: int
    startup_s: float = 0.0
    wall_s: float = 0.0
    compute_s: float = 0.0
    chunks: int = 0
    retried: int = 0
    pids: list[int] = field(default_factory=list)

    @property
    def overhead(self) -> float:
        """Share of the workers' time (``workers * wall_s``) not spent computing: Ray's bookkeeping,
        transfers and the idle tail."""
        busy = self.workers * self.wall_s
        return max(0.0, 1.0 - self.compute_s / busy) if busy > 0 else 0.0


class _Actor:
    """The body of a pool actor: runs the factory once, then applies its result to each chunk. The factory
    comes as ``[ObjectRef]`` (put once by the driver, fetched here), so a large one (a model's bytes) is
    not copied per actor."""

    def __init__(self, factory: list[Any], threads: int) -> None:
        import ray
        import torch

        torch.set_num_threads(max(1, threads))
        self.fn = ray.get(factory[0])()

    def pid(self) -> int:
        return os.getpid()

    def run(self, item: Any) -> tuple[Any, float]:
        t0 = time.perf_counter()
        out = self.fn(item)
        return out, time.perf_counter() - t0


def default_workers(ray: ModuleType, num_cpus: float, num_gpus: float) -> int:
    """As many workers as the cluster's free CPUs (or GPUs, for GPU workers) allow, at least one."""
    free = ray.available_resources()
    if num_gpus > 0:
        return max(1, int(free.get("GPU", 0) // num_gpus))
    return max(1, int(free.get("CPU", 1) // max(num_cpus, 1e-9)))


def run_chunks(factory: Callable[[], Callable[[Any], Any]], items: Sequence[Any],
               on_result: Callable[[int, Any], None], *, workers: int | None = None, num_cpus: float = 1,
               num_gpus: float = 0, retries: int = 3, in_flight: int = 2) -> RunStats:
    """Apply ``factory()`` (built once per actor) to every item of ``items`` on a pool of Ray actors with
    ``num_cpus`` / ``num_gpus`` each (``workers`` of them, default: what the cluster holds), ``in_flight``
    chunks queued per actor so that none waits on the driver; ``on_result(i, result)`` is called in this
    process as each chunk finishes. Worker deaths are retried (``retries`` times per chunk); an exception
    raised by the work is raised here, unwrapped, after the actors are stopped. Call :func:`connect` first."""
    ray = import_ray()
    stats = RunStats(workers=0, chunks=len(items))
    if not items:
        return stats
    n = min(workers or default_workers(ray, num_cpus, num_gpus), len(items))
    # no Ray-side restarts: a dead actor is replaced here and its chunks resubmitted (counted per chunk)
    cls = ray.remote(_Actor).options(num_cpus=num_cpus, num_gpus=num_gpus)
    threads = max(1, int(num_cpus))
    t0 = time.perf_counter()
    boxed = [ray.put(factory)]
    actors = [cls.remote(boxed, threads) for _ in range(n)]
    lost = _system_errors(ray)
    try:
        for slot in range(n):  # wait for every actor to be built (its model loaded); replace any that died
            for attempt in range(retries + 1):
                try:
                    stats.pids.append(int(ray.get(actors[slot].pid.remote())))
                    break
                except ray.exceptions.RayTaskError as exc:  # the factory raised (a bad model spec...)
                    raise _reraise(exc) from None
                except lost as exc:
                    if attempt == retries:
                        raise WorkerLostError(f"worker {slot} died {attempt + 1} times while starting "
                                              f"({type(exc).__name__})") from None
                    stats.retried += 1
                    ray.kill(actors[slot], no_restart=True)
                    actors[slot] = cls.remote(boxed, threads)
        stats.workers = n
        stats.startup_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        queue, tries = deque(range(len(items))), [0] * len(items)
        pending: dict[Any, tuple[int, int, Any]] = {}  # ref -> (item, slot, the actor it went to)

        def submit(slot: int) -> None:
            i = queue.popleft()
            pending[actors[slot].run.remote(items[i])] = (i, slot, actors[slot])

        for _ in range(in_flight):
            for slot in range(n):
                if queue:
                    submit(slot)
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            i, slot, actor = pending.pop(ref)
            try:
                out, secs = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                raise _reraise(exc) from None
            except lost as exc:
                tries[i] += 1
                stats.retried += 1
                if tries[i] > retries:
                    raise WorkerLostError(f"work item {i} lost: its worker died {tries[i]} times "
                                          f"({type(exc).__name__})") from None
                if actors[slot] is actor:  # the actor is dead: replace it (its other chunks follow here)
                    ray.kill(actor, no_restart=True)
                    actors[slot] = cls.remote(boxed, threads)
                queue.appendleft(i)
                submit(slot)
                continue
            stats.compute_s += secs
            on_result(i, out)
            if queue:
                submit(slot)
        stats.wall_s = time.perf_counter() - t1
    finally:
        for a in actors:
            ray.kill(a, no_restart=True)
    return stats


def run_tasks(fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], on_result: Callable[[int, Any], None], *,
              num_cpus: float = 1, num_gpus: float = 0, retries: int = 3) -> None:
    """``fn(*calls[i])`` for every ``i`` as Ray tasks of ``num_cpus`` / ``num_gpus`` each (Ray retries a
    task whose worker died, ``retries`` times); ``on_result(i, result)`` runs here as each one finishes. An
    exception raised by ``fn`` is raised here, unwrapped, and the other tasks are cancelled."""
    ray = import_ray()
    task = ray.remote(fn).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=retries)
    pending = {task.remote(*c): i for i, c in enumerate(calls)}
    lost = _system_errors(ray)
    try:
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ref)
            try:
                out = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                raise _reraise(exc) from None
            except lost as exc:
                raise WorkerLostError(f"task {i} lost: its worker died {retries + 1} times "
                                      f"({type(exc).__name__})") from None
            on_result(i, out)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


__all__ = ["CONNECT_TIMEOUT_S", "RAY_MISSING", "RunStats", "WorkerLostError", "connect", "default_workers",
           "import_ray", "run_chunks", "run_tasks", "worker_env"]
