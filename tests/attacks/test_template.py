"""The attack template and the query choke point (issue 15, deliverable 6): every attack runs through
the final ``Attack.run``; the template clips to the box and the ball, re-checks a moved point, ties the
per-image queries to the oracle's counter; EOT is a cost charged by the black box's one counting point;
BPDA never touches the caller's white box; the criteria behave as their definition on a model with a
known flip probability."""

from __future__ import annotations

import math

import pytest
import torch
from attack_helpers import SHAPE, build, images, linear10, model_for
from torch import Tensor, nn

from bbdefense.attacks import ATTACKS, Attack, lp_norm
from bbdefense.attacks import criteria as C
from bbdefense.attacks.base import Outcome
from bbdefense.attacks.bpda import Preprocessed
from bbdefense.attacks.eot import EOTBlackBox
from bbdefense.errors import InputError
from bbdefense.models import BlackBox, WhiteBox
from bbdefense.models.remote import HttpBlackBox, RemoteBlackBox

NAMES = sorted(ATTACKS)


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


# ---------------------------------------------------------------------------------------------- layout
@pytest.mark.parametrize("name", NAMES)
def test_every_registered_attack_uses_the_template(name: str) -> None:
    cls = ATTACKS[name]
    for klass in cls.__mro__:
        if klass is not Attack and issubclass(klass, Attack):
            assert "run" not in vars(klass), f"{klass.__name__} overrides the run template"
    assert "_run" in {k for c in cls.__mro__ if c is not Attack for k in vars(c)}
    assert isinstance(cls.criteria, tuple) and set(cls.criteria) <= set(C.CRITERIA)
    assert ("criterion" in cls.param_names()) == bool(cls.criteria)


def test_a_subclass_overriding_run_is_refused() -> None:
    with pytest.raises(TypeError, match=r"overrides Attack\.run, the final template"):
        class Rogue(Attack):
            def run(self, model, x, y, *, target=None, x_init=None):  # type: ignore[no-untyped-def,override]
                raise AssertionError


def test_every_black_box_that_can_stop_early_declares_fast_exp() -> None:
    for name, cls in ATTACKS.items():
        if cls.access in ("scores", "label") and "max_queries" in cls.param_names():
            assert "fast_exp" in cls.criteria, name


# --------------------------------------------------------------------------------- the template's tail
class _Overshoot(Attack):
    """A deliberately bad attack: steps 3 eps along +1, claims success everywhere, charges 1 query."""

    name = "overshoot"
    access = "label"
    norms = ("linf", "l2")
    criteria = ("single", "majority", "fooled_once")

    def __init__(self, *, eps: float = 0.1, norm: str = "linf", criterion: str = "single", k: int = 3,
                 lie: bool = False) -> None:
        self.eps, self.norm, self.criterion, self.k, self.lie = eps, norm, criterion, k, lie

    def _run(self, model: BlackBox, x: Tensor, y: Tensor, target: Tensor | None) -> Outcome:
        model.query(x)
        q = torch.ones(len(x), dtype=torch.long) + (1 if self.lie else 0)
        return Outcome(x_adv=(x + 3 * self.eps).clamp(0, 1) if self.norm == "linf" else x + 3 * self.eps,
                       success=torch.ones(len(x), dtype=torch.bool), queries=q)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_template_clips_to_box_and_ball_and_rechecks_moved_points(norm: str) -> None:
    bb = BlackBox.from_module(linear10(), input_shape=SHAPE, output="label")
    x = images(6)
    y = linear10()(x).argmax(1).detach()
    res = _Overshoot(eps=0.1, norm=norm).run(bb, x, y)
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    assert float(lp_norm(res.x_adv - x, norm).max()) <= 0.1 * (1 + 1e-5)
    assert torch.allclose(res.norms, lp_norm(res.x_adv - x, norm))
    # the claimed successes were re-checked on the clipped points, through audit, not charged
    assert res.audit_queries == 6 == bb.stats.audit_queries and bb.stats.queries == 6
    assert torch.equal(res.success, linear10()(res.x_adv).argmax(1).ne(y))


def test_template_refuses_queries_that_do_not_sum_to_the_counter() -> None:
    bb = BlackBox.from_module(linear10(), input_shape=SHAPE, output="label")
    x = images(3)
    with pytest.raises(RuntimeError, match="per-image queries 6 != oracle delta 3"):
        _Overshoot(lie=True).run(bb, x, linear10()(x).argmax(1).detach())


@pytest.mark.parametrize("kw,msg", [({"eps": -1.0}, "eps must be > 0"),
                                    ({"norm": "l1"}, "norm must be one of linf, l2"),
                                    ({"criterion": "fast_exp"},
                                     "criterion must be one of single, majority, fooled_once"),
                                    ({"k": 0}, "k .* must be >= 1")])
