"""The paper suites' certification on Ray: in-memory models, a pre-processor and a per-channel scale are
shipped to the workers (``SmoothSpec.of(smooth)``), the rows equal the local run's, and the workers' noisy
queries are charged on the driver's black box; DUCD's Algorithm 3 rows and ZO-AE-DS Table 2 from their call
sites; ``bbdefense certify --defense DIR --ray``; the API key by the name of its variable."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from ray_models import Shrink, linear

from bbdefense.certify import Smooth, make_noise
from bbdefense.errors import ConfigError, InputError, QueryBudgetExceeded
from bbdefense.evaluation.distributed import RayOptions, ShippedModel, SmoothSpec, certify_smooth_rows
from bbdefense.experiments.papers.settings import CertifySettings
from bbdefense.models import BlackBox
from bbdefense.records import RunDir, read_rows

KW: dict[str, Any] = {"n0": 8, "n": 48, "alpha": 0.01, "batch_size": 40, "seed": 5}


@pytest.fixture(scope="module")
def digits() -> Any:
    from bbdefense.data import load_dataset, make_splits

    return make_splits(load_dataset("digits"), seed=0)


def _smooth(**kw: Any) -> Smooth:
    bb = BlackBox.from_module(linear(), num_classes=10, input_shape=(1, 8, 8), name="linear")
    return Smooth(bb, make_noise("gaussian", sigma=0.3), norms=["l2"], **kw)


def _strip(rows: list[dict[str, Any]], drop: tuple[str, ...] = ("seconds",)) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def test_pre_and_scale_ship_to_workers_with_the_same_rows_and_queries(ray_cluster: dict[str, Any],
                                                                      digits: Any) -> None:
    x, y = digits.test.x[:7], digits.test.y[:7]
    local, remote = _smooth(pre=Shrink(), scale=[0.8]), _smooth(pre=Shrink(), scale=[0.8])
    here = certify_smooth_rows(local, x, y, chunk=7, **KW)
    there = certify_smooth_rows(remote, x, y, ray=RayOptions(address=ray_cluster["address"], workers=2, chunk=3),
                                **KW)
    assert _strip(there.rows) == _strip(here.rows)
    assert [r["idx"] for r in there.rows] == list(range(7)) and there.new == 7
    # every noisy forward made on a worker is on the driver's counters, as if the run had been local
    assert remote.model.stats.queries == local.model.stats.queries == 7 * (KW["n0"] + KW["n"])
    assert remote.model.stats.calls >= 2 and there.queries == here.queries


def test_ducd_algorithm3_rows_on_ray_equal_the_local_ones(ray_cluster: dict[str, Any], digits: Any,
                                                          tmp_path: Path) -> None:
    from bbdefense.experiments.papers.ducd import DUCDConfig, certify_rows

    cfg = DUCDConfig(n_images=5, certify=CertifySettings(n0=8, n=48), certify_batch=40, iota=0.6, seed=2)
    noise = make_noise("laplace", sigma=0.3)
    out = {}
    for tag, ray in (("local", None), ("ray", RayOptions(address=ray_cluster["address"], workers=2, chunk=2))):
        run = RunDir(tmp_path / tag, kind="paper", name=tag, config={})
        rows, q = certify_rows(run, "cert_DUCD_laplace_0.3", linear(), noise, digits.test, cfg, norm="l1", ray=ray)
        out[tag] = (sorted(rows, key=lambda r: r["idx"]), q)
    assert out["ray"] == out["local"] and out["local"][1] == 5 * 56
    assert [r["idx"] for r in out["local"][0]] == list(range(5))


def test_zo_ae_ds_table2_on_ray_equals_the_local_table(ray_cluster: dict[str, Any], digits: Any,
                                                       tmp_path: Path) -> None:
    from bbdefense.experiments.papers.zo_ae_ds import Table2Config, run_table2

    cfg = Table2Config(n_test=6, certify=CertifySettings(n0=8, n=48), variants=[{"variant": "rs"}])
    rows = {}
    for tag, ray in (("local", None), ("ray", RayOptions(address=ray_cluster["address"], workers=2, chunk=3))):
        run = RunDir(tmp_path / tag, kind="paper", name=tag, config={})
        rows[tag] = _strip(run_table2(linear(), digits, cfg, run, ray=ray), ("train_seconds", "certify_seconds"))
    assert rows["ray"] == rows["local"] and rows["local"][0]["certify_queries"] == 6 * 56


def test_certify_a_saved_defense_on_ray(ray_cluster: dict[str, Any], tmp_path: Path) -> None:
    from bbdefense.cli import main
    from checkpoint_helpers import save_untrained_smallcnn

    lenet = save_untrained_smallcnn(tmp_path / "lenet", arch="lenet", mean=(0.13,), std=(0.31,),
                                    train={"split_seed": 0})
    assert main(["defend", "zo-ae-ds", "--variant", "zo-ds", "--q", "2", "--epochs", "1", "--n-train", "10",
                 "--batch-size", "5", "--model", str(lenet), "--n-test", "2", "--n0", "4", "--n", "16",
                 "--out", str(tmp_path / "def"), "--no-progress"]) == 0
    common = ["certify", "--model", str(lenet), "--defense", str(tmp_path / "def"), "-n", "5", "--n0", "4", "--n",
              "24", "--norm", "l2", "--chunk", "2", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--ray", "--address", ray_cluster["address"]]) == 0
    local, remote = (sorted(_strip(list(read_rows(tmp_path / t / "rows" / "certify.jsonl"))), key=lambda r: r["idx"])
                     for t in ("local", "ray"))  # the Ray run writes chunks in the order they finish
    assert remote == local and len(local) == 5


def test_a_saved_ducd_defense_on_ray_certifies_its_surrogate_not_the_target(ray_cluster: dict[str, Any],
                                                                            digits: Any, tmp_path: Path) -> None:
    from bbdefense.certified import DUCD
    from bbdefense.cli import main

    bb = BlackBox.from_module(linear(), num_classes=10, input_shape=(1, 8, 8))
    DUCD(budget=40, epochs=1, finetune_epochs=1).fit(bb, digits.defender.subset(torch.arange(40))).save(tmp_path / "d")
    common = ["certify", "--model", "ray_models:linear", "--defense", str(tmp_path / "d"), "-n", "4", "--n0", "4",
              "--n", "24", "--norm", "l2", "--chunk", "2", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--ray", "--address", ray_cluster["address"]]) == 0
    local, remote = (sorted(_strip(list(read_rows(tmp_path / t / "rows" / "certify.jsonl"))), key=lambda r: r["idx"])
                     for t in ("local", "ray"))
    assert remote == local and len(local) == 4


def test_the_api_key_can_travel_by_the_name_of_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = SmoothSpec(ShippedModel("http://example.invalid/v1"), "gaussian", 0.25, api_key_env="BBD_TEST_KEY")
    monkeypatch.delenv("BBD_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="BBD_TEST_KEY is not set"):
        spec.key()
    monkeypatch.setenv("BBD_TEST_KEY", "s3cret-value")
    assert spec.key() == "s3cret-value"
    assert b"s3cret-value" not in pickle.dumps(spec)  # what Ray's object store would hold
    by_value = SmoothSpec(ShippedModel("http://example.invalid/v1"), "gaussian", 0.25, api_key="s3cret-value")
    assert by_value.key() == "s3cret-value" and b"s3cret-value" in pickle.dumps(by_value)
    with pytest.raises(InputError, match="not both"):
        SmoothSpec.of(_smooth(), "http://example.invalid/v1", api_key="k", api_key_env="BBD_TEST_KEY")


def test_ray_and_method_are_for_the_suites_that_certify() -> None:
    from bbdefense.experiments.papers import PAPERS, run_paper

    assert sorted(n for n in PAPERS if PAPERS[n].certifies) == ["ducd", "irs-net", "zo-ae-ds"]
    with pytest.raises(InputError, match="rfd does not"):
        run_paper("rfd", "unused", ray=RayOptions())
    with pytest.raises(InputError, match="cohen or sequential"):
        run_paper("ducd", "unused", method="bayes")


def test_ducd_sequential_rows_spend_at_most_n0_plus_n(digits: Any, tmp_path: Path) -> None:
    from bbdefense.experiments.papers.ducd import DUCDConfig, certify_rows

    cfg = DUCDConfig(n_images=3, certify=CertifySettings(n0=8, n=200), certify_batch=64, method="sequential")
    run = RunDir(tmp_path / "seq", kind="paper", name="seq", config={})
    rows, q = certify_rows(run, "cert_DUCD_gaussian_0.3", linear(), make_noise("gaussian", sigma=0.3), digits.test,
                           cfg, norm="l2")
    assert len(rows) == 3 and all(8 < r["queries"] <= 208 for r in rows) and q == sum(r["queries"] for r in rows)
    assert torch.tensor([r["pA_lower"] for r in rows]).isfinite().all()


def test_paper_cli_refuses_ray_and_method_where_nothing_is_certified(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from bbdefense.cli import main

    assert main(["paper", "unig", "--ray", "--out", str(tmp_path / "u")]) == 2
    assert "unig does not" in capsys.readouterr().err and not (tmp_path / "u").exists()
    assert main(["paper", "ducd", "--method", "bayes", "--out", str(tmp_path / "d")]) == 2
    assert "--method" in capsys.readouterr().err and not (tmp_path / "d").exists()


@pytest.mark.parametrize(("kw", "need"), [(KW, 7 * 56), ({**KW, "method": "sequential", "max_n": 100}, 7 * 108)])
def test_the_drivers_budget_refuses_the_plan_before_anything_ships(digits: Any, kw: dict[str, Any],
                                                                   need: int) -> None:
    """The workers' copies have no budget: the driver's refuses the whole plan (n0 + n per image, n0 + max_n
    sequential) before connecting to a cluster (the address below answers nothing), and spends nothing."""
    sm = _smooth()
    sm.model.budget = need - 1
    with pytest.raises(QueryBudgetExceeded, match=f"certifying 7 images needs {need} queries"):
        certify_smooth_rows(sm, digits.test.x[:7], digits.test.y[:7],
                            ray=RayOptions(address="127.0.0.1:9", workers=1), **kw)
    assert sm.model.stats.queries == 0
