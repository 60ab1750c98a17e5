"""UniG: one step matches a hand computation on a tiny linear head; statefulness, batch-order
dependence, the single-sample (combine) mode, and argmax preservation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bbdefense.defenses import UniG, logit_difference
from bbdefense.models.zoo.base import ImageClassifier, Normalize
from bbdefense.utils import make_generator


class TinyLinear(ImageClassifier):
    """Features = the 3 pixels of a (1, 1, 3) image; head = Linear(3, 2)."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.normalize = Normalize((0.0,), (1.0,))
        self.body = nn.Flatten()
        self.head = nn.Linear(3, 2)
        with torch.no_grad():
            self.head.weight.copy_(w)
            self.head.bias.copy_(b)


def _tiny() -> TinyLinear:
    return TinyLinear(torch.tensor([[1.0, -2.0, 0.5], [-0.5, 1.0, 1.5]]), torch.tensor([0.1, -0.2])).eval()


def _hand_loss(p: torch.Tensor, f: torch.Tensor, w: torch.Tensor, b: torch.Tensor, t: torch.Tensor,
               mn: float | None = None, mx: float | None = None) -> tuple[torch.Tensor, float, float]:
    """The UniG loss written out in closed form (float64): g_i = p_i * W^T (softmax_i - e_t_i) / B."""
    n = f.shape[0]
    z = (f * p) @ w.T + b
    s = torch.exp(z - z.max(1, keepdim=True).values)
    s = s / s.sum(1, keepdim=True)
    e = torch.zeros_like(s)
    e[torch.arange(n), t] = 1.0
    g = p * ((s - e) @ w) / n
    if mn is None:
        mn, mx = float(g.min()), float(g.max())
    gn = (g - mn) / (mx - mn)
    loss = sum(torch.sqrt(((gn[j] - gn[j + 1]) ** 2).sum()) for j in range(n - 1))
    return loss, mn, mx  # type: ignore[return-value]


def test_one_step_matches_hand_computation_with_finite_differences() -> None:
    model = _tiny()
    x = torch.tensor([[0.2, 0.9, 0.4], [0.7, 0.1, 0.3], [0.5, 0.5, 0.9]]).view(3, 1, 1, 3)
    lr, wd, delta, seed = 0.5, 5e-4, 0.3, 11
    d = UniG(model, epochs=1, lr=lr, delta=delta, max_batch=4, weight_decay=wd, seed=seed)
    out = d(x)
    # p0 as the defense draws it: N(1, 0.5^2) of shape (max_batch, D) from its own generator
    p0 = (1.0 + 0.5 * torch.randn(4, 3, generator=make_generator(seed))).double()
    f = x.flatten(1).double()
    w, b = model.head.weight.detach().double(), model.head.bias.detach().double()
    t = (f @ w.T + b).argmax(1)
    _, mn, mx = _hand_loss(p0[:3], f, w, b, t)
    grad = torch.zeros_like(p0)
    h = 1e-6
    for i in range(3):  # rows >= B get no gradient
        for j in range(3):
            pp, pm = p0.clone(), p0.clone()
            pp[i, j] += h
            pm[i, j] -= h
            up, down = _hand_loss(pp[:3], f, w, b, t, mn, mx)[0], _hand_loss(pm[:3], f, w, b, t, mn, mx)[0]
            grad[i, j] = (up - down) / (2 * h)
    p1 = (p0 - lr * (grad + wd * p0)).clamp(1 - delta, 1 + delta)  # first SGD step: buf = grad + wd p
    expected = (f * p1[:3]) @ w.T + b
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-5)


def _model10() -> nn.Module:
    from bbdefense.models.zoo import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model("smallcnn", num_classes=10, in_channels=1, image_size=8).eval()


def test_momentum_persists_across_calls_unless_stateless() -> None:
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    a, s = UniG(_model10(), seed=1), UniG(_model10(), seed=1, stateless=True)
    torch.testing.assert_close(a(x), s(x))  # first call: identical (no momentum yet)
    assert a.momentum_buffer is not None
    assert not torch.allclose(a(x), s(x))  # second call: the stateful one carries momentum
    s2 = UniG(_model10(), seed=1, stateless=True)
    s2(x)
    s.reseed(1)
    s.reset_stats()
    torch.testing.assert_close(s(x), s2.__class__(_model10(), seed=1, stateless=True)(x))


def test_output_depends_on_batch_order() -> None:
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    perm = torch.tensor([5, 0, 3, 1, 4, 2])
    y1 = UniG(_model10(), seed=1, init_std=0.0)(x)
    y2 = UniG(_model10(), seed=1, init_std=0.0)(x[perm])
    assert not torch.allclose(y1[perm], y2, atol=1e-6)


def test_single_sample_mode_pads_with_k_reference_samples() -> None:
    ref = (torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(2)), torch.arange(8))
    d = UniG(_model10(), reference=ref, k=5, seed=0)
    out = d(torch.rand(1, 1, 8, 8))
    assert out.shape == (1, 10) and d.stats.inner_queries == 6 and d.last_loss is not None
    plain = UniG(_model10(), seed=0, delta=0.2)
    y = plain(torch.rand(1, 1, 8, 8))  # no reference: no optimisation, p clamped to [0.8, 1.2]
    assert y.shape == (1, 10) and plain.last_loss is None


@pytest.mark.slow
def test_unig_keeps_clean_predictions_and_small_logit_difference(tmp_path, mnist_splits) -> None:
    # Issue 5: on the MNIST target (the demo's recipe, 97.4% clean), UniG keeps clean accuracy within 0.5 points.
    from bbdefense.experiments.demo import DEMO_ARCH, DEMO_DATASET, DEMO_TRAIN
    from bbdefense.models import load_checkpoint
    from bbdefense.training import train_target

    path, _ = train_target(DEMO_ARCH, DEMO_DATASET, tmp_path / "target", DEMO_TRAIN)
    model, _ = load_checkpoint(path)
    test = mnist_splits.test
    x, y = test.x[:512], test.y[:512]
    d = UniG(model, seed=0)
    with torch.no_grad():
        und = torch.cat([model(x[i:i + 256]) for i in (0, 256)])
        dfd = torch.cat([d(x[i:i + 256]) for i in (0, 256)])
    acc_u = float((und.argmax(1) == y).float().mean())
    acc_d = float((dfd.argmax(1) == y).float().mean())
    assert abs(acc_u - acc_d) <= 0.005 + 1e-9, (acc_u, acc_d)
    assert logit_difference(UniG(model, seed=0), model, x[:256], batch_size=256) > 0


def test_bad_unig_arguments() -> None:
    from bbdefense.errors import InputError

    with pytest.raises(InputError, match="epochs must be an int >= 1, got 0"):
        UniG(_model10(), epochs=0)
    with pytest.raises(InputError, match="at least k=5 reference samples, got 3"):
        UniG(_model10(), reference=(torch.rand(3, 1, 8, 8), torch.zeros(3, dtype=torch.long)))