def test_template_validates_hyperparameters_before_any_query(kw: dict, msg: str) -> None:
    bb = BlackBox.from_module(linear10(), input_shape=SHAPE, output="label")
    with pytest.raises(InputError, match=msg):
        _Overshoot(**kw).run(bb, images(2), torch.zeros(2, dtype=torch.long))
    assert bb.stats.queries == 0 and bb.stats.audit_queries == 0


def test_template_validates_targets_before_any_query() -> None:
    bb = BlackBox.from_module(linear10(), input_shape=SHAPE)
    with pytest.raises(InputError, match=r"target labels must be in \[0, 10\)"):
        build("square").run(bb, images(2), torch.zeros(2, dtype=torch.long), target=torch.tensor([1, 12]))
    with pytest.raises(InputError, match="target must have shape"):
        build("rays").run(bb, images(2), torch.zeros(2, dtype=torch.long), target=torch.tensor([1]))
    assert bb.stats.queries == 0


@pytest.mark.parametrize("name", NAMES)
def test_queries_are_the_stats_delta_and_audits_the_audit_delta(name: str) -> None:
    attack = build(name)
    model = model_for(attack, linear10())
    x = images(5)
    y = linear10()(x).argmax(1).detach()
    model.query(x[:2])  # earlier traffic on the same oracle is not the run's
    q0, a0 = model.stats.queries, model.stats.audit_queries
    res = attack.run(model, x, y)
    assert int(res.queries.sum()) == model.stats.queries - q0
    assert res.audit_queries == model.stats.audit_queries - a0


# ----------------------------------------------------------------------------------- one counting point
def test_no_black_box_class_overrides_the_counting_path() -> None:
    for cls in [BlackBox, *_subclasses(BlackBox)]:
        for attr in ("query", "__call__", "audit", "stats", "reset_stats", "_forward", "_forward_chunk",
                     "_check_budget", "budget"):
            if cls is not BlackBox:
                assert attr not in vars(cls), f"{cls.__name__}.{attr} is a side door around BlackBox's counter"
    assert {EOTBlackBox, RemoteBlackBox, HttpBlackBox, WhiteBox} <= set(_subclasses(BlackBox))


def test_eot_charges_m_per_image_through_the_single_counting_point() -> None:
    inner = BlackBox.from_module(linear10(), input_shape=SHAPE, log_queries=True)
    eot = EOTBlackBox(inner, m=3)
    assert eot.query_cost == 3 and inner.query_cost == 1
    eot.query(images(4))
    eot.audit(images(2))
    assert inner.stats.queries == 12 and inner.stats.calls == 2 and inner.stats.audit_queries == 2
    assert [(e.n, e.kind) for e in inner.log] == [(12, "query"), (2, "audit")]  # one log, the inner model's
    inner.reset_stats()
    assert eot.stats.queries == 0
    eot.budget = 5
    assert inner.budget == 5
    from bbdefense.errors import QueryBudgetExceeded

    with pytest.raises(QueryBudgetExceeded):
        eot.query(images(2))  # 6 > 5 real queries: refused before anything is forwarded
    assert inner.stats.queries == 0


def test_eot_keeps_the_remote_chunking_and_charges_each_chunk() -> None:
    from bbdefense.models.backends import CallableBackend

    class Billing(CallableBackend):  # a fake remote API: 8 images per request, bills what it is sent
        def __init__(self) -> None:
            super().__init__(lambda x: torch.zeros(x.shape[0], 10), returns="logits")
            self.billed, self.max_batch = 0, 8

        def forward(self, x: Tensor) -> Tensor:
            assert x.shape[0] <= self.max_batch
            self.billed += int(x.shape[0])
            return super().forward(x)

    be = Billing()
    bb = RemoteBlackBox(be, num_classes=10, input_shape=(1, 4, 4))
    eot = EOTBlackBox(bb, m=4)
    eot.query(torch.rand(5, 1, 4, 4))
    assert bb.stats.queries == 20 == be.billed and bb.stats.calls == 3  # 2 + 2 + 1 images, 8 + 8 + 4 sent


def test_a_view_shares_the_counters_and_leaves_the_original_alone() -> None:
    wb = WhiteBox(linear10(), input_shape=SHAPE, budget=100)
    backend = wb.backend
    view = wb.with_backend(type(backend)(nn.Sequential(nn.Identity(), linear10())))
    view.logits(images(3))
    assert wb.backend is backend and wb.stats.queries == 3 and view.stats.queries == 3 and view.budget == 100


