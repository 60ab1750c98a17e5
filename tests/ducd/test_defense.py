"""DUCD defense: Algorithm 3 rules, pass-through to Cohen's CERTIFY, noise fine-tuning, the pipeline."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from bbdefense.certified.ducd import DistillConfig
from bbdefense.certified.ducd.defense import CertifiedClassifier, noise_finetune
from bbdefense.certify import Smooth, make_noise
from bbdefense.data import ImageDataset
from bbdefense.errors import InputError
from bbdefense.experiments.papers.ducd import DUCDConfig, certified_accuracy, default_radii, robust_score, run_ducd
from bbdefense.experiments.papers.settings import CertifySettings
from bbdefense.models import BlackBox
from bbdefense.records import RunDir
from linear_helpers import Linear

SHAPE = (1, 4, 4)


def _binary(margin: float) -> Linear:
    """logit_1 - logit_0 = 4 * (mean(x) - 0.5) + margin: class 1 where the image is bright."""
    w = torch.zeros(2, 16)
    w[1] = 4.0 / 16
    return Linear(w, torch.tensor([2.0 - margin / 2, margin / 2]))


def _clf(model: nn.Module, **kw) -> CertifiedClassifier:
    bb = BlackBox.from_module(model, input_shape=SHAPE)
    return CertifiedClassifier(bb, make_noise("gaussian", sigma=0.25), n0=50, n=400, **kw)


def test_algorithm3_rules_by_hand() -> None:
    clf = _clf(_binary(0.0), zeta=0.5, iota=0.6)
    assert clf.algorithm3_passes([10, 70, 20], 1)          # 20 <= 0.5*70 and 0.7 > 0.6
    assert not clf.algorithm3_passes([36, 64, 0], 1)       # 36 > 0.5*64: abstain (zeta rule)
    assert not clf.algorithm3_passes([0, 60, 40], 1)       # 40 > 30: zeta rule again
    clf2 = _clf(_binary(0.0), zeta=1.0, iota=0.6)
    assert not clf2.algorithm3_passes([45, 55, 0], 1)      # 0.55 <= 0.6: iota rule
    assert clf2.algorithm3_passes([39, 61, 0], 1)
    assert not clf2.algorithm3_passes([39, 61, 0], -1)


def test_default_thresholds_reduce_to_cohen_certify() -> None:
    x = torch.full((6, *SHAPE), 0.0)
    x[:, :, :, :2] = torch.linspace(0.3, 1.0, 6).view(6, 1, 1, 1)  # brightness from dark to bright
    model = _binary(0.0)
    clf = _clf(model)
    ours = clf.certify(x, seed=3)
    ref = Smooth(BlackBox.from_module(model, input_shape=SHAPE), make_noise("gaussian", sigma=0.25)).certify(
        x, n0=50, n=400, seed=3)
    assert [c.label for c in ours] == [c.label for c in ref]
    assert [c.radius for c in ours] == [c.radius for c in ref]
    assert clf.model.stats.queries == 6 * (50 + 400)


def test_strict_iota_abstains_where_cohen_certifies() -> None:
    x = torch.full((1, *SHAPE), 0.55)  # mean 0.55: pA of class 1 about Phi(0.2/0.25*...) well below 0.99
    model = _binary(0.0)
    loose = _clf(model).certify(x, seed=0)[0]
    strict = _clf(model, iota=0.99).certify(x, seed=0)[0]
    assert not loose.abstain and loose.label == 1
    assert strict.abstain and strict.label == -1 and all(v == 0.0 for v in strict.radius.values())


@pytest.mark.parametrize("kw,msg", [({"zeta": 0.0}, "zeta must be in"), ({"iota": 1.0}, "iota must be in")])
def test_bad_thresholds(kw: dict, msg: str) -> None:
    with pytest.raises(InputError, match=msg):
        _clf(_binary(0.0), **kw)


def test_noise_finetune_copies_and_is_seeded() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, *SHAPE, generator=g)
    y = (x.flatten(1).mean(1) > 0.5).long()
    data = ImageDataset("toy", x, y, ["0", "1"], (0.5,), (0.25,))
    base = _binary(1.0)
    before = base.lin.weight.clone()
    a = noise_finetune(base, data, noise="laplace", sigma=0.25, epochs=2, seed=1)
    b = noise_finetune(base, data, noise="laplace", sigma=0.25, epochs=2, seed=1)
    assert torch.equal(base.lin.weight, before)
    assert torch.equal(a.lin.weight, b.lin.weight) and not torch.equal(a.lin.weight, before)


def test_certified_accuracy_and_score_by_hand() -> None:
    rows = [{"y": 1, "label": 1, "radius": {"l2": 0.6}}, {"y": 0, "label": 0, "radius": {"l2": 0.2}},
            {"y": 1, "label": 0, "radius": {"l2": 0.9}}, {"y": 2, "label": -1, "radius": {"l2": 0.0}}]
    assert certified_accuracy(rows, "l2", [0.0, 0.25, 0.6, 0.7]) == [0.5, 0.25, 0.25, 0.0]
    assert robust_score([0.5, 0.25, 0.0], [0.0, 1.0, 2.0]) == pytest.approx(0.375 + 0.125)
    assert default_radii("linf", 784)[3] == pytest.approx(1.0 / 28, abs=1e-5)


def test_pipeline_end_to_end_on_a_linear_target(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    teacher = Linear(torch.randn(3, 16, generator=g) * 3, torch.zeros(3))
    x = torch.rand(300, *SHAPE, generator=g)
    y = teacher(x).argmax(1).detach()
    ds = ImageDataset("toy", x, y, ["a", "b", "c"], (0.5,), (0.25,))
    defender, test = ds.subset(torch.arange(200)), ds.subset(torch.arange(200, 300))
    bb = BlackBox.from_module(teacher, input_shape=SHAPE, budget=500)
    student = Linear(torch.zeros(3, 16), torch.zeros(3))
    run = RunDir(tmp_path / "run", kind="ducd", config={"t": 1})
    cfg = DUCDConfig(sigmas=(0.25,), norms=("l1", "l2"), n_images=8, certify=CertifySettings(n0=20, n=100),
                     finetune_epochs=1)
    dcfg = DistillConfig(budget=500, epochs=30, lr=0.05, batch_size=50)
    s = run_ducd(run, bb, student, defender, test, cfg, distill_cfg=dcfg, target_module=teacher, owner_train=defender,
                 rs_model=lambda sigma: teacher)
    assert s["distill_queries"] == 500 and bb.stats.queries == 500  # certification never queries the target
    assert s["fidelity"] >= 0.9
    titles = [t["title"] for t in run.record.tables]
    assert any(t.startswith("Certified accuracy, l1 (laplace") for t in titles)
    assert any(p["title"].startswith("pA-R curve, l2") for p in run.record.plots)
    lines = (run.path / "rows" / "cert_DUCD_gaussian_0.25.jsonl").read_text().splitlines()
    assert len(lines) == 8 and json.loads(lines[0])["queries"] == 120
    assert {"DUCD.l2.score", "WUCD.l2.score", "DUCD.l1.score", "RS.l2.score"} <= set(s)
    # RS is Gaussian smoothing: the l1 table carries it too, from the same certificates (l1 radius = l2 radius)
    l1 = next(t for t in run.record.tables if t["title"].startswith("Certified accuracy, l1"))
    l2 = next(t for t in run.record.tables if t["title"].startswith("Certified accuracy, l2"))
    rs1 = next(r for r in l1["rows"] if r[0] == "RS (gaussian)")
    rs2 = next(r for r in l2["rows"] if r[0] == "RS")
    assert rs1[1:] == rs2[1:] and s["RS.l1.score"] == s["RS.l2.score"]


def test_attack_success_grows_with_eps_on_the_certified_classifier() -> None:
    from bbdefense.certified.ducd.attack import attack_success_curve

    model = _binary(0.0)
    x = torch.linspace(0.75, 1.0, 6).view(6, 1, 1, 1).expand(6, *SHAPE).contiguous()  # bright: class 1
    y = torch.ones(6, dtype=torch.long)
    clf = _clf(model)
    rows = attack_success_curve(clf, model, "apgd", x, y, [0.01, 3.0], norm="l2", n_predict=100,
                                attack_params={"steps": 10})
    assert [r["eps"] for r in rows] == [0.01, 3.0] and rows[0]["n_correct"] == 6
    assert rows[0]["asr"] == 0.0 and rows[1]["asr"] == 1.0  # a 0.01 step cannot cross, 3.0 always can
    assert rows[1]["queries"] > 0 and rows[1]["mode"].startswith("white-box")
    lab = attack_success_curve(clf, model, "hsja", x[:2], y[:2], [0.01, 3.0], norm="l2", n_predict=20,
                               attack_params={"max_queries": 60, "init_num_evals": 5, "max_num_evals": 10,
                                              "num_iterations": 2})
    assert lab[0]["mode"].startswith("direct") and 0 < lab[0]["queries"] <= 2 * 60
    # one min-norm run serves every eps: same queries, ASR monotone in eps, nothing within 0.01
    assert lab[0]["queries"] == lab[1]["queries"] and lab[0]["asr"] == 0.0 <= lab[1]["asr"]
