"""Certification sharded over Ray workers (:func:`certify_rows_ray`): the same rows as
:func:`~bbdefense.evaluation.certification.certify_rows` in one process, from many.

How the work is split: the images still to certify (those the run directory does not hold yet) are cut
into chunks of ``chunk`` images, in index order; a pool of actors (:func:`bbdefense.cluster.run_chunks`),
each holding the model loaded once, certifies chunk after chunk with the one engine
(:func:`certify_rows` on a :class:`~bbdefense.certify.Smooth` rebuilt from a :class:`SmoothSpec`). Each
image's noise is seeded by ``(seed, index)`` (``Smooth(..., indices=)``), so a row does not depend on
which worker certified it, on the chunking or on retries: the rows equal a local run's (but ``seconds``).

No shared filesystem: the model travels with the work (:class:`ShippedModel`: a checkpoint's, an ONNX
or TorchScript file's bytes go through Ray's object store and are written to a temporary folder on each
worker; a URL or a ``module:factory`` is opened there as it is), and rows stream back to the driver,
which alone writes them (``writer``). Fault tolerance: a chunk whose worker died is certified again and
its rows deduped by image index (``RowWriter.write`` refuses a key twice); a driver killed and restarted
resumes from the rows on disk (``writer.done``); an exception raised by a chunk (bad input) fails the run
with that exception.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from ..certify import Smooth, make_noise
from ..cluster import RunStats, connect, run_chunks
from ..errors import InputError, QueryBudgetExceeded
from ..events import EventCallback, emit
from ..models import model_source
from ..records import RowWriter
from .certification import CertifyRun, certify_rows, resumed_rows

#: images per chunk: at Cohen's n = 100,000 a chunk is minutes of work, so Ray's per-chunk cost is noise
DEFAULT_CHUNK = 10


@dataclass(frozen=True)
class ShippedModel:
    """A model spec that works on a worker without a shared filesystem: the bytes of its files (a
    checkpoint's ``.safetensors`` + ``.json``, an ``.onnx`` file, a TorchScript file and its ``.json``
    sidecar) travel with it; URLs and factories travel as their spec."""

    spec: str
    files: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: str | Path) -> ShippedModel:
        from ..models.checkpoint import checkpoint_paths

        src = model_source(spec)
        if src.kind == "checkpoint":
            paths = list(checkpoint_paths(src.spec))
        elif src.kind in ("onnx", "torchscript"):
            paths = [src.path, src.path.with_suffix(".json")]
        else:
            return cls(src.spec)
        files = {p.name: p.read_bytes() for p in paths if p.is_file()}
        return cls(str(Path(src.spec).name), files)

    def materialize(self) -> str:
        """The spec to open here: the files written to a fresh temporary folder (kept for the worker's life)."""
        if not self.files:
            return self.spec
        tmp = Path(tempfile.mkdtemp(prefix="bbdefense-model-"))
        for name, data in self.files.items():
            (tmp / name).write_bytes(data)
        return str(tmp / self.spec)


@dataclass(frozen=True)
class SmoothSpec:
    """Everything a worker needs to rebuild the driver's :class:`Smooth`: the model (shipped), its backend
    and API key, the noise (name, sigma, shape parameters) and the Smooth options (``norms``,
    ``radius_method``, ``clip``, ``numerical``)."""

    model: ShippedModel
    noise: str
    sigma: float
    noise_params: dict[str, Any] = field(default_factory=dict)
    smooth: dict[str, Any] = field(default_factory=dict)
    backend: str = "torch"
    api_key: str | None = None

    @classmethod
    def of(cls, smooth: Smooth, model: str | Path, *, backend: str = "torch", api_key: str | None = None) -> SmoothSpec:
        """The spec of ``smooth``, whose black box was opened from ``model``. A Smooth with a pre-processor
        or a per-coordinate scale cannot be rebuilt from a spec: refused."""
        if smooth.pre is not None or smooth.scale is not None:
            raise InputError("--ray certifies a model spec with a noise; a Smooth with pre= or scale= cannot be "
                             "shipped to workers")
        return cls(ShippedModel.of(model), smooth.noise.name, float(smooth.noise.sigma),
                   dict(smooth.noise.extra_params()),
                   {"norms": list(smooth.norms), "radius_method": smooth.radius_method, "clip": smooth.clip,
                    "numerical": dict(smooth.numerical_kw)}, backend=backend, api_key=api_key)

    def build(self, device: str = "cpu") -> Smooth:
        bb = model_source(self.model.materialize()).blackbox(backend=self.backend,  # type: ignore[arg-type]
                                                             api_key=self.api_key, device=device)
        return Smooth(bb, make_noise(self.noise, sigma=self.sigma, **self.noise_params), **self.smooth)


@dataclass(frozen=True)
class _CertifyWorker:
    """The factory of one Ray actor: builds the Smooth once; the callable it returns certifies a chunk
    ``(x, y, ids)`` into rows with :func:`certify_rows` (the one engine)."""

    spec: SmoothSpec
    kwargs: dict[str, Any]
    gpu: bool = False

    def __call__(self) -> Callable[[tuple[Tensor, Tensor, list[int]]], list[dict[str, Any]]]:
        import torch

        smooth = self.spec.build("cuda" if self.gpu and torch.cuda.is_available() else "cpu")

        def run(item: tuple[Tensor, Tensor, list[int]]) -> list[dict[str, Any]]:
            x, y, ids = item
            return certify_rows(smooth, x, y, ids, chunk=len(ids), **self.kwargs).rows

        return run


def certify_rows_ray(spec: SmoothSpec, x: Tensor, y: Tensor, index: Sequence[int] | None = None, *,
                 chunk: int = DEFAULT_CHUNK, writer: RowWriter | None = None,
                 on_event: EventCallback | None = None, task: str = "certify", address: str | None = None,
                 workers: int | None = None, cpus_per_worker: float = 1, gpus_per_worker: float | None = None,
                 budget: int | None = None, stats: list[RunStats] | None = None,
                 **kwargs: Any) -> CertifyRun:
    """:func:`certify_rows` of ``x`` ``(N, C, H, W)`` / ``y`` ``(N,)`` (named ``index``) on Ray workers.

    ``kwargs`` go to :func:`certify_rows` on every worker unchanged (``n0``, ``n``, ``alpha``,
    ``batch_size``, ``seed``, ...). ``workers`` actors of ``cpus_per_worker`` CPUs (torch threads) and
    ``gpus_per_worker`` GPUs each (default: one GPU when the cluster has GPUs, else none) certify
    ``chunk`` images at a time; rows are written by ``writer`` here as chunks finish (images it already
    holds are skipped: resume). ``budget`` refuses, before any work, a run that would charge more than
    ``budget`` queries (``n0 + n`` per image). ``stats``, when given, receives the run's
    :class:`~bbdefense.cluster.RunStats` (timings, overhead, worker pids)."""
    if chunk < 1:
        raise InputError(f"chunk must be >= 1, got {chunk}")
    idx = list(range(len(x))) if index is None else [int(i) for i in index]
    if len(idx) != len(x) or len(y) != len(x):
        raise InputError(f"{len(x)} images, {len(y)} labels and {len(idx)} indices must match")
    ray = connect(address)
    pos = {i: p for p, i in enumerate(idx)}
    todo = [i for i in idx if i not in (writer.done if writer is not None else set())]
    if budget is not None:
        need = len(todo) * (int(kwargs.get("n0", 100)) + int(kwargs.get("n", 10_000)))
        if need > budget:
            raise QueryBudgetExceeded(f"certifying {len(todo)} images needs {need} queries, over the budget "
                                      f"of {budget}")
    gpus = (1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0) if gpus_per_worker is None \
        else gpus_per_worker
    items = []
    for s in range(0, len(todo), chunk):
        ids = todo[s:s + chunk]
        sel = [pos[i] for i in ids]
        items.append((x[sel].contiguous(), y[sel].contiguous(), ids))
    t0 = time.perf_counter()
    new: list[dict[str, Any]] = []
    seen: set[int] = set()

    def on_result(_: int, rows: list[dict[str, Any]]) -> None:
        fresh = [r for r in rows if r["idx"] not in seen and (writer is None or writer.write(r))]
        seen.update(r["idx"] for r in rows)
        new.extend(fresh)
        emit(on_event, "advance", task, n=len(rows), queries=sum(int(r["queries"]) for r in fresh))

    emit(on_event, "start", task, total=len(todo), unit="images")
    st = run_chunks(_CertifyWorker(spec, dict(kwargs), gpu=gpus > 0), items, on_result, workers=workers,
                    num_cpus=cpus_per_worker, num_gpus=gpus)
    emit(on_event, "end", task)
    if stats is not None:
        stats.append(st)
    return CertifyRun(resumed_rows(new, writer, idx), len(new), sum(int(r["queries"]) for r in new),
                      time.perf_counter() - t0)


__all__ = ["DEFAULT_CHUNK", "ShippedModel", "SmoothSpec", "certify_rows_ray"]
