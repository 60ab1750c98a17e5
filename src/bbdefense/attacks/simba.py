"""SimBA (Guo, Gardner, You, Wilson & Weinberger, ICML 2019; arXiv 1905.07121): simple black-box
attack by coordinate descent along a random orthonormal basis (pixels, or low-frequency DCT).

Reference: cg563/simple-blackbox-attack ``simba.py`` ``simba_batch`` and ``utils.py`` ``block_idct``
(commit 3b66937), re-implemented (the block IDCT is an orthonormal DCT-II matrix product here):

    coefficients z = 0; prev = p_y(x)
    for k: e = step * basis vector idx[k]
        left = clip(x + T(z - e)); if p_y(left) < prev: z <- z - e                  # query 1
        else: right = clip(x + T(z + e)); if p_y(right) < prev: z <- z + e          # query 2
    T = block IDCT of the zero-padded ``freq_dims x freq_dims`` low-frequency block (``basis="dct"``)
        or the identity (``basis="pixel"``, ``freq_dims`` = image size)

Objective: decrease the probability of the true class (untargeted) or increase that of the target.
Queries: 1 per iteration, 2 when the first direction did not improve (the reference's count; its
prediction checks are free, here they are not needed: an accepted candidate's scores come from a
charged query). ``prev = p_y(x)`` is taken uncounted, as in the reference: through
``BlackBox.audit`` (``audit_queries``), or charged with ``charge_checks=True``. The reference shares one
coordinate order across the batch; here each image draws its own. ``norm``/``eps``: linf clamps ``T(z)`` to
``[-eps, eps]`` (the reference's ``linf_bound``); l2 projects it onto the ``eps`` ball; ``eps=None`` leaves it
unbounded.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

from ..errors import InputError
from ._score import Ledger, ScoreAttack, idx_of
from .base import register_attack


@lru_cache(maxsize=8)
def dct_matrix(n: int) -> Tensor:
    """Orthonormal DCT-II matrix ``D`` ``(n, n)``: ``dct(v) = D @ v``, ``idct(c) = D.T @ c``
    (scipy ``norm='ortho'``)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.float()


