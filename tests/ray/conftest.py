"""One local Ray for the Ray tests (module scope: ``ray.init(num_cpus=2)``, loopback only, no dashboard).
The tests that need it are skipped, with that reason, only where Ray is not installed (``make test``
installs it); the fail-fast tests run everywhere."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

SKIP = "Ray is not installed (pip install 'bbdefense[ray]'; make test installs it)"
HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A local Ray of 2 CPUs whose workers import this checkout's bbdefense and ``ray_models``; yields
    ``{"address": GCS address, "control": the folder ray_models watches}``."""
    ray = pytest.importorskip("ray", reason=SKIP)
    if ray.is_initialized():  # a session another test left behind
        ray.shutdown()
    ctl = tmp_path_factory.mktemp("ray-control")
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "BBD_RAY_CONTROL")}
    os.environ["PYTHONPATH"] = os.pathsep.join([str(SRC), str(HERE)])
    os.environ["BBD_RAY_CONTROL"] = str(ctl)  # the raylet and so every worker inherit these
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             runtime_env={"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"], "BBD_RAY_CONTROL": str(ctl)}})
    try:
        yield {"address": ray.get_runtime_context().gcs_address, "control": ctl}
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
