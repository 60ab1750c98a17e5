"""The "done when" tables (slow: ~10-20 minutes on 2 quiet cores). Same code as benchmarks/denoised_tables.py."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bbdefense.data import load_dataset, make_splits
from bbdefense.models import load_checkpoint
from bbdefense.records import RunDir
from bbdefense.training import TrainConfig, train_target


@pytest.mark.slow
def test_table2_ordering_at_r025(tmp_path: Path) -> None:
    from bbdefense.defenses.zo_ae_ds.table2 import Table2Config, run_table2
    torch.set_num_threads(2)
    splits = make_splits(load_dataset("mnist5k"), seed=0)
    p, _ = train_target("lenet", "mnist5k", tmp_path / "lenet", TrainConfig(epochs=6, seed=0))
    target, _ = load_checkpoint(p)
    rows = {r["method"]: r["ca@0.25"] for r in run_table2(target, splits, Table2Config(), RunDir(tmp_path / "t2", kind="t"))}
    fo, cge = rows["FO-AE-DS"], rows["ZO-AE-DS (CGE, q=d)"]
    rge, zods = rows["ZO-AE-DS (RGE, q=20)"], rows["ZO-DS (RGE, q=20)"]
    assert fo >= cge > rge > zods, rows
    assert rows["RS (Cohen, no denoiser)"] < zods


@pytest.mark.slow
def test_irs_beats_salman_on_unseen_black_box(tmp_path: Path) -> None:
    from bbdefense.defenses.irs.experiment import IRSTablesConfig, run_irs_tables
    torch.set_num_threads(2)
    splits = make_splits(load_dataset("mnist5k"), seed=0)
    res = run_irs_tables(splits, IRSTablesConfig(), RunDir(tmp_path / "irs", kind="t"), cache_dir=tmp_path)
    def pick(rows: list, prefix: str) -> list:
        return next(r for r in rows if r[0].startswith(prefix))

    # Table I: accuracy on noisy inputs through the denoiser, on the two unseen black boxes (columns 2, 3)
    sal, irs, matched = (pick(res["table1"], p) for p in ("Salman", "IRS-Net (paper", "IRS-Net (matched"))
    assert irs[2] > sal[2] and irs[3] > sal[3], res["table1"]
    assert matched[2] > sal[2] and matched[3] > sal[3], res["table1"]
    # certified (Cohen, n=500): at MNIST scale both reach the ceiling at r <= 0.25; IRS-Net at the paper's sigma
    # (pixel std 0.154) cannot certify beyond ~0.34, so only ">=" at r in {0, 0.25} is claimed (see the docs)
    sal_c, irs_c = pick(res["table2"], "Salman"), pick(res["table2"], "IRS-Net (paper")
    assert irs_c[1] >= sal_c[1] and irs_c[2] >= sal_c[2], res["table2"]
