"""Parameterisations: the contract every registered one keeps (pixel, fourier, multires and any
third-party one), then what is specific to each, then whole runs."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import capture_parts, resolved, tiny_spec_dict
from pydantic import ValidationError

import clipforge
from clipforge import Parameterization, invert

CPU = torch.device("cpu")
PARAMETERIZATIONS = clipforge.default_registry().names("parameterization")


def make(name, seeds=(0, 1), size=(16, 16), **options):
    cls = clipforge.default_registry().get("parameterization", name).cls
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return cls(cls.Options(**options), len(seeds), size, gens, CPU)


def weights(shape, seed=123):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def smooth_target(batch, size, seed=7):
    """Smooth images in [0.2, 0.8] for a parameterisation to fit, so that it holds some content."""
    coarse = torch.rand((batch, 3, 4, 4), generator=torch.Generator().manual_seed(seed))
    return 0.2 + 0.6 * F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def fit(p, steps=25, lr=0.05):
    """A few Adam steps towards a smooth target, the way the engine steps (after_backward last)."""
    target = smooth_target(p.batch_size, p.size)
    opt = torch.optim.Adam(p.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        (p.image() - target).pow(2).sum().backward()
        p.after_backward()
        opt.step()
    return p


def correlation(a, b):
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a @ b) / (a.norm() * b.norm() + 1e-12))


def test_the_built_in_parameterizations_are_registered():
    assert {"pixel", "fourier", "multires"} <= set(PARAMETERIZATIONS)


# --------------------------------------------------------------------------- the contract


@pytest.fixture(params=PARAMETERIZATIONS)
def name(request):
    return request.param


def test_options_reject_unknown_keys_and_describe_every_option(name):
    cls = clipforge.default_registry().get("parameterization", name).cls
    assert issubclass(cls, Parameterization)
    with pytest.raises(ValidationError):
        cls.Options(no_such_option=1)
    for field, info in cls.Options.model_fields.items():
        assert info.description, f"{name}: option {field!r} has no description"


def test_parameters_are_batch_first_leaves(name):
    p = make(name, seeds=(0, 1, 2))
    params = p.parameters()
    assert params
    for t in params:
        assert t.is_leaf and t.requires_grad and t.shape[0] == 3


def test_image_shape_and_range(name):
    p = make(name)
    img = p.image()
    assert img.shape == (2, 3, 16, 16) and img.dtype == torch.float32
    assert img.min() >= 0 and img.max() <= 1
    # push hard, then check again after the next backward (pixel clamps in after_backward)
    opt = torch.optim.SGD(p.parameters(), lr=10.0)
    (p.image() * weights((2, 3, 16, 16))).sum().backward()
    opt.step()
    opt.zero_grad()
    (p.image() * weights((2, 3, 16, 16), seed=5)).sum().backward()
    p.after_backward()
    img = p.image().detach()
    assert torch.isfinite(img).all() and img.min() >= 0 and img.max() <= 1


def test_gradients_reach_every_parameter(name):
    p = make(name)
    (p.image() * weights((2, 3, 16, 16))).sum().backward()
    for i, t in enumerate(p.parameters()):
        assert t.grad is not None and t.grad.abs().sum() > 0, f"parameter {i} gets no gradient"
    p.resize((32, 32))
    (p.image() * weights((2, 3, 32, 32))).sum().backward()
    for i, t in enumerate(p.parameters()):
        assert t.grad is not None and t.grad.abs().sum() > 0, f"parameter {i} gets no gradient after a resize"


def test_same_seeds_same_images_other_seeds_other_images(name):
    a = make(name, seeds=(0, 1)).image().detach()
    b = make(name, seeds=(0, 1)).image().detach()
    c = make(name, seeds=(2, 3)).image().detach()
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])


def test_an_image_does_not_depend_on_its_batch(name):
    pair = make(name, seeds=(3, 5))
    alone = make(name, seeds=(5,))
    # values in [0, 1] from an inverse FFT or an interpolation per image: a batched FFT or interpolation may
    # use another plan on another CPU and differ by a few ulps of its largest terms (~1e-6); mixing in a
    # neighbour's image would differ by ~0.1
    torch.testing.assert_close(pair.image()[1], alone.image()[0], atol=1e-5, rtol=0)
    pair.resize((32, 32))
    alone.resize((32, 32))
    torch.testing.assert_close(pair.image()[1], alone.image()[0], atol=1e-5, rtol=0)


def test_resize_keeps_the_image(name):
    # fourier's default start (init_std 0.5) is noise at every frequency, which no resize keeps; the check
    # is of the fitted image's content, so from a quiet start
    p = fit(make(name, **({"init_std": 0.01} if name == "fourier" else {})))
    old = p.image().detach()
    p.resize((32, 32))
    assert tuple(p.size) == (32, 32)
    new = p.image().detach()
    assert new.shape == (2, 3, 32, 32) and new.min() >= 0 and new.max() <= 1
    if name == "pixel":  # pixels are interpolated as they are: bicubic, as in the paper
        torch.testing.assert_close(new, F.interpolate(old, size=(32, 32), mode="bicubic").clamp(0, 1))
        return
    for mode in ("bilinear", "bicubic"):
        up = F.interpolate(old, size=(32, 32), mode=mode, align_corners=False)
        for b in range(2):
            assert correlation(new[b], up[b]) > 0.9, (mode, b)
        assert (new - up).abs().mean() < 0.02, mode


def test_resize_state_maps_each_parameter_onto_the_new_one(name):
    p = make(name)
    old = p.parameters()
    p.resize((32, 32))
    new = p.parameters()
    for o, n in zip(old, new):  # the engine pairs them positionally, old ones first
        moment = torch.rand_like(o)
        try:
            mapped = p.resize_state(moment, tuple(n.shape))
        except NotImplementedError:
            pytest.skip(f"{name} does not carry optimiser state across a resize")
        assert mapped.shape == n.shape and mapped.dtype == n.dtype
        assert torch.isfinite(mapped).all() and mapped.min() >= 0  # Adam's second moment stays >= 0


def test_pixel_resize_mode_option_is_honoured():
    images = {}
    for mode in ("bicubic", "nearest"):
        p = make("pixel", resize_mode=mode)
        p.resize((32, 32))
        images[mode] = p.image().detach()
    # nearest doubling repeats each pixel in a 2 x 2 block; bicubic does not
    near = images["nearest"]
    assert torch.equal(near[..., ::2, ::2], near[..., 1::2, 1::2])
    assert not torch.equal(images["bicubic"][..., ::2, ::2], images["bicubic"][..., 1::2, 1::2])


# --------------------------------------------------------------------------- fourier


def test_fourier_scale_falls_with_frequency():
    from clipforge_plugins.fourier import spectrum_scale

    size = (32, 32)
    freq = (torch.fft.fftfreq(32)[:, None] ** 2 + torch.fft.rfftfreq(32)[None, :] ** 2).sqrt()
    for decay in (0.5, 1.0, 2.0):
        scale = spectrum_scale(size, decay)
        assert scale.shape == (32, 17)
        order = freq.flatten().argsort()
        s = scale.flatten()[order]
        assert (s[1:] <= s[:-1] + 1e-6).all()  # never rises with frequency
        # a power law: doubling the frequency divides the scale by 2 ** decay
        assert scale[4, 0] / scale[8, 0] == pytest.approx(2**decay)
        assert scale[0, 3] / scale[0, 6] == pytest.approx(2**decay)
    assert torch.allclose(spectrum_scale(size, 0.0), torch.ones(32, 17))
    p = make("fourier", decay=1.0)
    assert p.parameters()[0].shape == (2, 3, 16, 9, 2)
    assert p.scale[0, 1] > p.scale[0, 4] > p.scale[8, 8]


def test_fourier_initial_images_are_mostly_low_frequency():
    p = make("fourier", seeds=range(8), size=(32, 32), init_std=1.0)
    power = torch.fft.rfft2(p.linear_image().detach()).abs().pow(2).mean(dim=(0, 1))
    assert power[1:4, 1:4].mean() > 10 * power[12:16, 12:16].mean()


def test_fourier_decorrelation_changes_the_colour_mapping():
    on, off = make("fourier", init_std=0.5), make("fourier", init_std=0.5, decorrelate=False)
    assert torch.equal(on.linear_image(), off.linear_image())
    assert not torch.allclose(on.image(), off.image())
    # a signal in one channel only: without decorrelation it stays there, with it all channels move
    for p in (on, off):
        with torch.no_grad():
            p.spectrum[:, 1:] = 0
    plain, mixed = off.image().detach(), on.image().detach()
    assert torch.allclose(plain[:, 1:], torch.full_like(plain[:, 1:], 0.5))
    assert plain[:, 0].std() > 0.01
    assert all(mixed[:, c].std() > 0.001 for c in range(3))
    assert not torch.allclose(mixed[:, 0], plain[:, 0])


def test_fourier_clamp_output_stays_in_range():
    p = make("fourier", output="clamp", init_std=5.0)
    img = p.image()
    assert img.min() >= 0 and img.max() <= 1 and (img == 0).any() and (img == 1).any()


def trig_interpolation(n_old, n_new):
    """(n_new, n_old): evaluates the periodic band-limited interpolant of n_old real samples at the
    centres of n_new pixels (aligned like ``F.interpolate(align_corners=False)``); an even n_old's
    Nyquist term is the real cosine."""
    t = (torch.arange(n_new, dtype=torch.float64) + 0.5) * n_old / n_new - 0.5
    d = t[:, None] - torch.arange(n_old, dtype=torch.float64)[None, :]
    out = torch.ones_like(d)
    for k in range(1, (n_old - 1) // 2 + 1):
        out += 2 * torch.cos(2 * math.pi * k * d / n_old)
    if n_old % 2 == 0:
        out += torch.cos(math.pi * d)
    return out / n_old


@pytest.mark.parametrize(
    "old,new",
    [((16, 16), (32, 32)), ((15, 15), (45, 45)), ((8, 12), (16, 24)), ((16, 16), (24, 24)), ((7, 10), (14, 20))],
)
@pytest.mark.parametrize("decay", [1.0, 0.5])
def test_fourier_resize_keeps_low_frequencies_and_zeroes_new_ones(old, new, decay):
    p = make("fourier", size=old, init_std=1.0, decay=decay)
    before = p.linear_image().detach().double()
    p.resize(new)
    after = p.linear_image().detach().double()
    assert p.parameters()[0].shape == (2, 3, new[0], new[1] // 2 + 1, 2)
    # exactly the old image, Fourier-interpolated (computed here independently, in pixel space)
    expected = trig_interpolation(old[0], new[0]) @ before @ trig_interpolation(old[1], new[1]).T
    torch.testing.assert_close(after, expected, atol=1e-4 * before.abs().max().item(), rtol=0)
    # the new high frequencies start at zero (rows between the old positive and negative halves,
    # columns past the old half width)
    spec = p.parameters()[0].detach()
    assert spec[:, :, old[0] // 2 + 1 : new[0] - old[0] // 2].abs().max() == 0
    assert spec[:, :, :, old[1] // 2 + 1 :].abs().max() == 0


def test_fourier_resize_state_carries_moments_to_the_same_frequencies():
    p = make("fourier", size=(16, 16))
    moment = torch.rand_like(p.parameters()[0])
    p.resize((32, 32))
    mapped = p.resize_state(moment, tuple(p.parameters()[0].shape))
    torch.testing.assert_close(mapped[:, :, :8, :9], moment[:, :, :8])  # positive rows
    torch.testing.assert_close(mapped[:, :, -7:, :9], moment[:, :, -7:])  # negative rows
    torch.testing.assert_close(mapped[:, :, 8, :9], moment[:, :, 8])  # Nyquist row, both halves
    torch.testing.assert_close(mapped[:, :, 24, :9], moment[:, :, 8])
    assert mapped[:, :, 9:24].abs().max() == 0 and mapped[:, :, :, 9:].abs().max() == 0


# --------------------------------------------------------------------------- multires


def test_multires_default_ladder():
    from clipforge_plugins.multires import default_ladder

    assert default_ladder(1) == [1]
    assert default_ladder(16) == [1, 2, 4, 8, 16]
    assert default_ladder(224) == [1, 2, 4, 8, 16, 32, 64, 128, 224]
    p = make("multires", size=(16, 16), coarsest=1)
    assert p.resolutions == [1, 2, 4, 8, 16]
    assert make("multires", size=(16, 16)).resolutions == [8, 16]  # the default ladder starts at 8 px
    assert [tuple(t.shape) for t in p.parameters()] == [(2, 3, r, r) for r in (1, 2, 4, 8, 16)]


def test_multires_resize_keeps_old_components_first_and_adds_zero_finer_ones():
    p = make("multires", size=(16, 16), coarsest=1)
    old = [t.detach().clone() for t in p.parameters()]
    p.resize((48, 48))
    assert p.resolutions == [1, 2, 4, 8, 16, 32, 48]
    params = p.parameters()
    for o, n in zip(old, params):
        assert torch.equal(o, n.detach())
    assert all(t.abs().max() == 0 for t in params[len(old) :])


def test_multires_explicit_resolutions_join_when_the_image_reaches_them():
    p = make("multires", size=(16, 16), resolutions=[24, 1, 4])
    assert p.resolutions == [1, 4]
    p.resize((32, 32))
    assert p.resolutions == [1, 4, 24]
    assert p.image().shape == (2, 3, 32, 32)
    with pytest.raises(ValidationError):
        make("multires", resolutions=[0, 4])
    with pytest.raises(ValidationError):
        make("multires", resolutions=[])


@pytest.mark.parametrize("squash", ["tanh", "sigmoid", "clamp"])
@pytest.mark.parametrize("upsample", ["bilinear", "bicubic"])
def test_multires_squashes_and_upsamplers(squash, upsample):
    p = make("multires", squash=squash, upsample=upsample, init_std=3.0)
    img = p.image()
    assert img.shape == (2, 3, 16, 16) and img.min() >= 0 and img.max() <= 1
    flat = make("multires", squash=squash, init_std=0.0).image()
    assert torch.equal(flat, torch.full_like(flat, 0.5))  # zero components are mid-gray
    # the coarsest component moves the whole image
    p = make("multires", squash=squash, upsample=upsample, init_std=0.0)
    p.parameters()[0].grad = None
    p.image().sum().backward()
    assert p.parameters()[0].grad.abs().min() > 0


# --------------------------------------------------------------------------- whole runs


class ImagesPerStep(clipforge.Callback):
    """Keeps the image after every step, so a test can see whether optimisation went on."""

    name = "images_per_step"

    def __init__(self, options=None):
        super().__init__(options or clipforge.Options())
        self.images = {}

    def on_step_end(self, run, state):
        self.images[state.step] = state.images().clone()


@pytest.mark.parametrize("reset", [True, False])
@pytest.mark.parametrize("param", ["pixel", "fourier", "multires"])
def test_optimisation_goes_on_after_every_resize(param, reset, monkeypatch):
    """An optimiser left bound to the pre-resize tensors would leave the image unchanged from then on."""
    spec = tiny_spec_dict(
        prompts=["a red circle"],
        seeds=[0],
        steps=7,
        copies=2,
        callbacks=[],
        regularizers=[],
        resolution=[{"step": 0, "size": 16}, {"step": 2, "size": 24}, {"step": 4, "size": 32}],
        parameterization={"name": param},
        optimizer={"reset_on_resize": reset, "lr": 0.05},
    )
    seen = ImagesPerStep()
    built = capture_parts(monkeypatch)
    clipforge.Engine(resolved(spec), callbacks=[seen]).run()
    # every parameter tensor moved, including those a resize added at zero (multires' finer levels)
    assert all(p.detach().abs().max() > 0 for p in built[-1].param.parameters())
    for step in (3, 5, 6):  # consecutive steps at the same size, after each resize
        assert seen.images[step].shape == seen.images[step + 1].shape
        change = (seen.images[step + 1] - seen.images[step]).abs().max()
        assert change > 1e-4, (param, reset, step)


@pytest.mark.parametrize("reset", [True, False])
@pytest.mark.parametrize("param", ["fourier", "multires"])
def test_inversion_runs_through_a_resize(param, reset, monkeypatch):
    cls = clipforge.default_registry().get("parameterization", param).cls
    carried = []
    original = cls.resize_state

    def spy(self, tensor, size):
        out = original(self, tensor, size)
        carried.append((tuple(tensor.shape), tuple(out.shape)))
        return out

    monkeypatch.setattr(cls, "resize_state", spy)
    spec = tiny_spec_dict(
        prompts=["a red circle"],
        seeds=[0, 1],
        steps=4,
        copies=2,
        callbacks=[],
        resolution=[{"step": 0, "size": 16}, {"step": 2, "size": 32}],
        parameterization={"name": param},
        optimizer={"reset_on_resize": reset, "lr": 0.05},
    )
    result = invert(spec)
    assert result.steps_done == 4 and not result.interrupted
    assert result.images.shape == (2, 3, 32, 32)
    assert torch.isfinite(result.images).all()
    assert result.images.min() >= 0 and result.images.max() <= 1
    assert [m["size"] for m in result.metrics] == [16, 16, 32, 32]
    assert all(math.isfinite(v) for m in result.metrics for v in m["loss"])
    assert not torch.equal(result.images[0], result.images[1])
    # the optimiser state went through resize_state only when it was carried (Adam's two moments)
    assert len(carried) == (0 if reset else 2 * (1 if param == "fourier" else 2))  # multires at 16 px: 8, 16
