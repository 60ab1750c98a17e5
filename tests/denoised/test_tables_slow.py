"""The "done when" tables (slow: ~20 minutes each under load, one thread).
Same code as benchmarks/denoised_tables.py."""
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
    from bbdefense.experiments.papers.zo_ae_ds import Table2Config, run_table2
    torch.set_num_threads(1)  # the figures in the docs were measured with one thread
    splits = make_splits(load_dataset("mnist5k"), seed=0)
    p, _ = train_target("lenet", "mnist5k", tmp_path / "lenet", TrainConfig(epochs=6, seed=0))
    target, _ = load_checkpoint(p)
    t2 = run_table2(target, splits, Table2Config(), RunDir(tmp_path / "t2", kind="t"))
    rows = {r["method"]: r["ca@0.25"] for r in t2}
    fo, cge = rows["FO-AE-DS"], rows["ZO-AE-DS (CGE, q=d)"]
    rge = rows["ZO-AE-DS (RGE, q=20)"]
    zods = max(rows["ZO-DS (RGE, q=20, lr=0.0001)"], rows["ZO-DS (RGE, q=192, lr=0.0001)"])
    # Table 2's order with ZO-DS trained as the paper does (lr 1e-4 from scratch), measured on the first 200
    # test images of the class-interleaved split, 20 per digit, certified through Smooth (docs/denoised-smoothing.md,
    # 2026-12-03): FO-AE-DS 0.735 ~ CGE 0.740 (tied: the old engine had 0.735 vs 0.725) > 0.630 > 0.540 (ZO-DS
    # q=192); RS 0.230
    assert min(fo, cge) > rge > zods and abs(fo - cge) <= 0.02, rows
    assert rge > rows["RS (Cohen, no denoiser)"] + 0.3, rows
    # The equal-lr 1e-4 ablation (ZO-AE-DS 0.475 vs ZO-DS 0.495) flipped on class-balanced images and is within
    # noise (1.3 paired SE), so it is reported in the docs, not asserted. At lr 1e-3 (not the paper's ZO-DS
    # setting) ZO-DS is ahead on MNIST (0.755 vs 0.630).
    assert rows["ZO-DS (RGE, q=20, lr=0.001)"] >= rge, rows


@pytest.mark.slow
def test_irs_beats_salman_on_unseen_black_box(tmp_path: Path) -> None:
    from bbdefense.experiments.papers.irs_net import IRSTablesConfig, run_irs_tables
    torch.set_num_threads(1)  # the figures in the docs were measured with one thread
    splits = make_splits(load_dataset("mnist5k"), seed=0)
    res = run_irs_tables(splits, IRSTablesConfig(), RunDir(tmp_path / "irs", kind="t"), cache_dir=tmp_path)

    def pick(rows: list, prefix: str, model: str | None = None) -> list:
        return next(r for r in rows if (model is None and r[0].startswith(prefix))
                    or (model is not None and r[0] == model and r[1].startswith(prefix)))

    # Table I: accuracy on noisy inputs through the denoiser, on the two unseen black boxes (columns 2, 3)
    sal, irs, matched = (pick(res["table1"], p) for p in ("Salman", "IRS-Net (paper", "IRS-Net (matched"))
    assert irs[2] > sal[2] and irs[3] > sal[3], res["table1"]
    assert matched[2] > sal[2] and matched[3] > sal[3], res["table1"]
    # certified on the unseen LeNet, same pixel noise (0.5): IRS-Net >= Salman at every radius, clearly above at
    # r = 1 (0.615 vs 0.460 on the first 200 class-interleaved test images, through Smooth, 2026-12-03); at the
    # paper's sigma (pixel 0.154) nothing beyond r ~ 0.34
    sal_c, m_c = pick(res["table2"], "Salman", "unseen lenet"), pick(res["table2"], "IRS-Net (matched", "unseen lenet")
    assert all(a >= b for a, b in zip(m_c[3:8], sal_c[3:8], strict=True)), res["table2"]
    assert m_c[7] > sal_c[7] + 0.1, res["table2"]
    assert pick(res["table2"], "IRS-Net (paper", "unseen lenet")[5] == 0.0, res["table2"]
