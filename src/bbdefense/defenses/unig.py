"""UniG: unifying the gradients of a query batch with a Hadamard module on the penultimate features.

Wu, Chen, Fang, Huang, "Unifying Gradients to Improve Real-world Robustness for Deep Networks",
arXiv 2208.06228 (Algorithm 1). Reference code: snowien/UniG-pytorch (commit cacdaf1), ``model/UniG.py``
``UniGModel.forward``; independent implementation following ``shared/reference/algorithms.md`` §2.

On every query batch ``x`` (B images) with features ``F = embed(x)`` ``(B, D)`` and head ``W, b``:

1. ``p <- N(1, 0.5^2)`` (shape ``(rows, D)``, re-drawn on **every** call, so outputs are randomized);
   pseudo-labels ``t = argmax head(F)`` (the undefended prediction).
2. For ``epochs`` steps: ``g = d CE(head(F * p[:B]), t) / dF`` (mean reduction, ``create_graph``),
   ``g <- (g - mn) / (mx - mn)`` with **global** scalars ``mn, mx`` taken at step 0 and frozen,
   loss ``L = sum_j ||g_j - g_{j+1}||_2`` over **consecutive pairs in batch order**; one SGD step on
   ``p`` (lr, momentum 0.9, weight decay 5e-4), then ``p <- clamp(p, 1 - delta, 1 + delta)``.
3. Return ``head(F * p[:B])``.

Faithfulness notes (pitfall 7):

* The SGD optimizer is created once, so its **momentum buffer persists across queries**: the
  defense is stateful and a query's output depends on the queries before it. ``stateless=True``
  resets the optimizer on each call (an option the reference does not have).
* The loss pairs rows in batch order, so the **batch order and composition change the output**.
* ``p`` has a fixed ``(max_batch [+ k], D)`` shape as in the reference; batches larger than
  ``max_batch`` are processed in consecutive chunks of ``max_batch`` (the reference cannot).
* B = 1 has no pair (the reference crashes). With ``reference`` samples (single-sample / combine
  mode) ``k = 5`` stored labelled training images are appended to every query (a random start index
  in ``[0, 100)``), their **true labels** used as targets, and their rows dropped from the output.
  Without ``reference``, a single image gets ``head(F * clamp(p))`` with no optimisation step.

Defaults are the paper's CIFAR-10 run (README): batch 256, 1 epoch, lr 10, delta 0.5. The
reference's class defaults are epochs 10, lr 0.1, delta 0.2; ImageNet used lr 1, delta 0.1.

Shape: ``(N, C, H, W)`` in [0, 1] -> logits ``(N, K)``; the wrapped module must be a zoo
classifier exposing ``embed`` (``(N, D)``) and ``head`` (``nn.Linear(D, K)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .base import Defense, check_positive, register_defense


def unig_loss(g: Tensor, mn: Tensor, mx: Tensor) -> Tensor:
    """``sum_j ||gn_j - gn_{j+1}||_2`` of the min-max normalised gradients ``gn = (g - mn) / (mx - mn)``.

    Shape: ``g`` ``(n, D)``; ``mn``, ``mx`` scalars -> scalar. Rows are paired in order.
    """
    span = mx - mn
    gn = (g - mn) / torch.where(span > 0, span, torch.ones_like(span))
    return (gn[:-1] - gn[1:]).norm(p=2, dim=1).sum()


@register_defense
class UniG(Defense):
    """UniG (Algorithm 1): a per-query re-optimised Hadamard module on the penultimate features.

    Args:
        module: a zoo classifier (``embed`` + ``head``).
        epochs: optimisation steps per query batch (paper CIFAR/ImageNet: 1).
        lr: SGD learning rate (paper: 10 CIFAR, 1 ImageNet).
        delta: ``p`` is clipped to ``[1 - delta, 1 + delta]`` after each step (paper: 0.5 / 0.1).
        max_batch: rows of ``p`` (the reference's batch size).
        init_std: std of the ``N(1, init_std^2)`` initialisation of ``p`` on every call.
        momentum, weight_decay: of the SGD optimizer (0.9, 5e-4).
        stateless: reset the optimizer (momentum) on every call instead of keeping it.
        reference: ``(x_ref, y_ref)`` labelled training images for the combine mode (``(M, C, H, W)``,
            ``(M,)``, M >= k); ``None`` disables it.
        k: stored samples appended to every query in combine mode (reference: 5).
        start_max: the random start index of the appended samples is drawn in ``[0, start_max)``.
        seed: seed of the defense's generator (initialisation of ``p`` and the start index).
    """

    name = "unig"
    randomized = True
    ref_x: Tensor  # buffers of the combine reference set (registered only when combine=True)
    ref_y: Tensor

    def __init__(self, module: nn.Module, *, epochs: int = 1, lr: float = 10.0, delta: float = 0.5,
                 max_batch: int = 256, init_std: float = 0.5, momentum: float = 0.9, weight_decay: float = 5e-4,
                 stateless: bool = False, reference: tuple[Tensor, Tensor] | None = None, k: int = 5,
                 start_max: int = 100, seed: int | None = 0) -> None:
        super().__init__(module, seed=seed)
        if not hasattr(module, "embed") or not isinstance(getattr(module, "head", None), nn.Linear):
            raise InputError(f"unig needs a classifier exposing embed(x) and head = nn.Linear, got "
                             f"{type(module).__name__}")
        if not isinstance(epochs, int) or epochs < 1:
            raise InputError(f"unig: epochs must be an int >= 1, got {epochs!r}")
        if not isinstance(max_batch, int) or max_batch < 1:
            raise InputError(f"unig: max_batch must be an int >= 1, got {max_batch!r}")
        self.epochs, self.max_batch = epochs, max_batch
        self.lr = check_positive("unig: lr", lr)
        self.delta = check_positive("unig: delta", delta)
        self.init_std = check_positive("unig: init_std", init_std, allow_zero=True)
        self.momentum = check_positive("unig: momentum", momentum, allow_zero=True)
        self.weight_decay = check_positive("unig: weight_decay", weight_decay, allow_zero=True)
        self.stateless = bool(stateless)
        self.k, self.start_max = int(k), int(start_max)
        self.combine = reference is not None
        if reference is not None:
            xr, yr = reference
            if xr.dim() != 4 or yr.dim() != 1 or xr.shape[0] != yr.shape[0]:
                raise InputError(f"unig: reference must be (x (M, C, H, W), y (M,)), got {tuple(xr.shape)} and "
                                 f"{tuple(yr.shape)}")
            if xr.shape[0] < self.k or self.k < 1:
                raise InputError(f"unig: combine mode needs k >= 1 and at least k={self.k} reference samples, got "
                                 f"{xr.shape[0]}")
            self.register_buffer("ref_x", xr.detach().float().clone(), persistent=False)
            self.register_buffer("ref_y", yr.detach().long().clone(), persistent=False)
        self._p: Tensor | None = None
        self._buf: Tensor | None = None  # the SGD momentum buffer (persists across calls unless stateless)
        self.last_loss: float | None = None

    @property
    def rows(self) -> int:
        return self.max_batch + (self.k if self.combine else 0)

    def reset_state(self) -> None:
        """Forget the optimizer's momentum (the state the reference keeps across queries)."""
        self._buf = None

    @property
    def momentum_buffer(self) -> Tensor | None:
        """The persisted SGD momentum buffer ``(rows, D)`` (None before the first step)."""
        return self._buf

    def _param(self, d: int, device: torch.device) -> Tensor:
        if self._p is None or self._p.shape[1] != d or self._p.device != device:
            self._p = torch.ones(self.rows, d, device=device)
            self._buf = None
        if self.stateless:
            self._buf = None
        return self._p

    @torch.no_grad()
    def _sgd_step(self, p: Tensor, grad: Tensor) -> None:
        """``torch.optim.SGD(lr, momentum, weight_decay)`` semantics (dampening 0, no Nesterov),
        written out: ``d = grad + wd p``; ``buf = d`` at the first step else ``momentum buf + d``;
        ``p -= lr buf``. torch.optim's per-step overhead dominates on a (256, D) parameter."""
        d = grad + self.weight_decay * p
        if self._buf is None:
            self._buf = d.clone()
        else:
            self._buf.mul_(self.momentum).add_(d)
        p.sub_(self.lr * self._buf)

    def defend(self, x: Tensor) -> Tensor:
        outs = [self._defend_chunk(x[i:i + self.max_batch]) for i in range(0, x.shape[0], self.max_batch)]
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    def _defend_chunk(self, x: Tensor) -> Tensor:
        b = int(x.shape[0])
        head = self.zoo_module().head
        with torch.inference_mode(False), torch.enable_grad():
            x = x.clone() if x.is_inference() else x
            gen = self.generator(x.device)
            with torch.no_grad():
                fea = self.inner_embed(x)
                target = head(fea).argmax(dim=1)
                if self.combine:
                    hi = max(1, min(self.start_max, int(self.ref_x.shape[0]) - self.k + 1))
                    s = int(torch.randint(0, hi, (1,), generator=gen, device=x.device))
                    fr = self.inner_embed(self.ref_x[s:s + self.k].to(x.device))
                    fea = torch.cat([fea, fr])
                    target = torch.cat([target, self.ref_y[s:s + self.k].to(x.device)])
            n = int(fea.shape[0])
            p = self._param(int(fea.shape[1]), fea.device)
            with torch.no_grad():
                p.copy_(1.0 + self.init_std * torch.randn(p.shape, generator=gen, device=p.device))
            p.requires_grad_(True)
            fea = fea.detach().clone().requires_grad_(True)
            if n < 2:
                with torch.no_grad():
                    p.clamp_(1.0 - self.delta, 1.0 + self.delta)
            else:
                mn: Tensor | None = None
                mx: Tensor | None = None
                for _ in range(self.epochs):
                    out = head(fea * p[:n])
                    (g,) = torch.autograd.grad(F.cross_entropy(out, target), fea, create_graph=True)
                    if mn is None or mx is None:  # the first epoch fixes the normalisation range
                        mn, mx = g.min().detach(), g.max().detach()
                    loss = unig_loss(g, mn, mx)
                    (gp,) = torch.autograd.grad(loss, p)
                    self._sgd_step(p, gp)
                    with torch.no_grad():
                        p.clamp_(1.0 - self.delta, 1.0 + self.delta)
                    self.last_loss = float(loss.detach())
            p.requires_grad_(False)
            with torch.no_grad():
                return head(fea.detach() * p[:n].detach())[:b].clone()


__all__ = ["UniG", "unig_loss"]
