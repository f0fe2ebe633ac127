"""Each value and formula of the paper's setup (../shared/PAPER.md), checked on its component."""

import math

import open_clip
import torch
import torch.nn.functional as F
from helpers import tiny_spec_dict

from clipforge import AugmentContext, default_registry, invert
from clipforge.step import clip_grad_per_image
from clipforge_plugins.objectives import Targets, copy_losses


def data_term(embeddings, targets, kind):
    """Per-image data term and similarity, averaged over copies: the engine's ``copy_losses`` on
    (B, K, D) embeddings, the way its step lays out copies (image-major)."""
    batch, copies, _ = embeddings.shape
    index = torch.arange(batch).repeat_interleave(copies)
    loss, sim = copy_losses(embeddings.reshape(batch * copies, -1), index, targets, kind)
    return loss.view(batch, copies).mean(dim=1), sim.view(batch, copies).mean(dim=1)


def component(kind, name, **options):
    entry = default_registry().get(kind, name)
    return entry.cls(entry.cls.Options(**options))


def ctx(batch=2, copies=3, size=(32, 32), resize_count=0, seed=0):
    gens = [torch.Generator().manual_seed(seed + b) for b in range(batch)]
    return AugmentContext(gens, copies, size, step=0, resize_count=resize_count)


def test_tv_is_four_unsquared_l2_norms_averaged_over_channels():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    tv = component("regularizer", "tv")
    per_image = tv(x)
    assert per_image.shape == (2,)
    for b in range(2):
        img = x[b : b + 1]
        expected = sum(
            d.norm(p=2, dim=(2, 3)).mean()
            for d in (
                img[..., :, 1:] - img[..., :, :-1],
                img[..., 1:, :] - img[..., :-1, :],
                img[..., 1:, 1:] - img[..., :-1, :-1],
                img[..., 1:, :-1] - img[..., :-1, 1:],
            )
        )
        assert torch.allclose(per_image[b], expected)
    assert tv.options.weight == 0.005


def test_l1_is_the_sum_of_absolute_values():
    x = torch.randn(2, 3, 4, 4)
    l1 = component("regularizer", "l1", weight=0.0)
    assert torch.allclose(l1(x), x.abs().sum(dim=(1, 2, 3)))


def test_l1_is_off_by_default_as_in_the_paper():
    assert component("regularizer", "l1").options.weight == 0.0
    result = invert(tiny_spec_dict(callbacks=[], steps=1, regularizers=["tv", "l1"]))
    assert set(result.metrics[0]["regularizers"]) == {"tv"}  # a zero weight is not even computed


def test_l2_data_term_is_distance_between_normalised_embeddings():
    v = F.normalize(torch.randn(2, 5, 8), dim=-1)
    t = F.normalize(torch.randn(2, 1, 8), dim=-1)
    targets = Targets(t, torch.ones(2, 1), torch.ones(2, 1))
    loss, sim = data_term(v, targets, "l2")
    expected = (v - t).norm(dim=-1).mean(dim=1)
    assert torch.allclose(loss, expected, atol=1e-6)
    assert torch.allclose(loss, (2 - 2 * (v * t).sum(-1)).sqrt().mean(1), atol=1e-5)
    loss_cos, _ = data_term(v, targets, "cosine")
    assert torch.allclose(loss_cos, 1 - (v * t).sum(-1).mean(1), atol=1e-6)
    assert torch.allclose(sim, (v * t).sum(-1).mean(1), atol=1e-6)


def test_negative_terms_push_away():
    v = F.normalize(torch.randn(1, 4, 8), dim=-1)
    t = F.normalize(torch.randn(1, 2, 8), dim=-1)
    loss, _ = data_term(v, Targets(t, torch.tensor([[1.0, -0.5]]), torch.tensor([[1.0, 0.0]])), "l2")
    d = (v[:, :, None] - t[:, None]).norm(dim=-1)
    assert torch.allclose(loss, (d[..., 0] - 0.5 * d[..., 1]).mean(1), atol=1e-6)


def test_similarity_is_the_positive_weighted_mean_of_the_terms_cosines():
    v = F.normalize(torch.randn(1, 4, 8), dim=-1)
    t = F.normalize(torch.randn(1, 2, 8), dim=-1)
    _, sim = data_term(v, Targets(t, torch.tensor([[3.0, 1.0]]), torch.tensor([[0.75, 0.25]])), "cosine")
    cos = (v[:, :, None] * t[:, None]).sum(-1)  # (1, copies, terms)
    assert torch.allclose(sim, (0.75 * cos[..., 0] + 0.25 * cos[..., 1]).mean(1), atol=1e-6)


def test_per_image_gradient_clipping_matches_clip_grad_norm():
    g = torch.Generator().manual_seed(1)
    grads = torch.randn(3, 3, 4, 4, generator=g) * torch.tensor([0.1, 5.0, 50.0]).view(3, 1, 1, 1)
    batched = torch.zeros(3, 3, 4, 4, requires_grad=True)
    batched.grad = grads.clone()
    clip_grad_per_image([batched], 1.0)
    for b in range(3):
        single = torch.zeros(1, 3, 4, 4, requires_grad=True)
        single.grad = grads[b : b + 1].clone()
        torch.nn.utils.clip_grad_norm_([single], 1.0)
        # 48 values scaled by one factor each way: a norm summed in another order differs by an ulp or two
        assert torch.allclose(batched.grad[b : b + 1], single.grad, rtol=1e-5, atol=1e-7)