def test_bpda_leaves_the_callers_white_box_unchanged() -> None:
    module = Preprocessed(nn.Identity(), linear10())
    wb = WhiteBox(module, input_shape=SHAPE)
    backend = wb.backend
    x = images(4)
    y = linear10()(x).argmax(1).detach()
    res = ATTACKS["bpda"](attack="pgd", attack_params={"eps": 0.1, "steps": 3}).run(wb, x, y)
    assert wb.backend is backend and wb.module is module
    assert int(res.queries.sum()) == wb.stats.queries > 0  # charged on the caller's counter
    with pytest.raises(InputError):  # an inner attack that fails leaves it unchanged too
        ATTACKS["bpda"](attack="pgd", attack_params={"eps": -1.0}).run(wb, x, y)
    assert wb.backend is backend


# ------------------------------------------------------------- criteria on a known flip probability
P_FLIP = 0.3


def flipper(p: float = P_FLIP, randomized: bool = True) -> BlackBox:
    """Labels ``(true + 1) % 10`` with probability ``p``, the true label otherwise (true = linear10's)."""
    g = torch.Generator().manual_seed(11)
    net = linear10()

    def fn(x: Tensor) -> Tensor:
        with torch.no_grad():
            lab = net(x).argmax(1)
        flip = torch.rand(len(x), generator=g) < p
        return torch.where(flip, (lab + 1) % 10, lab)

    return BlackBox.from_callable(fn, returns="label", num_classes=10, input_shape=SHAPE, randomized=randomized,
                                  output="label")


def _binom_tail(k: int, p: float) -> float:
    return sum(math.comb(k, j) * p**j * (1 - p) ** (k - j) for j in range(k // 2 + 1, k + 1))


@pytest.mark.parametrize("criterion,k,expected,audits", [
    ("fooled_once", 5, 1.0, 0),
    ("single", 5, P_FLIP, 1),
    ("majority", 5, _binom_tail(5, P_FLIP), 5),    # P(Bin(5, 0.3) >= 3) = 0.163
    ("fast_exp", 5, _binom_tail(5, P_FLIP), 5),    # nothing confirmed during a run: majority at the end
])
def test_criteria_on_a_model_with_a_known_flip_probability(criterion: str, k: int, expected: float,
                                                           audits: int) -> None:
    n = 3000
    bb = flipper()
    x = images(n, seed=3)
    y = linear10()(x).argmax(1).detach()
    claimed = torch.ones(n, dtype=torch.bool)
    success = C.decide(bb, criterion, k, x, y, None, claimed)
    tol = 4 * math.sqrt(expected * (1 - expected) / n) + 1e-9
    assert abs(float(success.float().mean()) - expected) <= tol
    assert bb.stats.audit_queries == audits * n and bb.stats.queries == 0


def test_fast_exp_keeps_the_confirmed_and_votes_on_the_rest() -> None:
    n = 2000
    bb = flipper()
    x = images(n, seed=4)
    y = linear10()(x).argmax(1).detach()
    claimed = torch.ones(n, dtype=torch.bool)
    confirmed = torch.arange(n) < n // 2
    s = C.decide(bb, "fast_exp", 9, x, y, None, claimed, confirmed)
    assert bool(s[: n // 2].all())
    p9 = _binom_tail(9, P_FLIP)  # 0.099
    assert abs(float(s[n // 2:].float().mean()) - p9) <= 4 * math.sqrt(p9 * (1 - p9) / (n // 2))
    assert bb.stats.audit_queries == 9 * (n // 2)


@pytest.mark.parametrize("criterion", C.CRITERIA)
def test_criteria_make_no_query_on_a_deterministic_model(criterion: str) -> None:
    bb = flipper(p=0.0, randomized=False)
    x = images(8)
    claimed = torch.tensor([True, False] * 4)
    assert torch.equal(C.decide(bb, criterion, 9, x, torch.zeros(8, dtype=torch.long), None, claimed), claimed)
    assert bb.stats.audit_queries == 0


def test_an_attack_applies_its_criterion_through_the_template() -> None:
    """Transfer's own verdict is one charged query; ``single`` re-queries each x_adv once via audit."""
    x = images(400, seed=5)
    y = linear10()(x).argmax(1).detach()
    bb = flipper()
    res = ATTACKS["transfer"](surrogate=linear10(seed=1), attack_params={"eps": 1e-4, "steps": 1},
                              criterion="single").run(bb, x, y)
    assert res.criterion == "single" and res.audit_queries == 400 and int(res.queries.sum()) == 400
    # with eps 1e-4 the surrogate's point keeps the true label: success only through a flip, p = 0.3
    assert abs(float(res.success.float().mean()) - P_FLIP) <= 4 * math.sqrt(P_FLIP * (1 - P_FLIP) / 400)
