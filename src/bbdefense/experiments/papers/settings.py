"""Cohen CERTIFY's settings of a paper table, declared once (:class:`CertifySettings`) and embedded as
``cfg.certify`` in each table config that certifies (:class:`~.irs_net.IRSTablesConfig`,
:class:`~.zo_ae_ds.Table2Config`, :class:`~.ducd.DUCDConfig`); :class:`CertifiedTable` lets their code read
``cfg.n0`` / ``cfg.n`` / ``cfg.alpha`` as before. Each table's ``method`` (cohen | sequential) stays its own
field: the suites set it per run (``replace(cfg, method=...)``)."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import InputError


@dataclass(frozen=True)
class CertifySettings:
    """Cohen et al. (2019) CERTIFY: ``n0`` selection samples, ``n`` estimation samples per image (the most a
    sequential run may spend), failure probability ``alpha``."""

    n0: int = 100
    n: int = 1000
    alpha: float = 0.001

    def __post_init__(self) -> None:
        if self.n0 < 1 or self.n < 1 or not 0 < self.alpha < 1:
            raise InputError(f"certification needs n0 >= 1, n >= 1 and alpha in (0, 1), got n0={self.n0}, "
                             f"n={self.n}, alpha={self.alpha}")


class CertifiedTable:
    """Mixin of a table config with a ``certify: CertifySettings`` field: ``n0``, ``n``, ``alpha`` read it."""

    certify: CertifySettings

    @property
    def n0(self) -> int:
        return self.certify.n0

    @property
    def n(self) -> int:
        return self.certify.n

    @property
    def alpha(self) -> float:
        return self.certify.alpha


__all__ = ["CertifiedTable", "CertifySettings"]