def test_pixel_init_uniform_resize_bicubic_and_clamp_after_backward():
    entry = default_registry().get("parameterization", "pixel")
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    param = entry.cls(entry.cls.Options(), 2, (64, 64), gens, torch.device("cpu"))
    img = param.image()
    assert img.shape == (2, 3, 64, 64) and img.min() >= 0 and img.max() <= 1
    assert torch.equal(img[0], torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)))
    before = img.detach().clone()
    param.resize((128, 128))
    assert torch.allclose(param.image().detach(), F.interpolate(before, size=(128, 128), mode="bicubic"))
    with torch.no_grad():
        param.pixels.add_(1.0)
    param.after_backward()
    assert param.image().max() <= 1.0


def test_affine_identity_when_not_applied_and_transforms_when_applied():
    x = torch.rand(6, 3, 32, 32)
    none = component("augmentation", "random_affine", p=0.0)
    assert torch.equal(none(x, ctx()), x)
    shift = component("augmentation", "random_affine", p=1.0, degrees=0, translate=0.0, scale=(1.0, 1.0))
    assert torch.allclose(shift(x, ctx()), x, atol=1e-5)
    every = component("augmentation", "random_affine", p=1.0)
    assert not torch.allclose(every(x, ctx()), x)


def test_affine_applies_to_about_half_the_copies():
    aff = component("augmentation", "random_affine")
    x = torch.rand(2 * 200, 3, 16, 16)
    out = aff(x, ctx(batch=2, copies=200))
    changed = (out - x).abs().flatten(1).amax(1) > 1e-6
    assert 0.4 < changed.float().mean() < 0.6


def test_affine_translation_moves_content_by_the_drawn_fraction():
    x = torch.zeros(1, 3, 33, 33)
    x[..., 16, 16] = 1.0
    c = ctx(batch=1, copies=1)
    u = c.per_copy((5,), torch.device("cpu"))
    c = ctx(batch=1, copies=1)  # same draws again
    aff = component("augmentation", "random_affine", p=1.0, degrees=0, scale=(1.0, 1.0), translate=0.2)
    out = aff(x, c)
    tx, ty = (u[0, 1] * 2 - 1) * 0.2 * 33, (u[0, 2] * 2 - 1) * 0.2 * 33
    ys, xs = torch.nonzero(out[0, 0] == out[0, 0].max(), as_tuple=True)
    assert abs(xs.float().mean() - (16 + tx)) <= 1 and abs(ys.float().mean() - (16 + ty)) <= 1


def test_resize_goes_to_the_model_input_bicubic():
    x = torch.rand(2, 3, 64, 64)
    out = component("augmentation", "resize")(x, ctx(size=(224, 224)))
    assert torch.allclose(out, F.interpolate(x, size=(224, 224), mode="bicubic"))


def test_color_shift_identity_by_default_and_plug_in_inversion_ranges():
    x = torch.rand(6, 3, 8, 8)
    assert component("augmentation", "color_shift")(x, ctx()) is x
    out = component("augmentation", "color_shift", mean=1.0, std=1.0)(x, ctx())
    # (x - mu) / sigma with mu in [-1, 1] and sigma in [e^-1, e]: recover mu, sigma per channel
    sigma = x.std(dim=(2, 3)) / out.std(dim=(2, 3))
    assert ((sigma > math.exp(-1) - 1e-4) & (sigma < math.exp(1) + 1e-4)).all()


def test_jitter_same_roll_for_all_copies_and_limit_doubles():
    x = torch.rand(1, 3, 16, 16).repeat(4, 1, 1, 1)
    jit = component("augmentation", "jitter", limit=3)
    out = jit(x, ctx(batch=1, copies=4))
    assert all(torch.equal(out[0], out[k]) for k in range(4))
    # each output is the input rolled by some (dy, dx); find it from one hot pixel and look at the range
    hot = torch.zeros(1, 3, 64, 64)
    hot[..., 32, 32] = 1.0

    def shifts(resize_count, draws=200):
        found = []
        for seed in range(draws):
            out = jit(hot, ctx(batch=1, copies=1, resize_count=resize_count, seed=seed))
            y, x_ = divmod(int(out[0, 0].flatten().argmax()), 64)
            assert torch.equal(out, torch.roll(hot, shifts=(y - 32, x_ - 32), dims=(2, 3)))  # a pure roll
            found.append((y - 32, x_ - 32))
        return torch.tensor(found)

    for resize_count, limit in ((0, 3), (2, 12)):  # the limit doubles at each resize
        s = shifts(resize_count)
        assert s.min() == -limit and s.max() == limit, (resize_count, s.min(), s.max())
        assert len({tuple(v) for v in s.tolist()}) > limit  # many different shifts, both axes


def test_openai_vit_b_16_normalisation_and_quickgelu_come_from_its_pretrained_config():
    cfg = open_clip.get_pretrained_cfg("ViT-B-16", "openai")
    assert tuple(cfg["mean"]) == (0.48145466, 0.4578275, 0.40821073)
    assert tuple(cfg["std"]) == (0.26862954, 0.26130258, 0.27577711)
    assert cfg.get("quick_gelu") is True
