"""The image-reconstruction task of ZO-AE-DS (Zhang et al., ICLR 2022, §5.3, Table 5).

The black box is a reconstruction network on MNIST fed the back-projection ``A^T A x`` of a linear
Gaussian measurement ``y = A x`` (``A`` of shape ``(m, 784)``, entries ``N(0, 1/m)``; the paper
uses m = 576). It is robustified with the same methods as the classifiers (a denoiser, optionally
the AE, trained by FO or ZO gradients of the regression stability loss
``||f(Pre(x + delta)) - f(x)||^2``, :class:`~bbdefense.certified.zo_ae_ds.train.ZOAEDSConfig` with
``task="reconstruction"``) and evaluated by RMSE and SSIM (``skimage.metrics.structural_similarity``)
under l2 PGD of growing norm that maximises the reconstruction error (40 steps, as in Table 5).

The reconstruction oracle is a :class:`~bbdefense.models.BlackBox` whose "logits" are the
flattened reconstruction ``(N, 784)`` (so that every query is counted by the same choke point).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...certify import make_noise
from ...data import ImageDataset
from ...errors import InputError
from ...models import BlackBox, WhiteBox
from ...training.loop import Batch, OptimConfig, fit
from ...utils import make_generator, require_extra, seeded_init
from .train import Variant, ZOAEDSConfig, denoiser_net, train_zo_ae_ds


class MeasuredReconstructor(nn.Module):
    """``x -> sigmoid-free DnCNN-type net on A^T A x``, output flattened ``(N, C*H*W)``, clipped to [0, 1].

    ``A`` ``(m, d)`` is a fixed buffer drawn from ``N(0, 1/m)`` with ``seed``.
    Shape: ``(N, C, H, W)`` -> ``(N, C*H*W)``.
    """

    A: Tensor  # registered buffer (m, d): the measurement matrix

    def __init__(self, *, shape: tuple[int, int, int] = (1, 28, 28), m: int = 576, depth: int = 5, width: int = 16,
                 seed: int = 0) -> None:
        super().__init__()
        d = int(np.prod(shape))
        if not 1 <= m <= d:
            raise InputError(f"the number of measurements m must be in [1, {d}], got {m}")
        g = make_generator(seed)
        self.register_buffer("A", torch.randn((m, d), generator=g) / m ** 0.5)
        self.shape = shape
        with seeded_init(seed):
            self.net = denoiser_net(shape[0], depth, width)

    def backproject(self, x: Tensor) -> Tensor:
        y = x.flatten(1) @ self.A.T  # measurements (N, m)
        return (y @ self.A).view(-1, *self.shape)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.backproject(x)).clamp(0, 1).flatten(1)


def train_reconstructor(data: ImageDataset, *, epochs: int = 5, batch_size: int = 64, lr: float = 1e-3, m: int = 576,
                        seed: int = 0) -> MeasuredReconstructor:
    """The owner's reconstruction network, trained with MSE on clean images."""
    net = MeasuredReconstructor(shape=tuple(data.x.shape[1:]), m=m, seed=seed)  # type: ignore[arg-type]

    def step(batch: Batch) -> Tensor:
        x = batch[0]
        return F.mse_loss(net.net(net.backproject(x)).flatten(1), x.flatten(1))

    fit(net.net.parameters(), data.x, step, epochs=epochs, batch_size=batch_size, generator=make_generator(seed),
        optim=OptimConfig("adam", lr=lr), modules=[net], task="reconstructor")
    return net.eval()


def as_blackbox(net: MeasuredReconstructor, *, white: bool = False) -> BlackBox:
    """The reconstruction network behind the counting oracle (outputs ``(N, d)`` as "logits")."""
    d = int(np.prod(net.shape))
    if white:
        return WhiteBox(net, num_classes=d, input_shape=net.shape)
    return BlackBox.from_module(net, num_classes=d, input_shape=net.shape)


def pgd_l2_recon(model: nn.Module, x: Tensor, *, eps: float, steps: int = 40, seed: int = 0) -> Tensor:
    """l2 PGD maximising ``||model(x + delta) - x||^2`` over ``||delta||_2 <= eps``, ``x + delta`` in [0, 1].

    Step ``2.5 eps / steps``, random start. Shape: ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """
    if eps == 0:
        return x.clone()
    g = make_generator(seed)
    flat = x.flatten(1)
    delta = torch.randn(x.shape, generator=g)
    delta = delta * (eps * 0.5 / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).view(-1, 1, 1, 1)
    alpha = 2.5 * eps / steps
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = ((model((x + delta).clamp(0, 1)) - flat) ** 2).sum()
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = delta + alpha * grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            delta = delta * (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1).view(-1, 1, 1, 1)
            delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def rmse_ssim(rec: Tensor, x: Tensor) -> tuple[float, float]:
    """Mean RMSE and mean SSIM (skimage, data_range 1) of reconstructions ``(N, d)`` against images ``(N, C, H, W)``."""
    require_extra("skimage", "ssim", "SSIM of reconstructions")
    from skimage.metrics import structural_similarity

    r = rec.detach().view_as(x).cpu().numpy()
    t = x.cpu().numpy()
    rmse = float(np.sqrt(((r - t) ** 2).reshape(len(t), -1).mean(1)).mean())
    ssim = float(np.mean([structural_similarity(t[i, 0], r[i, 0], data_range=1.0) for i in range(len(t))]))
    return rmse, ssim


