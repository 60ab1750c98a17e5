"""Certification on Ray (``evaluation.distributed.certify_rows_ray``): the same rows as one process, a
worker killed by its pid mid-chunk recovered without a lost or duplicated row, a chunk that raises fails
the run with its error, and a driver killed after its first rows resumes from them (CLI, subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from ray_models import FACTORY, HERE_SRC, linear

from bbdefense.certify import Smooth, make_noise
from bbdefense.errors import InputError
from bbdefense.evaluation.certification import certify_rows
from bbdefense.evaluation.distributed import ShippedModel, SmoothSpec, certify_rows_ray
from bbdefense.models import BlackBox
from bbdefense.records import RowWriter, read_rows

KW: dict[str, Any] = {"n0": 10, "n": 100, "alpha": 0.01, "batch_size": 64, "seed": 3}


def _data(n: int = 8) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """The CLI's first ``n`` test images of ``digits`` (split seed 0, as the factory declares)."""
    from bbdefense.data import load_dataset, make_splits

    test = make_splits(load_dataset("digits"), seed=0).test
    idx = list(range(n))
    return test.x[idx], test.y[idx], idx


def _smooth() -> Smooth:
    bb = BlackBox.from_module(linear(), num_classes=10, input_shape=(1, 8, 8))
    return Smooth(bb, make_noise("gaussian", sigma=0.25), norms=["l2"])


def _strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(({k: v for k, v in r.items() if k != "seconds"} for r in rows), key=lambda r: r["idx"])


@pytest.fixture(scope="module")
def local_rows() -> list[dict[str, Any]]:
    x, y, idx = _data()
    return _strip(certify_rows(_smooth(), x, y, idx, chunk=3, **KW).rows)


def test_rows_equal_a_local_run(ray_cluster: dict[str, Any], local_rows: list[dict[str, Any]],
                                tmp_path: Path) -> None:
    x, y, idx = _data()
    stats: list[Any] = []
    with RowWriter(tmp_path / "rows.jsonl") as w:
        res = certify_rows_ray(SmoothSpec.of(_smooth(), FACTORY), x, y, idx, chunk=2, writer=w, workers=2,
                               stats=stats, **KW)
    assert _strip(res.rows) == local_rows
    assert _strip(list(read_rows(tmp_path / "rows.jsonl"))) == local_rows
    assert res.new == len(idx) and res.queries == len(idx) * (KW["n0"] + KW["n"])
    assert stats[0].workers == 2 and len(set(stats[0].pids)) == 2 and os.getpid() not in stats[0].pids


def test_a_checkpoint_travels_as_bytes(tmp_path: Path) -> None:
    from bbdefense.models.checkpoint import CheckpointMeta, save_checkpoint

    m = torch.nn.Linear(4, 2)
    save_checkpoint(tmp_path / "m", m, CheckpointMeta(arch="x", arch_kwargs={}))
    shipped = ShippedModel.of(str(tmp_path / "m"))
    assert shipped.spec == "m" and set(shipped.files) == {"m.safetensors", "m.json"}
    there = Path(shipped.materialize())
    assert there.parent != tmp_path and (there.parent / "m.json").read_bytes() == (tmp_path / "m.json").read_bytes()


def test_a_worker_killed_mid_chunk_loses_and_duplicates_nothing(ray_cluster: dict[str, Any],
                                                                local_rows: list[dict[str, Any]],
                                                                tmp_path: Path) -> None:
    ctl: Path = ray_cluster["control"]
    x, y, idx = _data()
    (ctl / "hold").write_text("")
    out: dict[str, Any] = {}
    stats: list[Any] = []

    def drive() -> None:
        try:
            with RowWriter(tmp_path / "rows.jsonl") as w:
                out["res"] = certify_rows_ray(SmoothSpec.of(_smooth(), FACTORY), x, y, idx, chunk=2, writer=w,
                                              workers=2, stats=stats, **KW)
        except BaseException as exc:  # reported by the assertions below
            out["error"] = exc

    t = threading.Thread(target=drive)
    t.start()
    try:
        deadline = time.monotonic() + 300  # generous: Ray starts workers slowly on a loaded machine
        while not list(ctl.glob("pid-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = [int(p.name.split("-")[1]) for p in ctl.glob("pid-*")]
        assert pids, "no worker reached its first forward pass"
        os.kill(pids[0], signal.SIGKILL)  # a worker dies mid-chunk
    finally:
        (ctl / "hold").unlink()
        t.join(120)
    for p in ctl.glob("pid-*"):
        p.unlink()
    assert "error" not in out, out.get("error")
    on_disk = list(read_rows(tmp_path / "rows.jsonl"))
    assert len(on_disk) == len({r["idx"] for r in on_disk}) == len(idx)
    assert _strip(on_disk) == local_rows == _strip(out["res"].rows)
    assert stats[0].retried >= 1  # the killed worker's chunk was resubmitted to a fresh actor


def test_a_chunk_that_raises_fails_the_run_with_its_error(ray_cluster: dict[str, Any]) -> None:
    x, y, idx = _data()
    x = x.clone()
    x[5] = 7.0  # not an image in [0, 1]: Smooth refuses it on the worker
    t0 = time.monotonic()
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        certify_rows_ray(SmoothSpec.of(_smooth(), FACTORY), x, y, idx, chunk=2, workers=2, **KW)
    assert time.monotonic() - t0 < 300  # fails fast (not a hang), even on a loaded machine


def _cli(address: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE_SRC, str(Path(__file__).parent)])}
    cmd = [sys.executable, "-m", "bbdefense", "certify", "--model", FACTORY, "--dataset", "digits", "-n", "12",
           "--n0", "10", "--n", "100", "--alpha", "0.01", "--batch-size", "64", "--seed", "3", "--norm", "l2",
           "--chunk", "1", "--ray", "--address", address, "--out", str(out), "--no-progress", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_driver_killed_after_its_first_rows_resumes_from_them(ray_cluster: dict[str, Any],
                                                               tmp_path: Path) -> None:
    ctl: Path = ray_cluster["control"]
    out = tmp_path / "run"
    rows = out / "rows" / "certify.jsonl"
    (ctl / "slow").write_text("")
    try:
        p = _cli(ray_cluster["address"], out)
        deadline = time.monotonic() + 300
        while p.poll() is None and time.monotonic() < deadline and not (rows.is_file() and rows.read_text()):
            time.sleep(0.05)
        p.kill()  # SIGKILL: the driver dies with its chunks in flight
        _, err = p.communicate(timeout=30)
        first = list(read_rows(rows))
        assert 1 <= len(first) < 12, err
    finally:
        (ctl / "slow").unlink()
    again = _cli(ray_cluster["address"], out)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    resumed = list(read_rows(rows))
    assert len(resumed) == len({r["idx"] for r in resumed}) == 12
    assert resumed[:len(first)] == first  # the rows written before the kill were kept, not recomputed
    x, y, idx = _data(12)
    clean = certify_rows(_smooth(), x, y, idx, chunk=4, **KW).rows  # what one uninterrupted process writes
    assert _strip(resumed) == _strip(clean)
    rec = json.loads((out / "record.json").read_text())
    assert rec["status"] == "complete" and rec["metrics"]["images"] == 12
