"""AAA keeps the argmax, reflects the margin toward its attractor target and quantises inputs;
RND clips; anti-adversary raises confidence in the predicted class; mixup inference averages."""

from __future__ import annotations

import torch

from bbdefense.defenses import AAA, AntiAdversary, MixupInference, RandomNoiseDefense, aaa_postprocess, quantize8


def test_aaa_keeps_argmax_and_moves_margin_to_target() -> None:
    z = 3 * torch.randn(300, 10, generator=torch.Generator().manual_seed(0))
    out = aaa_postprocess(z, attractor_interval=6.0, reverse_step=1.0)
    assert float((out.argmax(1) == z.argmax(1)).float().mean()) >= 0.99
    v = z.topk(2, dim=1).values
    m0 = v[:, 0] - v[:, 1]
    att = ((m0 / 6 + 0.5).round() - 0.5) * 6
    target = att - (m0 - att)  # hand computation of the reflected margin
    vo = out.topk(2, dim=1).values
    err = ((vo[:, 0] - vo[:, 1]) - target).abs()
    assert float(err.median()) < 0.3
    # the reflection reverses the margin's trend around each attractor: d(target)/d(m0) = -1
    i = (m0 - att).abs().argmin()
    assert abs(float(target[i] - att[i]) + float(m0[i] - att[i])) < 1e-5


def test_aaa_quantises_inputs_to_8_bits(linear_model) -> None:
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    q = quantize8(x)
    assert torch.equal(q * 255, torch.floor(x * 255)) and (x - q).max() < 1 / 255
    d = AAA(linear_model, num_iter=5)
    x2 = (q + 0.4 / 255).clamp(0, 1)  # same 8-bit bin as q
    torch.testing.assert_close(d(q), d(x2), rtol=0, atol=0)
    assert not torch.equal(AAA(linear_model, num_iter=5, quantize=False)(x2), d(x2))


def test_rnd_noise_is_clipped_to_the_pixel_range() -> None:
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.clone())
            return x.flatten(1)[:, :3]

    x = torch.full((50, 1, 4, 4), 0.99)
    RandomNoiseDefense(Spy(), nu=0.2, seed=0)(x)
    assert seen[0].max() <= 1.0 and seen[0].min() >= 0.0 and (seen[0] == 1.0).any()
    sd = float((seen[0] - x)[seen[0] < 0.9].std())
    assert 0.1 < sd < 0.25


def test_anti_adversary_increases_confidence_in_the_prediction(linear_model) -> None:
    x = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        z = linear_model(x)
        za = AntiAdversary(linear_model, k=2, alpha=0.01)(x)
    t = z.argmax(1)
    ce = torch.nn.functional.cross_entropy
    assert float(ce(za, t, reduction="none").sub(ce(z, t, reduction="none")).max()) < 0
    assert torch.equal(za.argmax(1), t)


def test_mixup_inference_with_lam_one_is_the_model(linear_model) -> None:
    ref = (torch.rand(10, 1, 8, 8), torch.arange(10))
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = MixupInference(linear_model, reference=ref, lam=1.0, n_samples=3)(x)
        torch.testing.assert_close(out.softmax(1), linear_model(x).softmax(1), rtol=1e-5, atol=1e-6)
        mi = MixupInference(linear_model, reference=ref, lam=0.6, n_samples=3, mode="ol")
        idx = mi._draw(linear_model(x).argmax(1), torch.Generator().manual_seed(0))
        assert (ref[1][idx] != linear_model(x).argmax(1)[:, None]).all()  # other labels only
