"""White-box attacks (pgd, apgd, acg, bpda, transfer) on linear models with closed-form optima."""

from __future__ import annotations

import pytest
import torch
from _attacks2_helpers import SHAPE, binary_problem, multiclass_model
from torch import nn

from bbdefense.attacks import ATTACKS
from bbdefense.attacks.bpda import Preprocessed
from bbdefense.errors import AccessError, InputError
from bbdefense.models import BlackBox, WhiteBox


def _optimum(x: torch.Tensor, y: torch.Tensor, model: nn.Module, eps: float, norm: str) -> torch.Tensor:
    """argmax of the binary CE over the ball: move along +-(w1 - w0) (sign for linf, unit for l2)."""
    w = model.lin.weight.detach()  # type: ignore[union-attr]
    dw = w[1] - w[0]
    s = torch.where(y == 0, 1.0, -1.0)[:, None]
    step = eps * dw.sign() if norm == "linf" else eps * dw / dw.norm()
    return (x.flatten(1) + s * step[None]).clamp(0, 1).view_as(x)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_reaches_closed_form_optimum_on_linear_model(norm: str) -> None:
    model, x, y, l2, linf = binary_problem(n=8)
    eps = 0.5 * float((linf if norm == "linf" else l2).min())  # below every minimal distance: no success
    wb = WhiteBox(model, input_shape=SHAPE)
    # (l2 from x: a random start's orthogonal part decays only geometrically under l2 projection)
    res = ATTACKS["pgd"](eps=eps, norm=norm, steps=30, step_size=eps / 5, early_stop=False,
                         random_start=norm == "linf").run(wb, x, y)
    assert not bool(res.success.any())
    assert torch.allclose(res.x_adv, _optimum(x, y, model, eps, norm), atol=1e-4)
    assert res.queries.tolist() == [31] * 8 and int(res.queries.sum()) == wb.stats.queries


def test_pgd_l1_stays_in_ball_and_increases_loss() -> None:
    model, x, y, _, _ = binary_problem(n=8)
    wb = WhiteBox(model, input_shape=SHAPE)
    res = ATTACKS["pgd"](eps=1.0, norm="l1", steps=10, early_stop=False).run(wb, x, y)
    assert bool((res.norms <= 1.0 + 1e-4).all())
    with torch.no_grad():
        before = nn.functional.cross_entropy(model(x), y, reduction="none")
        after = nn.functional.cross_entropy(model(res.x_adv), y, reduction="none")
    assert bool((after > before).all())


@pytest.mark.parametrize("name", ["pgd", "apgd", "acg"])
def test_gradient_attacks_succeed_exactly_above_true_linf_distance(name: str) -> None:
    model, x, y, _, linf = binary_problem(n=10, seed=1)
    eps = float(linf.median())
    wb = WhiteBox(model, input_shape=SHAPE)
    kw = {"loss": "ce"} if name != "pgd" else {}
    res = ATTACKS[name](eps=eps, steps=20, **kw).run(wb, x, y)
    assert res.success.tolist() == (linf < eps * (1 - 1e-4)).tolist() or \
        res.success.tolist() == (linf < eps).tolist()
    assert bool((res.norms <= eps + 1e-6).all()) and int(res.queries.sum()) == wb.stats.queries


def test_apgd_at_least_as_strong_as_pgd_on_multiclass_model() -> None:
    model = multiclass_model()
    x = torch.rand(24, *SHAPE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = model(x).argmax(1)
    eps = 0.03
    wb = WhiteBox(model, input_shape=SHAPE)
    pgd = ATTACKS["pgd"](eps=eps, steps=20).run(wb, x, y)
    for loss in ("ce", "dlr"):
        apgd = ATTACKS["apgd"](eps=eps, steps=20, loss=loss).run(wb, x, y)
        assert apgd.success.sum() >= pgd.success.sum(), loss
    acg = ATTACKS["acg"](eps=eps, steps=20).run(wb, x, y)
    assert acg.success.sum() >= pgd.success.sum()
    assert 0 < int(pgd.success.sum()) < len(x), "eps should make the comparison informative"


def test_apgd_targeted_reaches_target() -> None:
    model = multiclass_model()
    x = torch.rand(8, *SHAPE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = model(x).argmax(1)
    tgt = (y + 1) % 10
    res = ATTACKS["apgd"](eps=0.3, steps=30, loss="dlr").run(WhiteBox(model, input_shape=SHAPE), x, y, target=tgt)
    with torch.no_grad():
        assert model(res.x_adv).argmax(1)[res.success].eq(tgt[res.success]).all()
    assert bool(res.success.all())


class Quantize(nn.Module):
    """8-level bit-depth reduction: zero gradient almost everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * 7) / 7


def test_bpda_breaks_quantization_where_plain_pgd_gets_no_gradient() -> None:
    model, x, y, _, linf = binary_problem(n=8, seed=2)
    defended = Preprocessed(Quantize(), model)
    with torch.no_grad():
        keep = defended(x).argmax(1) == y
    x, y, linf = x[keep], y[keep], linf[keep]
    eps = float(linf.max()) * 2 + 1 / 7
    wb = WhiteBox(defended, input_shape=SHAPE)
    plain = ATTACKS["pgd"](eps=eps, steps=10, random_start=False).run(wb, x, y)
    bpda = ATTACKS["bpda"](attack="pgd", attack_params={"eps": eps, "steps": 10, "random_start": False}).run(wb, x, y)
    assert int(plain.success.sum()) == 0
    assert bool(bpda.success.all())
    with torch.no_grad():
        assert defended(bpda.x_adv).argmax(1).ne(y).all()  # success is judged on the exact forward pass
    assert int(plain.queries.sum() + bpda.queries.sum()) == wb.stats.queries
    assert isinstance(wb.module, Preprocessed), "the backend is restored after the run"


def test_bpda_refuses_model_without_front_end() -> None:
    model, x, y, _, _ = binary_problem(n=2)
    with pytest.raises(AccessError, match="front_end"):
        ATTACKS["bpda"]().run(WhiteBox(model, input_shape=SHAPE), x, y)


def test_transfer_charges_only_verification_queries() -> None:
    model, x, y, _, linf = binary_problem(n=8, seed=7)
    eps = float(linf.max()) * 1.5
    target = BlackBox.from_module(model, input_shape=SHAPE, output="label")
    res = ATTACKS["transfer"](surrogate=model, attack_params={"eps": eps, "steps": 20}).run(target, x, y)
    assert res.queries.tolist() == [1] * 8 and target.stats.queries == 8
    assert bool(res.success.all()) and res.extra["surrogate_queries"] > 8
    with pytest.raises(InputError, match="surrogate"):
        ATTACKS["transfer"]().run(target, x, y)