class _Defended(nn.Module):
    """``f(Pre(x + delta))``, ``delta ~ N(0, sigma^2 I)`` (a :class:`bbdefense.certify.Noise`), averaged over
    ``draws`` noise draws (differentiable, for the attack)."""

    def __init__(self, f: nn.Module, pre: nn.Module | None, sigma: float, draws: int, seed: int) -> None:
        super().__init__()
        self.f, self.pre, self.sigma, self.draws, self.g = f, pre, sigma, draws, make_generator(seed)
        self.noise = make_noise("gaussian", sigma=sigma) if pre is not None else None

    def forward(self, x: Tensor) -> Tensor:
        if self.pre is None or self.noise is None:
            return self.f(x)
        outs = [self.f(self.pre(x + self.noise.sample(x.shape, self.g))) for _ in range(self.draws)]
        return torch.stack(outs).mean(0)


def table5_rows(f: nn.Module, pre: nn.Module | None, x: Tensor, *, sigma: float, eps_list: tuple[float, ...],
                steps: int = 40, draws: int = 4, seed: int = 0) -> list[tuple[float, float, float]]:
    """``[(eps, RMSE, SSIM), ...]`` of the (defended) reconstruction under l2 PGD at each eps."""
    model = _Defended(f, pre, sigma, draws, seed)
    for p in model.parameters():
        p.requires_grad_(False)
    rows = []
    for eps in eps_list:
        xa = pgd_l2_recon(model, x, eps=eps, steps=steps, seed=seed)
        with torch.no_grad():
            rows.append((eps, *rmse_ssim(model(xa), x)))
    for p in model.parameters():
        p.requires_grad_(True)
    return rows


def run_table5(splits, run, *, sigma: float = 0.25, epochs: int = 2, n_train: int = 500, n_test: int = 20,
               eps_list: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0), steps: int = 40, q: int = 20, seed: int = 0,
               section: str | None = None) -> list[list[object]]:
    """Table 5 layout on MNIST-5k: the owner's reconstructor (owner split), robustified by FO-DS, ZO-DS and
    ZO-AE-DS (RGE, ``q``) trained on the defender split; RMSE / SSIM under l2 PGD at each eps."""
    from ...records import table
    from .train import pretrain_autoencoder
    owner = splits.owner_train
    net = train_reconstructor(owner, epochs=4, seed=seed)
    train = splits.defender.subset(torch.arange(min(n_train, len(splits.defender))))
    x = splits.test.x[:n_test]
    out: list[list[object]] = []
    ae, _ = pretrain_autoencoder(train, epochs=20, seed=seed)
    variants: tuple[tuple[str, Variant], ...] = (("FO-DS", "fo-ds"), (f"ZO-DS (RGE, q={q})", "zo-ds"),
                                                (f"ZO-AE-DS (RGE, q={q})", "zo-ae-ds"))
    setups: list[tuple[str, ZOAEDSConfig | None]] = [("no defense", None)]
    setups += [(lbl, ZOAEDSConfig(variant=v, zo_method="rge", q=q, task="reconstruction", sigma=sigma,
                                  epochs=epochs, seed=seed)) for lbl, v in variants]
    for label, cfg in setups:
        pre, tq = None, 0
        if cfg is not None:
            bb = as_blackbox(net, white=cfg.variant.startswith("fo"))
            import copy
            res = train_zo_ae_ds(bb, train, cfg, ae=copy.deepcopy(ae) if cfg.variant.endswith("ae-ds") else None)
            pre, tq = res.pipeline, res.queries
        for eps, rmse, ssim in table5_rows(net, pre, x, sigma=sigma, eps_list=eps_list, steps=steps, seed=seed):
            out.append([label, eps, rmse, ssim, tq])
    run.add_table({**table("Table 5 layout: MNIST reconstruction (y = Ax, m = 576) under l2 PGD",
                           ["method", "l2 eps", "RMSE", "SSIM", "train queries"], out,
                           f"{steps}-step l2 PGD maximising the reconstruction error of the defended pipeline "
                           f"(sigma {sigma}, mean of 4 noise draws); {n_test} test images; {epochs} epochs on "
                           f"{len(train)} defender images"), **({"section": section} if section else {})})
    return out