def block_idct(z: Tensor, block_size: int | None = None) -> Tensor:
    """2-D orthonormal inverse DCT of each ``block_size`` block of ``z`` ``(N, C, H, W)`` (default: whole image)."""
    n, c, h, w = z.shape
    b = block_size or h
    if h % b or w % b:
        raise InputError(f"block_idct: image {h}x{w} is not a multiple of block_size {b}")
    d = dct_matrix(b).to(z.device, z.dtype)
    blocks = z.reshape(n, c, h // b, b, w // b, b).permute(0, 1, 2, 4, 3, 5)
    out = d.T @ blocks @ d
    return out.permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


@register_attack
class SimBA(ScoreAttack):
    """SimBA-pixel and SimBA-DCT (untargeted and targeted).

    Args:
        basis: ``"dct"`` (SimBA-DCT) or ``"pixel"``.
        step: the reference's ``epsilon``, the step along a basis vector (0.2).
        freq_dims: side of the low-frequency block searched (DCT); ``None`` = the image size (the
            reference's CIFAR setting 32 = full image). Ignored for pixels.
        norm, eps: bound on ``T(z)``: linf clamp (reference ``linf_bound``) or l2 projection;
            ``eps=None``: unbounded, as the reference default.
        max_queries: per-image budget (the reference runs ``max_iters`` iterations; at most one
            pass over the ``C * freq_dims^2`` coordinates).
        charge_checks: charge the initial ``p_y(x)`` forward instead of auditing it.
        criterion, k, seed: see :class:`~bbdefense.attacks.square.Square`.

    Shape: ``x`` ``(N, C, H, W)``, ``y`` ``(N,)`` -> :class:`AttackResult`.
    """

    name = "simba"

    basis: str = "dct"
    step: float = 0.2
    freq_dims: int | None = None
    norm: str = "l2"
    charge_checks: bool = False

    def _check_params(self) -> None:
        if self.basis not in ("dct", "pixel"):
            raise InputError(f"simba: basis must be 'dct' or 'pixel', got {self.basis!r}")
        if not self.step > 0:
            raise InputError(f"simba: step must be > 0, got {self.step!r}")
        if self.freq_dims is not None and (not isinstance(self.freq_dims, int) or self.freq_dims < 1):
            raise InputError(f"simba: freq_dims must be an int >= 1, got {self.freq_dims!r}")

    def _transform(self, z: Tensor) -> Tensor:
        """``T(z)`` bounded: coefficients ``(N, C, H, W)`` -> perturbation ``(N, C, H, W)``."""
        p = block_idct(z) if self.basis == "dct" else z
        if self.eps is None:
            return p
        if self.norm == "linf":
            return p.clamp(-self.eps, self.eps)
        n = p.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return p * (self.eps / n).clamp(max=1.0)

    def _attack(self, led: Ledger) -> Tensor:
        x = led.x
        n, c, h, w = x.shape
        if self.basis == "dct" and h != w:
            raise InputError(f"simba dct: needs square images, got {h}x{w}")
        f = h if self.basis == "pixel" or self.freq_dims is None else min(self.freq_dims, h)
        fw = w if self.basis == "pixel" else f
        n_dims = c * f * fw
        order = torch.argsort(torch.rand(n, n_dims, generator=led.g, device=x.device), dim=1)
        z = torch.zeros(n, c, h, w, device=x.device)
        zf = z[:, :, :f, :fw]  # a view: the searched low-frequency block
        x_adv = x.clone()
        prev = torch.zeros(n, device=x.device)
        act = idx_of(led.can(1 if self.charge_checks else 0))
        if len(act) == 0:
            return x_adv
        lp = led.observe(x[act], act)
        prev[act] = self._score(led, lp, act)
        led.mark(lp, act, x[act])
        for kk in range(n_dims):
            act = idx_of(led.can(1))
            if len(act) == 0:
                break
            coord = order[act, kk]
            diff = torch.zeros(len(act), n_dims, device=x.device)
            diff[torch.arange(len(act)), coord] = self.step
            diff = diff.view(-1, c, f, fw)
            zl = zf[act].clone() - diff
            left = self._candidate(x[act], z[act], zl, f, fw)
            lpl = led.query(left, act)
            pl = self._score(led, lpl, act)
            imp = pl < prev[act]
            self._accept(act[imp], zl[imp], left[imp], pl[imp], lpl[imp], zf, x_adv, prev, led)
            rest = act[~imp]
            rest = rest[led.queries[rest] + led.cost <= led.max_queries]
            if len(rest) == 0:
                continue
            sel = (~imp).nonzero().flatten()[led.queries[act[~imp]] + led.cost <= led.max_queries]
            zr = zf[rest].clone() + diff[sel]
            right = self._candidate(x[rest], z[rest], zr, f, fw)
            lpr = led.query(right, rest)
            pr = self._score(led, lpr, rest)
            imp2 = pr < prev[rest]
            self._accept(rest[imp2], zr[imp2], right[imp2], pr[imp2], lpr[imp2], zf, x_adv, prev, led)
        return x_adv

    def _candidate(self, x: Tensor, z: Tensor, zlow: Tensor, f: int, fw: int) -> Tensor:
        full = z.clone()
        full[:, :, :f, :fw] = zlow
        return (x + self._transform(full)).clamp(0, 1)

    @staticmethod
    def _accept(idx: Tensor, zlow: Tensor, cand: Tensor, score: Tensor, lp: Tensor, zf: Tensor, x_adv: Tensor,
                prev: Tensor, led: Ledger) -> None:
        if len(idx) == 0:
            return
        zf[idx] = zlow
        x_adv[idx] = cand
        prev[idx] = score
        led.mark(lp, idx, cand)

    @staticmethod
    def _score(led: Ledger, lp: Tensor, idx: Tensor) -> Tensor:
        """What SimBA decreases: ``p_y`` (untargeted) or ``-p_target`` (targeted)."""
        if led.target is None:
            return lp.gather(1, led.y[idx][:, None]).squeeze(1).exp()
        return -lp.gather(1, led.target[idx][:, None]).squeeze(1).exp()


__all__ = ["SimBA", "block_idct", "dct_matrix"]
