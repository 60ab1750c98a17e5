"""Interop adapters: ART classifiers in and out, RobustBench-format state dicts, torchattacks-style calls,
from_callable's output default."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bbdefense import BlackBox
from bbdefense.certify import Smooth, make_noise
from bbdefense.errors import CheckpointError, InputError, MissingExtraError
from bbdefense.evaluation.attacks import build_attack
from bbdefense.models import build_model
from bbdefense.models.interop import art_predict_fn, load_robustbench_state, to_art

SHAPE = (1, 4, 4)
W = torch.arange(48, dtype=torch.float32).reshape(3, 16) / 48 - 0.5  # a fixed linear classifier


class FakeArtClassifier:
    """ART's classifier contract (predict, nb_classes, input_shape, clip_values, channels_first) on a linear
    model, as ART's PyTorchClassifier exposes it: ``predict`` takes numpy in clip_values' range."""

    def __init__(self, clip=(0.0, 1.0)) -> None:
        self.nb_classes, self.input_shape, self.clip_values, self.channels_first = 3, SHAPE, clip, True
        self.calls: list[int] = []

    def predict(self, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
        self.calls.append(len(x))
        x01 = x / self.clip_values[1]
        return (x01.reshape(len(x), -1) @ W.numpy().T).astype(np.float32)


def test_from_art_answers_like_the_estimator_and_counts_queries():
    est = FakeArtClassifier()
    bb = BlackBox.from_art(est, budget=10)
    x = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(0))
    out = bb.query(x)
    assert torch.allclose(out, x.reshape(4, -1) @ W.T, atol=1e-6)
    assert bb.stats.queries == 4 and est.calls == [4] and bb.num_classes == 3 and bb.input_shape == SHAPE


def test_from_art_scales_to_0_255_estimators():
    est = FakeArtClassifier(clip=(0.0, 255.0))
    x = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(BlackBox.from_art(est).query(x), x.reshape(2, -1) @ W.T, atol=1e-5)


def test_from_art_rejects_what_is_not_an_art_classifier():
    with pytest.raises(InputError, match="no 'predict'"):
        BlackBox.from_art(object())
    est = FakeArtClassifier(clip=(-1.0, 1.0))
    with pytest.raises(InputError, match="clip_values"):
        BlackBox.from_art(est)


def test_from_callable_output_defaults_to_what_the_callable_returns():
    bb = BlackBox.from_callable(lambda x: torch.zeros(x.shape[0], dtype=torch.long), returns="label",
                                num_classes=3, input_shape=SHAPE)
    assert bb.output == "label"
    assert bb.predict_label(torch.zeros(2, *SHAPE)).tolist() == [0, 0]


def test_to_art_predict_fn_gives_probabilities_and_one_hot_smooth_labels():
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3, bias=False))
    lin[1].weight.data = W.clone()
    bb = BlackBox.from_module(lin, num_classes=3, input_shape=SHAPE)
    x = np.random.default_rng(0).random((5, *SHAPE), dtype=np.float32)
    p = art_predict_fn(bb)(x)
    assert np.allclose(p, torch.softmax(torch.from_numpy(x).reshape(5, -1) @ W.T, 1).numpy(), atol=1e-6)
    assert bb.stats.queries == 5
    sm = Smooth(bb, make_noise("gaussian", sigma=0.01))
    oh = art_predict_fn(sm, n=20, alpha=0.001, seed=0)(x)
    want = (torch.from_numpy(x).reshape(5, -1) @ W.T).argmax(1).numpy()
    assert oh.shape == (5, 3) and np.array_equal(oh.argmax(1), want) and set(np.unique(oh)) <= {0.0, 1.0}


def test_to_art_without_art_is_one_clear_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "art", None)  # blocks `import art...` like an uninstalled package
    monkeypatch.setitem(sys.modules, "art.estimators.classification", None)
    bb = BlackBox.from_callable(lambda x: torch.zeros(x.shape[0], 3), num_classes=3, input_shape=SHAPE)
    with pytest.raises(MissingExtraError, match="pip install adversarial-robustness-toolbox"):
        to_art(bb)


def test_attack_call_is_torchattacks_style():
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3, bias=False))
    lin[1].weight.data = W.clone()
    x = torch.rand(3, *SHAPE, generator=torch.Generator().manual_seed(2))
    y = (x.reshape(3, -1) @ W.T).argmax(1)
    atk = build_attack("square", norm="linf", eps=0.3, max_queries=50, seed=0)
    x_adv = atk(BlackBox.from_module(lin, num_classes=3, input_shape=SHAPE), x, y)
    res = build_attack("square", norm="linf", eps=0.3, max_queries=50, seed=0).run(
        BlackBox.from_module(lin, num_classes=3, input_shape=SHAPE), x, y)
    assert torch.equal(x_adv, res.x_adv) and x_adv.shape == x.shape


def _rb_file(tmp_path, model, *, wrap="state_dict", prefix="module."):
    """A RobustBench-style file: the architecture's own key names (no zoo normalisation), DataParallel's
    ``module.`` prefix, under ``state_dict``."""
    sd = {prefix + k.removeprefix("body.").replace("head.", "fc."): v for k, v in model.state_dict().items()
          if not k.startswith("normalize.")}
    path = tmp_path / "rb.pt"
    torch.save({wrap: sd} if wrap else sd, path)
    return path


@pytest.mark.parametrize("wrap", ["state_dict", "model_state_dict", None])
def test_robustbench_state_dict_loads_into_the_zoo_architecture(tmp_path, wrap):
    src = build_model("lenet", num_classes=10, in_channels=1, image_size=28, mean=[0.0], std=[1.0]).eval()
    path = _rb_file(tmp_path, src, wrap=wrap)
    got = load_robustbench_state(path, "lenet", in_channels=1, image_size=28)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(got(x), src(x), atol=1e-6)


def test_robustbench_state_dict_that_does_not_fit_names_the_keys(tmp_path):
    src = build_model("lenet", num_classes=10, in_channels=1, image_size=28, mean=[0.0], std=[1.0])
    path = _rb_file(tmp_path, src)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_robustbench_state(path, "smallcnn", in_channels=1, image_size=28)
    with pytest.raises(CheckpointError, match="not found"):
        load_robustbench_state(tmp_path / "none.pt", "lenet")
