"""gaussian_noise: statistics, reproducibility, batch independence, and no global randomness."""

import pytest
import torch
from clipforge_extras import GaussianNoise
from pydantic import ValidationError

from clipforge import AugmentContext


def ctx(seeds=(0, 1), copies=4):
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return AugmentContext(gens, copies, (32, 32), step=0, resize_count=0)


def copies_of(images, k):
    return images.repeat_interleave(k, dim=0)


def noise(**options):
    return GaussianNoise(GaussianNoise.Options(**options))


def test_noise_has_the_asked_for_spread_and_keeps_the_shape():
    x = torch.full((2, 3, 32, 32), 0.5)
    out = noise(std=0.1)(copies_of(x, 4), ctx())
    assert out.shape == (8, 3, 32, 32)
    delta = out - 0.5
    assert abs(delta.mean().item()) < 0.005
    assert delta.std().item() == pytest.approx(0.1, rel=0.03)
    assert torch.isfinite(out).all()


def test_every_copy_gets_its_own_noise():
    out = noise(std=0.1)(torch.zeros(8, 3, 16, 16), ctx())
    assert not torch.equal(out[0], out[1])  # two copies of image 0
    assert not torch.equal(out[0], out[4])  # image 0 and image 1


def test_same_seeds_same_noise_other_seeds_other_noise():
    x = torch.rand(8, 3, 16, 16)
    a = noise()(x, ctx((0, 1)))
    assert torch.equal(a, noise()(x, ctx((0, 1))))
    assert not torch.equal(a, noise()(x, ctx((2, 3))))


def test_an_image_gets_the_same_noise_alone_or_in_a_batch():
    images = torch.rand(2, 3, 16, 16)
    together = noise(p=0.5)(copies_of(images, 4), ctx((0, 1)))
    alone = noise(p=0.5)(copies_of(images[1:], 4), ctx((1,)))
    assert torch.equal(together[4:], alone)


def test_the_global_random_state_is_left_alone():
    state = torch.get_rng_state()
    noise(p=0.5)(torch.zeros(8, 3, 16, 16), ctx())
    assert torch.equal(state, torch.get_rng_state())


def test_p_decides_per_copy():
    x = torch.zeros(400, 3, 4, 4)
    out = noise(std=0.1, p=0.5)(x, ctx((0,), copies=400))
    untouched = (out == 0).flatten(1).all(dim=1)
    assert 150 < untouched.sum().item() < 250


def test_std_zero_is_the_identity_and_draws_nothing():
    context = ctx()
    before = [g.get_state() for g in context.generators]
    x = torch.rand(8, 3, 16, 16)
    assert noise(std=0.0)(x, context) is x
    assert all(torch.equal(b, g.get_state()) for b, g in zip(before, context.generators))


def test_gradients_pass_through():
    x = torch.rand(8, 3, 16, 16, requires_grad=True)
    noise()(x, ctx()).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


@pytest.mark.parametrize("bad", [{"std": -0.1}, {"p": 1.5}, {"sigma": 0.1}])
def test_bad_options_are_rejected(bad):
    with pytest.raises(ValidationError):
        GaussianNoise.Options(**bad)
