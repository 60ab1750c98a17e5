"""The paper configs' shared settings (issue 15, duplicates): CERTIFY's n0/n/alpha declared once
(``CertifySettings``, embedded as ``cfg.certify``) and ZO-AE-DS Table 2's training hyperparameters as one
``ZOAEDSConfig`` (``cfg.train``). The suites' quick and full settings are the values they had before, so
their figures and run directories are unchanged."""
from __future__ import annotations

from dataclasses import replace

import pytest

from bbdefense.certified.zo_ae_ds.train import ZOAEDSConfig
from bbdefense.errors import InputError
from bbdefense.experiments.papers import irs_net_suite, zo_ae_ds_suite
from bbdefense.experiments.papers.ducd import DUCDConfig
from bbdefense.experiments.papers.irs_net import IRSTablesConfig
from bbdefense.experiments.papers.settings import CertifySettings
from bbdefense.experiments.papers.zo_ae_ds import Table2Config


@pytest.mark.parametrize(("cfg", "n0", "n"), [
    (IRSTablesConfig(), 50, 500), (Table2Config(), 50, 500), (DUCDConfig(), 100, 1000),
    (irs_net_suite.quick_config(), 20, 200), (irs_net_suite.full_config(), 50, 500),
    (zo_ae_ds_suite.quick_config(), 20, 200), (zo_ae_ds_suite.full_config(), 50, 500)])
def test_certify_settings_keep_their_values(cfg, n0: int, n: int) -> None:
    assert (cfg.n0, cfg.n, cfg.alpha) == (n0, n, 0.001) == (cfg.certify.n0, cfg.certify.n, cfg.certify.alpha)
    if hasattr(cfg, "method"):  # the suites' per-run method override keeps the settings
        assert replace(cfg, method="sequential").n == n


def test_certify_settings_are_checked() -> None:
    with pytest.raises(InputError, match="n0 >= 1"):
        CertifySettings(n0=0, n=10)


@pytest.mark.parametrize("cfg", [Table2Config(), zo_ae_ds_suite.quick_config(), zo_ae_ds_suite.full_config(),
                                 Table2Config(sigma=0.25, seed=3)])
def test_table2_variants_train_with_the_old_hyperparameters(cfg: Table2Config) -> None:
    """What each variant trains with equals the config the flat Table2Config built before."""
    old_epochs = 2 if cfg.ae_epochs == 10 else 4  # quick: epochs=2, ae_epochs=10; else the defaults
    for v in cfg.variants:
        if v["variant"] == "rs":
            continue
        old = ZOAEDSConfig(**{"sigma": cfg.sigma, "epochs": old_epochs, "batch_size": 50, "lr": 1e-3, "depth": 5,
                              "width": 16, "mse_weight": 0.0, "pretrain_epochs": 0, "seed": cfg.seed, **v})
        assert replace(cfg.train, sigma=cfg.sigma, seed=cfg.seed, **v) == old


@pytest.mark.parametrize(("cfg", "epochs"), [(IRSTablesConfig(), 20), (irs_net_suite.quick_config(), 8),
                                             (irs_net_suite.full_config(), 20)])
def test_irs_denoisers_train_with_the_old_hyperparameters(cfg: IRSTablesConfig, epochs: int) -> None:
    from bbdefense.certified.irs.irs_net import IRSConfig

    for method, sig in (("salman", cfg.sigma), ("irs", cfg.sigma), ("irs", cfg.sigma / 0.3081)):
        old = IRSConfig(method=method, sigma=sig, lam=0.1, epochs=epochs, lr=1e-3, optimizer="adam", width=8,
                        seed=cfg.seed)
        assert replace(cfg.train, method=method, sigma=sig, seed=cfg.seed) == old
    assert IRSTablesConfig().train is not IRSTablesConfig().train  # each config owns its training settings
