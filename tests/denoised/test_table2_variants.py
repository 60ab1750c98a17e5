"""Table 2 variants: a per-variant ``lr`` (the paper trains ZO-DS at 1e-4) reaches the trainer and the row label."""
from __future__ import annotations

import torch
from torch import nn

from bbdefense.certified.zo_ae_ds.train import ZOAEDSConfig
from bbdefense.data import ImageDataset
from bbdefense.data.splits import Splits
from bbdefense.experiments.papers.settings import CertifySettings
from bbdefense.experiments.papers.zo_ae_ds import ZO_DS_LR, Table2Config, _label, default_variants, run_table2
from bbdefense.records import RunDir


def test_default_variants_follow_the_paper_for_zo_ds() -> None:
    labels = [_label(v) for v in default_variants()]
    assert "ZO-DS (RGE, q=20, lr=0.0001)" in labels and "ZO-DS (RGE, q=192, lr=0.0001)" in labels
    assert "ZO-DS (RGE, q=20, lr=0.001)" in labels  # the ablation at the other variants' lr
    assert "ZO-AE-DS (RGE, q=20)" in labels and "ZO-AE-DS (RGE, q=20, lr=0.0001)" in labels and ZO_DS_LR == 1e-4
    assert len(set(labels)) == len(labels)  # rows are keyed by label


def test_variant_lr_overrides_the_table_lr(tmp_path, monkeypatch) -> None:
    import bbdefense.experiments.papers.zo_ae_ds as t2

    seen: list[float] = []
    real = t2.train_zo_ae_ds

    def spy(bb, data, cfg, **kw):
        seen.append(cfg.lr)
        return real(bb, data, cfg, **kw)

    monkeypatch.setattr(t2, "train_zo_ae_ds", spy)
    g = torch.Generator().manual_seed(0)
    ds = ImageDataset("toy", torch.rand(12, 1, 4, 4, generator=g), torch.arange(12) % 2, ["a", "b"], (0.5,), (0.5,))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        target = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    cfg = Table2Config(sigma=0.25, train=ZOAEDSConfig(epochs=1, batch_size=6, depth=2, width=2), n_train=12,
                       n_test=4, certify=CertifySettings(n0=4, n=8),
                       variants=[{"variant": "zo-ds", "zo_method": "rge", "q": 2, "lr": 1e-4},
                                 {"variant": "zo-ds", "zo_method": "rge", "q": 2}])
    rows = run_table2(target, Splits(ds, ds, ds, ds), cfg, RunDir(tmp_path / "t2", kind="t"))
    assert seen == [1e-4, cfg.train.lr]
    assert [r["method"] for r in rows] == ["ZO-DS (RGE, q=2, lr=0.0001)", "ZO-DS (RGE, q=2)"]
    # 1 epoch of 2 steps of 6 images: 6 pseudo-labels + 6 x (q + 1) probes per step
    assert all(r["train_queries"] == 2 * (6 + 6 * 3) for r in rows)
