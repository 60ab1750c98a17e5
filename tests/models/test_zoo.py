"""Contract tests over the model-zoo registry, parameter counts pinned to the literature, DnCNN at
init, autoencoder latents, normalisation first, checkpoint round trips."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from bbdefense.errors import InputError, UnknownNameError
from bbdefense.models.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from bbdefense.models.zoo import MODELS, ImageClassifier, Normalize, build_model, classifier_names

INPUTS = {"mnist": (1, 28), "cifar": (3, 32), "stl": (3, 96)}
# Real forwards of the big nets at 96x96 cost seconds on 2 cores: the default suite checks every entry
# at every input size on the "meta" device (true shapes, no arithmetic) and runs one real forward per
# entry on a tiny input (the nets over 15M parameters only in the slow suite: their initialisation
# alone costs seconds; their block types run for real through smaller members of their family); the
# slow suite runs the full matrix for real.
HEAVY = {"resnet34", "resnet50", "vgg19", "wideresnet", "wrn28_10"}

# Exact parameter counts for 10 classes (classifiers: 3 input channels). Each is the architecture of
# the cited paper/reference; the published (rounded) figure it matches is in the comment.
PARAMS = {
    "resnet20": 269_722,          # He et al. 2016 Table 6: 0.27M (option A shortcuts)
    "resnet110": 1_727_962,       # He et al. 2016 Table 6: 1.7M
    "resnet18": 11_173_962,       # CIFAR ResNet-18 (kuangliu/pytorch-cifar): 11.17M
    "resnet34": 21_282_122,       # CIFAR ResNet-34: 21.28M
    "resnet50": 23_520_842,       # CIFAR ResNet-50: 23.52M
    "preact_resnet18": 11_172_170,  # He et al. 2016b PreAct-18 with final BN: 11.17M
    "vgg16": 14_728_266,          # CIFAR VGG-16-BN (kuangliu/pytorch-cifar): 14.7M
    "vgg19": 20_040_522,          # CIFAR VGG-19-BN: 20.0M
    "wideresnet": 36_479_194,     # Zagoruyko & Komodakis 2016 Table: WRN-28-10 36.5M
    "wrn28_10": 36_479_194,       # same
    "wrn16_4": 2_748_890,         # Zagoruyko & Komodakis 2016: WRN-16-4 2.7M
    "smallcnn": 468_394,          # foundation SmallCNN with 3 channels (467,818 with 1)
    "lenet": 62_006,              # LeNet-5 with 3 input channels (61,706 with 1)
    "dncnn": 558_400,             # DnCNN-17, 64 ch, 3 channels (Zhang et al. 2017: ~0.56M)
    "unet": 31_037_763,           # Ronneberger UNet, 3 -> 3 channels, with BN (see the next test)
    "cifar_ae_192": 318_483,      # ZO-AE-DS Cifar_Encoder_192_24 + Cifar_Decoder_192_24
    "mnist_ae_192": 1_915,        # ZO-AE-DS MNIST_Dim_Encoder + MNIST_Dim_Decoder
    "stl_ae_576": 2_886_627,      # ZO-AE-DS STL_Encoder + STL_Decoder
}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _kwargs(name: str, c: int, s: int) -> dict[str, object]:
    kind = MODELS[name].kind
    if kind == "classifier":
        return {"num_classes": 7, "in_channels": c, "image_size": s, "mean": [0.3] * c, "std": [0.2] * c}
    if kind == "denoiser":
        return {"in_channels": c}
    return {"in_channels": c, "image_size": s}


def test_registry_holds_every_family() -> None:
    expected = {"smallcnn", "lenet", "resnet18", "resnet34", "resnet50", "resnet20", "resnet110", "preact_resnet18",
                "vgg16", "vgg19", "wideresnet", "wrn28_10", "wrn16_4", "dncnn", "unet", "cifar_ae_192",
                "mnist_ae_192", "stl_ae_576"}
    assert expected <= set(MODELS)
    assert set(PARAMS) == set(MODELS), "every registry entry needs a pinned parameter count"
    assert {n for n in MODELS if MODELS[n].kind == "denoiser"} == {"dncnn", "unet"}
    assert {n for n in MODELS if MODELS[n].kind == "autoencoder"} == {"cifar_ae_192", "mnist_ae_192", "stl_ae_576"}


@contextmanager
def meta_device() -> Iterator[None]:
    """Build on the meta device: real module structure and shapes, no memory, no arithmetic. The
    ``torch.nn.init`` functions are skipped (they mean nothing on meta tensors and some run slow
    Python reference kernels there)."""
    names = ("kaiming_normal_", "kaiming_uniform_", "orthogonal_", "normal_", "uniform_", "zeros_", "ones_",
             "constant_", "xavier_uniform_", "xavier_normal_")
    saved = {n: getattr(nn.init, n) for n in names}
    try:
        for n in names:
            setattr(nn.init, n, lambda t, *a, **k: t)
        with torch.device("meta"):
            yield
    finally:
        for n, f in saved.items():
            setattr(nn.init, n, f)


def build_meta(name: str, **kwargs: object) -> nn.Module:
    with meta_device():
        return build_model(name, **kwargs)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts_are_pinned(name: str) -> None:
    kind = MODELS[name].kind
    kwargs: dict[str, object] = {"in_channels": 3} if kind == "classifier" else {}
    assert n_params(build_meta(name, **kwargs)) == PARAMS[name]


def test_parameter_counts_of_variants() -> None:
    # He et al. option B (1x1 projection), the bearpaw code of Cohen et al. / ZO-AE-DS: still 0.27M / 1.7M.
    assert n_params(build_meta("resnet20", shortcut="B")) == 272_474
    assert n_params(build_meta("resnet110", shortcut="B")) == 1_730_714
    # Ronneberger et al. 2015 Fig. 1 (1 -> 2 channels, no BN): 31,030,658 parameters ("31.0M").
    assert n_params(build_meta("unet", in_channels=1, out_channels=2, batch_norm=False)) == 31_030_658
    # The generic constructor gives the registered WRN-16-4.
    assert n_params(build_meta("wideresnet", depth=16, widen_factor=4)) == PARAMS["wrn16_4"]


def _cases(mode: str) -> list[object]:
    """``meta``: every entry x every input it supports; ``tiny``: one cheap real forward per entry
    (16x16 single-channel for classifiers and denoisers, the native size for autoencoders);
    ``real``: every entry x every input, computed for real (slow suite)."""
    out = []
    for name in sorted(MODELS):
        kind = MODELS[name].kind
        inputs = dict(INPUTS)
        if mode == "tiny":
            inputs = {"tiny": (1, 16)} if kind != "autoencoder" else inputs
        for label, (c, s) in inputs.items():
            if kind == "autoencoder" and not name.startswith(label):
                continue
            if name == "smallcnn" and s % 4:
                continue
            marks = [pytest.mark.slow] if mode == "real" or (mode == "tiny" and name in HEAVY) else []
            out.append(pytest.param(name, c, s, id=f"{name}-{label}", marks=marks))
    return out


def _check_forward(name: str, c: int, s: int, device: str) -> None:
    kwargs = _kwargs(name, c, s)
    if name == "unet" and device != "meta":
        kwargs["base_width"] = 4  # the 31M default is pinned above; here the shape logic is what counts
    torch.manual_seed(0)
    with meta_device() if device == "meta" else torch.device(device):
        m = build_model(name, **kwargs).eval()
        x = torch.rand(2, c, s, s, generator=None if device == "meta" else torch.Generator().manual_seed(1))
        with torch.no_grad():
            out = m(x)
        kind = MODELS[name].kind
        if kind == "classifier":
            assert isinstance(m, ImageClassifier)
            assert out.shape == (2, 7)
            assert m.embed(x).shape == (2, m.feature_dim)
            if device != "meta":
                assert torch.isfinite(out).all()
        else:
            assert out.shape == (2, c, s, s)


@pytest.mark.parametrize(("name", "c", "s"), _cases("meta"))
def test_every_entry_builds_with_the_right_output_shape_for_every_input(name: str, c: int, s: int) -> None:
    _check_forward(name, c, s, "meta")


@pytest.mark.parametrize(("name", "c", "s"), _cases("tiny"))
def test_every_entry_runs_a_real_forward(name: str, c: int, s: int) -> None:
    _check_forward(name, c, s, "cpu")


def test_bottleneck_resnet_runs_for_real() -> None:
    from bbdefense.models.zoo.resnet import Bottleneck, ResNet

    m = ResNet(Bottleneck, (1, 1, 1, 1), num_classes=3, in_channels=1).eval()
    with torch.no_grad():
        out = m(torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    assert m.feature_dim == 2048  # 512 * expansion 4, as in ResNet-50


@pytest.mark.parametrize(("name", "c", "s"), _cases("real"))
def test_every_entry_runs_a_real_forward_at_every_input_size(name: str, c: int, s: int) -> None:
    _check_forward(name, c, s, "cpu")


@pytest.mark.parametrize("name", classifier_names())
def test_normalisation_is_the_first_layer(name: str) -> None:
    m = build_meta(name, num_classes=10, in_channels=1, image_size=28, mean=[0.25], std=[0.5]).eval()
    assert isinstance(m.normalize, Normalize)
    assert next(iter(m.named_children()))[0] == "normalize"
    calls: list[nn.Module] = []
    for mod in m.modules():
        if not list(mod.children()):
            mod.register_forward_hook(lambda mod, i, o: calls.append(mod))
    m(torch.empty(2, 1, 28, 28, device="meta"))
    assert calls[0] is m.normalize


@pytest.mark.parametrize("name", ["resnet20", "wrn16_4", "lenet"])
def test_forward_is_head_of_body_of_normalised_input(name: str) -> None:
    m = build_model(name, num_classes=10, in_channels=1, image_size=28, mean=[0.25], std=[0.5]).eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(m(x), m.head(m.body((x - 0.25) / 0.5)))


@pytest.mark.parametrize("name", classifier_names())
def test_stages_are_named_for_feature_hooks(name: str) -> None:
    if name in ("smallcnn", "lenet"):
        pytest.skip("the foundation's small nets are flat Sequentials")
    m = build_meta(name, in_channels=1, image_size=28)
    stages = [n for n, _ in m.body.named_children() if n.startswith("layer")]
    assert stages[:3] == ["layer1", "layer2", "layer3"]
    assert isinstance(m.head, nn.Linear) and m.head.in_features == m.feature_dim


def test_dncnn_is_exactly_the_reference_design_and_the_identity_at_init() -> None:
    torch.manual_seed(0)
    d = build_model("dncnn", in_channels=3)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in d.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == 17 and len(bns) == 15
    assert convs[0].bias is not None and all(c.bias is None for c in convs[1:])
    assert all(b.eps == 1e-4 and b.momentum == 0.95 for b in bns)
    assert [c.out_channels for c in convs] == [64] * 16 + [3]
    assert torch.count_nonzero(convs[-1].weight) == 0
    w = convs[1].weight.flatten(1)  # orthogonal init: rows orthonormal (64 x 576)
    torch.testing.assert_close(w @ w.T, torch.eye(64), atol=1e-5, rtol=0)
    x = torch.rand(1, 3, 9, 13, generator=torch.Generator().manual_seed(0))
    for mode in (d.train(), d.eval()):
        assert torch.equal(mode(x), x)
    with torch.no_grad():  # the identity comes from the zero last conv, not from a dead net
        convs[-1].weight.normal_(0, 0.01, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(d(x), x)


def test_unet_handles_odd_sizes_and_rejects_too_small_inputs() -> None:
    u = build_model("unet", in_channels=1, out_channels=3, base_width=4, depth=3).eval()
    assert u(torch.rand(1, 1, 30, 25)).shape == (1, 3, 30, 25)
    with pytest.raises(InputError, match="H, W >= 8"):
        u(torch.rand(1, 1, 7, 20))


@pytest.mark.parametrize(("name", "c", "s", "latent"), [("cifar_ae_192", 3, 32, (192, 1, 1)),
                                                        ("mnist_ae_192", 1, 28, (12, 4, 4)),
                                                        ("stl_ae_576", 3, 96, (576, 1, 1))])
def test_autoencoder_latents_match_zo_ae_ds(name: str, c: int, s: int, latent: tuple[int, int, int]) -> None:
    ae = build_model(name)
    x = torch.rand(2, c, s, s, generator=torch.Generator().manual_seed(0))
    z = ae.encoder(x)
    assert z.shape == (2, *latent)
    assert ae.latent_dim == z[0].numel() == {"cifar_ae_192": 192, "mnist_ae_192": 192, "stl_ae_576": 576}[name]
    assert (z >= 0).all()  # the encoder ends with a ReLU, as in the reference
    out = ae(x)
    torch.testing.assert_close(out, ae.decoder(z))
    assert out.shape == x.shape and (out > 0).all() and (out < 1).all()


def test_bad_arguments_give_typed_errors_naming_the_value() -> None:
    with pytest.raises(InputError, match=r"designed for 3-channel.*in_channels=1"):
        build_model("cifar_ae_192", in_channels=1, image_size=32)
    with pytest.raises(InputError, match=r"6n \+ 4.*27"):
        build_model("wideresnet", depth=27)
    with pytest.raises(InputError, match="shortcut must be 'A' or 'B', got 'C'"):
        build_model("resnet110", shortcut="C")
    with pytest.raises(InputError, match="mean has 2 values"):
        build_model("resnet18", in_channels=3, mean=[0.1, 0.2])
    with pytest.raises(UnknownNameError, match="resnet18"):
        build_model("resnet-18")


@pytest.mark.parametrize(("name", "kwargs"), [
    ("resnet20", {"num_classes": 10, "in_channels": 1, "image_size": 28, "mean": [0.13], "std": [0.31]}),
    ("wrn16_4", {"num_classes": 5, "in_channels": 3, "image_size": 32}),
    ("dncnn", {"in_channels": 1, "depth": 5}),
    ("mnist_ae_192", {"in_channels": 1, "image_size": 28}),
])
def test_checkpoint_round_trip(tmp_path, name: str, kwargs: dict[str, object]) -> None:
    torch.manual_seed(3)
    m = build_model(name, **kwargs)
    with torch.no_grad():  # make BN running stats non-trivial so that buffers are checked too
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    m.eval()
    c, s = int(kwargs["in_channels"]), int(kwargs.get("image_size", 28))  # type: ignore[call-overload]
    save_checkpoint(tmp_path / name, m, CheckpointMeta(arch=name, arch_kwargs=kwargs, kind=MODELS[name].kind))
    loaded, meta = load_checkpoint(tmp_path / name, expect_arch=name)
    assert meta["arch"] == name and meta["kind"] == MODELS[name].kind
    x = torch.rand(2, c, s, s, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), m(x))
