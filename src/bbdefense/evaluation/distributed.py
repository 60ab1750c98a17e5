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
worker; a URL or a ``module:factory`` is opened there as it is; an in-memory torch module, as the paper
suites certify, is pickled with the spec, and so are a pre-processor and the per-channel scale), and rows
stream back to the driver, which alone writes them (``writer``). The queries the workers' black boxes
counted come back with each chunk and are charged on the driver's black box (``charge``).
:func:`certify_smooth_rows` is the switch the suites use: one process or Ray, the same rows.

Fault tolerance: a chunk whose worker died is certified again and its rows deduped by image index
(``RowWriter.write`` refuses a key twice); a driver killed and restarted resumes from the rows on disk
(``writer.done``); an exception raised by a chunk (bad input) fails the run with that exception.
"""

from __future__ import annotations

import copy
import inspect
import os
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..certify import Smooth, make_noise
from ..cluster import RunStats, connect, run_chunks
from ..errors import ConfigError, InputError, QueryBudgetExceeded
from ..events import EventCallback, emit
from ..models import BlackBox, model_source
from ..models.backends import TorchBackend
from ..records import RowWriter
from .certification import CertifyRun, certify_rows, resumed_rows

#: images per chunk: at Cohen's n = 100,000 a chunk is minutes of work, so Ray's per-chunk cost is noise
DEFAULT_CHUNK = 10


@dataclass(frozen=True)
class ShippedModel:
    """A model that works on a worker without a shared filesystem.

    * from a spec (:meth:`of`): the bytes of its files (a checkpoint's ``.safetensors`` + ``.json``, an
      ``.onnx`` file, a TorchScript file and its ``.json`` sidecar) travel with it; URLs and factories
      travel as their spec;
    * from an in-memory black box (:meth:`of_blackbox`: a suite's surrogate, fine-tuned base or unseen
      model): the module itself, pickled with the spec (on the CPU), and the black box's options
      (``num_classes``, ``input_shape``, ``output``, ``top_k``, ``name``, ``memory_format``); the worker
      wraps it in the same :class:`~bbdefense.models.BlackBox`.
    """

    spec: str
    files: dict[str, bytes] = field(default_factory=dict)
    module: nn.Module | None = None
    options: dict[str, Any] = field(default_factory=dict)

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

    @classmethod
    def of_blackbox(cls, bb: BlackBox) -> ShippedModel:
        """The module behind ``bb`` (a :class:`~bbdefense.models.backends.TorchBackend`); any other backend
        (a remote API, ONNX Runtime, a callable) is refused: ship it by its spec (:meth:`of`)."""
        if not isinstance(bb.backend, TorchBackend):
            raise InputError(f"--ray ships an in-memory model only behind a torch module; {bb.name!r} runs on "
                             f"{type(bb.backend).__name__}: certify it from its model spec instead")
        fmt = "channels_last" if bb.backend.memory_format is not None else None
        return cls(f"module:{bb.name}", module=_cpu(bb.backend.module),
                   options={"num_classes": bb.num_classes, "input_shape": tuple(bb.input_shape), "output": bb.output,
                            "top_k": bb.top_k, "name": bb.name, "memory_format": fmt})

    def materialize(self) -> str:
        """The spec to open here: the files written to a fresh temporary folder (kept for the worker's life)."""
        if not self.files:
            return self.spec
        tmp = Path(tempfile.mkdtemp(prefix="bbdefense-model-"))
        for name, data in self.files.items():
            (tmp / name).write_bytes(data)
        return str(tmp / self.spec)

    def blackbox(self, *, backend: str = "torch", api_key: str | None = None, device: str = "cpu") -> BlackBox:
        """The black box on this worker (``device`` for a torch model)."""
        if self.module is not None:
            opts = dict(self.options)
            fmt = opts.pop("memory_format", None)
            return BlackBox(TorchBackend(self.module.to(device), memory_format=fmt), **opts)
        return model_source(self.materialize()).blackbox(backend=backend,  # type: ignore[arg-type]
                                                         api_key=api_key, device=device)


def _cpu(obj: Any) -> Any:
    """``obj`` as shipped: a module with a tensor off the CPU is copied to the CPU (a GPU tensor does not
    unpickle on a CPU worker); the worker moves it to its own device."""
    if isinstance(obj, nn.Module) and any(t.device.type != "cpu" for t in (*obj.parameters(), *obj.buffers())):
        return copy.deepcopy(obj).cpu()
    return obj


@dataclass(frozen=True)
class SmoothSpec:
    """Everything a worker needs to rebuild the driver's :class:`Smooth`: the model (shipped), its backend
    and API key, the noise (name, sigma, shape parameters), the Smooth options (``norms``,
    ``radius_method``, ``clip``, ``numerical``), the pre-processor (``pre``: a denoiser or ZO-AE-DS
    pipeline, pickled with the spec; a module goes on the worker's device) and the per-channel ``scale``.

    The API key reaches the workers in one of two ways (docs/scale-out.md says what each exposes):
    ``api_key`` travels in the spec, i.e. in plain text through Ray's object store; ``api_key_env`` names
    an environment variable that each worker reads when it builds its black box (the key never enters
    the object store; set it on every node, e.g. in the environment of ``ray start``)."""

    model: ShippedModel
    noise: str
    sigma: float
    noise_params: dict[str, Any] = field(default_factory=dict)
    smooth: dict[str, Any] = field(default_factory=dict)
    backend: str = "torch"
    api_key: str | None = None
    pre: Any = None
    scale: tuple[float, ...] | None = None
    api_key_env: str | None = None

    @classmethod
    def of(cls, smooth: Smooth, model: str | Path | None = None, *, backend: str = "torch",
           api_key: str | None = None, api_key_env: str | None = None) -> SmoothSpec:
        """The spec of ``smooth``, whose black box was opened from ``model`` (a spec: its files are
        shipped), or, with ``model=None``, is an in-memory torch module (shipped itself,
        :meth:`ShippedModel.of_blackbox`). ``pre`` must be picklable (a module, a module-level function)."""
        if api_key is not None and api_key_env is not None:
            raise InputError(f"give the API key or the name of its environment variable ({api_key_env}), "
                             "not both")
        shipped = ShippedModel.of_blackbox(smooth.model) if model is None else ShippedModel.of(model)
        return cls(shipped, smooth.noise.name, float(smooth.noise.sigma), dict(smooth.noise.extra_params()),
                   {"norms": list(smooth.norms), "radius_method": smooth.radius_method, "clip": smooth.clip,
                    "numerical": dict(smooth.numerical_kw)}, backend=backend, api_key=api_key,
                   pre=_cpu(smooth.pre),
                   scale=None if smooth.scale is None else tuple(float(v) for v in smooth.scale),
                   api_key_env=api_key_env)

    def key(self) -> str | None:
        """The API key on this process: ``api_key``, else the variable ``api_key_env`` names (refused when
        it is not set here)."""
        if self.api_key_env is None:
            return self.api_key
        value = os.environ.get(self.api_key_env)
        if not value:
            raise ConfigError(f"the API key variable {self.api_key_env} is not set on worker host "
                              f"{socket.gethostname()}: set it in the environment of every Ray node")
        return value

    def build(self, device: str = "cpu") -> Smooth:
        bb = self.model.blackbox(backend=self.backend, api_key=self.key(), device=device)
        pre = self.pre.to(device) if isinstance(self.pre, nn.Module) else self.pre
        return Smooth(bb, make_noise(self.noise, sigma=self.sigma, **self.noise_params), pre=pre,
                      scale=None if self.scale is None else list(self.scale), **self.smooth)


#: a chunk certifier: ``(smooth, x, y, ids) -> rows`` (each row with ``idx`` and ``queries``), picklable
RowsFn = Callable[[Smooth, Tensor, Tensor, list[int]], list[dict[str, Any]]]


@dataclass(frozen=True)
class _Rows:
    """The default chunk certifier: :func:`certify_rows` with ``kwargs`` (the one engine)."""

    kwargs: dict[str, Any]

    def __call__(self, smooth: Smooth, x: Tensor, y: Tensor, ids: list[int]) -> list[dict[str, Any]]:
        return certify_rows(smooth, x, y, ids, chunk=len(ids), **self.kwargs).rows


@dataclass(frozen=True)
class _CertifyWorker:
    """The factory of one Ray actor: builds the Smooth once; the callable it returns certifies a chunk
    ``(x, y, ids)`` with ``rows_fn`` and returns ``(rows, counters)``: the counters are what the chunk's
    noisy forwards added to the worker's black box (``queries``, ``calls``, ``seconds``), charged on the
    driver's black box (:meth:`~bbdefense.models.BlackBox.add_worker_queries`)."""

    spec: SmoothSpec
    rows_fn: RowsFn
    gpu: bool = False

    def __call__(self) -> Callable[[tuple[Tensor, Tensor, list[int]]], tuple[list[dict[str, Any]], dict[str, Any]]]:
        import torch

        smooth = self.spec.build("cuda" if self.gpu and torch.cuda.is_available() else "cpu")

        def run(item: tuple[Tensor, Tensor, list[int]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
            x, y, ids = item
            s0 = smooth.model.stats
            rows = self.rows_fn(smooth, x, y, ids)
            s1 = smooth.model.stats
            return rows, {"queries": s1.queries - s0.queries, "calls": s1.calls - s0.calls,
                          "seconds": s1.seconds - s0.seconds}

        return run


@dataclass(frozen=True)
class RayOptions:
    """How a caller that certifies (a paper suite, ``bbdefense paper NAME --ray``) shards onto Ray: the
    cluster ``address`` (None: ``$RAY_ADDRESS`` or a local Ray), ``workers`` actors (default: what the
    cluster holds) of ``cpus_per_worker`` CPUs / ``gpus_per_worker`` GPUs, ``chunk`` images per work item."""

    address: str | None = None
    workers: int | None = None
    chunk: int = DEFAULT_CHUNK
    cpus_per_worker: float = 1
    gpus_per_worker: float | None = None


def _most_per_image(kwargs: dict[str, Any]) -> int:
    """The most queries :func:`certify_rows` with ``kwargs`` spends on one image: ``n0 + n`` (Cohen) or
    ``n0 + max_n`` (sequential); unset settings take :func:`certify_rows`'s own defaults."""
    kw = {name: p.default for name, p in inspect.signature(certify_rows).parameters.items()
          if p.default is not inspect.Parameter.empty}
    kw.update(kwargs)
    return int(kw["n0"]) + int(kw["max_n"] if kw["method"] == "sequential" else kw["n"])


def certify_rows_ray(spec: SmoothSpec, x: Tensor, y: Tensor, index: Sequence[int] | None = None, *,
                 chunk: int = DEFAULT_CHUNK, writer: RowWriter | None = None,
                 on_event: EventCallback | None = None, task: str = "certify", address: str | None = None,
                 workers: int | None = None, cpus_per_worker: float = 1, gpus_per_worker: float | None = None,
                 budget: int | None = None, stats: list[RunStats] | None = None,
                 charge: BlackBox | None = None, rows_fn: RowsFn | None = None,
                 **kwargs: Any) -> CertifyRun:
    """:func:`certify_rows` of ``x`` ``(N, C, H, W)`` / ``y`` ``(N,)`` (named ``index``) on Ray workers.

    ``kwargs`` go to :func:`certify_rows` on every worker unchanged (``n0``, ``n``, ``alpha``,
    ``batch_size``, ``seed``, ...). ``workers`` actors of ``cpus_per_worker`` CPUs (torch threads) and
    ``gpus_per_worker`` GPUs each (default: one GPU when the cluster has GPUs, else none) certify
    ``chunk`` images at a time; rows are written by ``writer`` here as chunks finish (images it already
    holds are skipped: resume). ``budget`` refuses, before any work, a run that would charge more than
    ``budget`` queries (``n0 + n`` per image, ``n0 + max_n`` sequential); so does ``charge``'s own budget.
    ``stats``, when given, receives the run's
    :class:`~bbdefense.cluster.RunStats` (timings, overhead, worker pids).

    ``charge``: the driver's black box (the one the spec was taken from): the queries the workers' black
    boxes counted are added to its counters as each chunk comes back (every chunk that ran, a retried
    one's duplicate included: they were spent), so ``charge.stats`` reads as if the run had been local.
    ``rows_fn`` replaces the chunk certifier (default :func:`certify_rows` with ``kwargs``): a picklable
    ``(smooth, x, y, ids) -> rows`` for a caller with its own row schema (each row has ``idx`` and
    ``queries``), e.g. DUCD's Algorithm 3 rows (:func:`bbdefense.experiments.papers.ducd.certify_rows`)."""
    if chunk < 1:
        raise InputError(f"chunk must be >= 1, got {chunk}")
    if rows_fn is not None and kwargs:
        raise InputError(f"rows_fn takes its own settings; got certify_rows options too: {sorted(kwargs)}")
    idx = list(range(len(x))) if index is None else [int(i) for i in index]
    if len(idx) != len(x) or len(y) != len(x):
        raise InputError(f"{len(x)} images, {len(y)} labels and {len(idx)} indices must match")
    pos = {i: p for p, i in enumerate(idx)}
    todo = [i for i in idx if i not in (writer.done if writer is not None else set())]
    if rows_fn is None and (budget is not None or (charge is not None and charge.budget is not None)):
        # the workers' copies have no budget: the plan is refused here, before anything is shipped
        need = len(todo) * _most_per_image(kwargs)
        if budget is not None and need > budget:
            raise QueryBudgetExceeded(f"certifying {len(todo)} images needs {need} queries, over the budget "
                                      f"of {budget}")
        if charge is not None:
            charge.check_plan(need * charge.query_cost, what=f"certifying {len(todo)} images")
    ray = connect(address)
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

    def on_result(_: int, out: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
        rows, counters = out
        if charge is not None:
            charge.add_worker_queries(int(counters["queries"]), calls=int(counters["calls"]),
                                      seconds=float(counters["seconds"]))
        fresh = [r for r in rows if r["idx"] not in seen and (writer is None or writer.write(r))]
        seen.update(r["idx"] for r in rows)
        new.extend(fresh)
        emit(on_event, "advance", task, n=len(rows), queries=sum(int(r["queries"]) for r in fresh))

    emit(on_event, "start", task, total=len(todo), unit="images")
    st = run_chunks(_CertifyWorker(spec, rows_fn or _Rows(dict(kwargs)), gpu=gpus > 0), items, on_result,
                    workers=workers, num_cpus=cpus_per_worker, num_gpus=gpus)
    emit(on_event, "end", task)
    if stats is not None:
        stats.append(st)
    return CertifyRun(resumed_rows(new, writer, idx), len(new), sum(int(r["queries"]) for r in new),
                      time.perf_counter() - t0)


def certify_smooth_rows(smooth: Smooth, x: Tensor, y: Tensor, index: Sequence[int] | None = None, *,
                        ray: RayOptions | None = None, chunk: int = 10, writer: RowWriter | None = None,
                        on_event: EventCallback | None = None, task: str = "certify",
                        **kwargs: Any) -> CertifyRun:
    """Certify with ``smooth`` here (``ray=None``: :func:`certify_rows`, ``chunk`` images per call) or on
    Ray (:func:`certify_rows_ray` with ``ray``'s chunking and workers; the model, pre-processor and scale
    of ``smooth`` are shipped, the workers' queries charged on ``smooth.model``, whose budget is checked
    against the most the run can spend before anything is shipped). Rows are the same either way; ``kwargs``
    are :func:`certify_rows`'s settings. The paper suites certify through this."""
    if ray is None:
        return certify_rows(smooth, x, y, index, chunk=chunk, writer=writer, on_event=on_event, task=task, **kwargs)
    return certify_rows_ray(SmoothSpec.of(smooth), x, y, index, chunk=ray.chunk, writer=writer, on_event=on_event,
                            task=task, address=ray.address, workers=ray.workers,
                            cpus_per_worker=ray.cpus_per_worker, gpus_per_worker=ray.gpus_per_worker,
                            charge=smooth.model, **kwargs)


__all__ = ["DEFAULT_CHUNK", "RayOptions", "RowsFn", "ShippedModel", "SmoothSpec", "certify_rows_ray",
           "certify_smooth_rows"]
