"""MACO (plugins/maco.py) and its spectrum (clipforge/spectrum.py, ``clipforge spectrum``): the
magnitude stays the spectrum's, a spectrum finds a known frequency, the known filter's preferred
stimulus is drawn, seeds reproduce and batches do not matter, and bad input is named and leaves
nothing behind."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_spec_dict
from PIL import Image

import clipforge
from benchmarks.objective_truth import NEURON_POSITION, _EdgePlugin, neuron_correlations
from clipforge.cli import main
from clipforge.spectrum import COLOR_MIX, TOYWORLD_SPECTRUM, decorrelated_magnitudes, file_sha256

CPU = torch.device("cpu")
REGISTRY = clipforge.default_registry()


def maco(seeds=(0, 1), size=(32, 32), **options):
    cls = REGISTRY.get("parameterization", "maco").cls
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return cls(cls.Options(**options), len(seeds), size, gens, CPU)


def assert_magnitude_is_the_spectrum(p) -> None:
    """The image's own rfft2 magnitude (before the colour mixing and squashing) is the spectrum's, at
    every frequency but the few real ones (DC, Nyquist), where it is ``M |cos(phase)|``, at most M."""
    own = torch.fft.rfft2(p.linear_image().detach(), norm="ortho").abs()
    real = p._real_bins()
    target = p.magnitude.expand_as(own)
    torch.testing.assert_close(own[..., ~real], target[..., ~real], rtol=1e-4, atol=1e-5 * float(target.max()))
    assert (own[..., real] <= target[..., real] * (1 + 1e-4) + 1e-6).all()


def test_the_colour_mixing_is_the_fourier_parameterisations():
    from clipforge_plugins.fourier import COLOR_MIX as FOURIER_MIX
    from clipforge_plugins.maco import COLOR_MIX as MACO_MIX

    assert torch.equal(COLOR_MIX, FOURIER_MIX) and torch.equal(MACO_MIX, FOURIER_MIX)


def test_the_magnitude_is_the_spectrum_before_and_after_optimisation_and_a_resize():
    p = maco(size=(32, 32))
    template = torch.from_numpy(np.load(TOYWORLD_SPECTRUM))
    # a 32 px image takes the 64 px spectrum's frequencies up to 16 cycles per image, scaled by 32 / 64
    torch.testing.assert_close(p.magnitude[:, :16, :16], template[:, :16, :16] / 2)
    assert_magnitude_is_the_spectrum(p)
    opt = torch.optim.Adam(p.parameters(), lr=0.2)
    weights = torch.randn((2, 3, 32, 32), generator=torch.Generator().manual_seed(3))
    start = p.image().detach()
    for _ in range(10):
        opt.zero_grad()
        (p.image() * weights).sum().backward()
        opt.step()
    assert (p.image().detach() - start).abs().max() > 0.05  # the image did change ...
    assert_magnitude_is_the_spectrum(p)  # ... and its magnitude did not
    p.resize((48, 48))
    assert p.image().shape == (2, 3, 48, 48)
    assert_magnitude_is_the_spectrum(p)


def test_a_spectrum_of_gratings_peaks_at_their_frequency(tmp_path, capsys):
    """Gratings of k cycles per image, vertical and horizontal, at random phases and colours: the
    spectrum's largest magnitude away from DC is at k cycles per image, whatever the orientation."""
    k, n = 5, 32
    g = torch.Generator().manual_seed(0)
    folder = tmp_path / "gratings"
    folder.mkdir()
    coords = (torch.arange(n) + 0.5) / n
    for i in range(8):
        phase, colour = 2 * math.pi * float(torch.rand((), generator=g)), torch.rand(3, generator=g)
        wave = 0.5 + 0.4 * torch.sin(2 * math.pi * k * coords + phase)
        plane = wave[None, :].expand(n, n) if i % 2 else wave[:, None].expand(n, n)
        pixels = (colour[:, None, None] * plane * 255).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(pixels).save(folder / f"{i}.png")
    out = tmp_path / "gratings.npy"
    assert main(["spectrum", str(folder), "--out", str(out), "--size", str(n)]) == 0
    assert "spectrum of 32 x 32 images" in capsys.readouterr().out
    spectrum = np.load(out)
    assert spectrum.shape == (3, n, n // 2 + 1) and spectrum.dtype == np.float32
    total = torch.from_numpy(spectrum).sum(dim=0)
    total[0, 0] = 0  # DC: the mean colour
    ky = torch.fft.fftfreq(n, 1 / n).abs()[:, None].expand_as(total)
    kx = torch.fft.rfftfreq(n, 1 / n)[None, :].expand_as(total)
    peak = int(total.flatten().argmax())
    assert (float(ky.flatten()[peak]), float(kx.flatten()[peak])) in {(k, 0.0), (0.0, k)}
    on_k = ((ky == k) & (kx == 0)) | ((ky == 0) & (kx == k))  # (k, 0), (-k, 0) and (0, k)
    assert total[on_k].min() > 10 * total[~on_k].max()


def test_a_spectrum_is_the_decorrelated_magnitude_of_its_images():
    """An image's spectrum undone: mixing its decorrelated channels back gives the image's own
    magnitude structure (a pure-colour image puts all its energy in DC)."""
    flat = torch.full((1, 3, 8, 8), 0.8)
    magnitude = decorrelated_magnitudes(flat)
    assert magnitude[..., 1:, :].abs().max() < 1e-5 and magnitude[..., 0, 1:].abs().max() < 1e-5
    unmixed = torch.linalg.solve(COLOR_MIX, torch.full((3,), 0.3))
    torch.testing.assert_close(magnitude[0, :, 0, 0], unmixed.abs() * 8)


def edge_spec(**change) -> dict:
    objective = {"name": "neuron", "options": {"layer": "act", "channel": 0, "position": NEURON_POSITION}}
    spec = {
        "prompts": [{"objectives": [objective]}],
        "seeds": [0, 1],
        "backbones": ["edge_net"],
        "parameterization": "maco",
        "augmentations": [],
        "regularizers": [],
        "copies": 1,
        "steps": 40,
        "resolution": [{"step": 0, "size": 16}],
        "device": "cpu",
        "callbacks": [],
    }
    return {**spec, **change}


def test_maco_draws_the_known_filters_preferred_stimulus():
    """The criterion of test_objectives.py's known filter: the image's red receptive field correlates
    with the filter at 0.9 or more, with the phase alone free (and with MACO's crops and noise)."""
    registry = clipforge.build_registry(extra_plugins=[("edge_net", _EdgePlugin)])
    for augmentations, copies in (([], 1), ([{"name": "crops", "options": {"box_size": [0.8, 1.0]}}, "noise"], 2)):
        images = clipforge.invert(edge_spec(augmentations=augmentations, copies=copies), registry=registry).images
        for r in neuron_correlations(images):
            assert r >= 0.9, f"correlation {r:.3f} with {augmentations}"


def tiny_maco(**change) -> dict:
    augmentations = [
        {"name": "crops", "options": {"box_size": [0.5, 0.9]}},
        {"name": "noise", "options": {"amount": 0.1}},
    ]
    return tiny_spec_dict(
        **{
            "prompts": ["a red circle"],
            "steps": 3,
            "copies": 2,
            "callbacks": [],
            "device": "cpu",
            "parameterization": "maco",
            "augmentations": augmentations,
            "resolution": [{"step": 0, "size": 16}, {"step": 2, "size": 24}],
            **change,
        }
    )


def test_a_run_is_reproducible_by_seed_and_an_image_does_not_depend_on_its_batch():
    pair = clipforge.invert(tiny_maco(seeds=[3, 5])).images
    again = clipforge.invert(tiny_maco(seeds=[3, 5])).images
    alone = clipforge.invert(tiny_maco(seeds=[5])).images
    assert torch.equal(pair, again)
    torch.testing.assert_close(pair[1], alone[0], atol=1e-5, rtol=0)
    assert not torch.allclose(pair[0], pair[1])


def test_the_run_records_the_spectrum_by_path_and_digest(tmp_path):
    clipforge.invert(tiny_maco(steps=1, resolution=[{"step": 0, "size": 16}]), out_dir=tmp_path / "run")
    options = json.loads((tmp_path / "run" / "spec.json").read_text())["parameterization"]["options"]
    assert options["spectrum"] == str(TOYWORLD_SPECTRUM.resolve())
    assert options["spectrum_sha256"] == file_sha256(TOYWORLD_SPECTRUM)


def test_the_augmentations_draw_per_copy_and_noise_has_its_amount():
    from clipforge import AugmentContext

    ctx = AugmentContext([torch.Generator().manual_seed(s) for s in (0, 1)], 3, (16, 16), 0, 0)
    flat = torch.full((6, 3, 16, 16), 0.5)
    noise = REGISTRY.build("augmentation", {"name": "noise", "options": {"amount": 0.2}})
    drawn = noise(flat, ctx) - 0.5
    assert abs(float(drawn.std()) - 0.2) < 0.02 and not torch.equal(drawn[0], drawn[1])
    uniform = REGISTRY.build("augmentation", {"name": "noise", "options": {"kind": "uniform", "amount": 0.2}})
    drawn = uniform(flat, ctx) - 0.5
    assert drawn.abs().max() <= 0.1 and drawn.abs().max() > 0.09
    ramp = torch.linspace(0, 1, 16).expand(6, 3, 16, 16).contiguous()
    crops = REGISTRY.build("augmentation", {"name": "crops", "options": {"box_size": [0.25, 0.5], "size": 8}})
    out = crops(ramp, ctx)
    assert out.shape == (6, 3, 8, 8)
    spans = out[:, 0, 0, -1] - out[:, 0, 0, 0]  # a crop of a quarter to a half of the ramp spans that much of it
    assert (spans > 0.1).all() and (spans < 0.5).all() and len(set(spans.tolist())) == 6


# --------------------------------------------------------------------------- bad input


def refused(tmp_path: Path, capsys, spec: dict) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["invert", str(path), "--out", str(out)]) == 2
    assert not out.exists()
    return capsys.readouterr().err


def spectrum_file(tmp_path: Path, name: str, content) -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    return name


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.npy", None, "no such spectrum file: '{path}'"),
        ("damaged.npy", "truncated", "'{path}' is not a readable .npy spectrum file"),
        ("text.npy", b"not a spectrum at all", "'{path}' is not a readable .npy spectrum file"),
        (
            "shape.npy",
            np.ones((3, 10, 10), np.float32),
            "'{path}' has shape (3, 10, 10); a spectrum is (3, N, N // 2 + 1)",
        ),
        ("four.npy", np.ones((4, 8, 5), np.float32), "'{path}' has shape (4, 8, 5)"),
        ("negative.npy", -np.ones((8, 5), np.float32), "'{path}' holds negative, NaN or infinite magnitudes"),
        ("zeros.npy", np.zeros((3, 8, 5), np.float32), "'{path}' is all zeros"),
    ],
)
def test_a_bad_spectrum_file_is_named_with_its_place_and_nothing_is_written(tmp_path, capsys, name, content, message):
    if isinstance(content, str):  # a real spectrum cut short
        content = TOYWORLD_SPECTRUM.read_bytes()[:200]
    if content is not None:
        spectrum_file(tmp_path, name, content)
    err = refused(tmp_path, capsys, tiny_maco(parameterization={"name": "maco", "options": {"spectrum": name}}))
    assert "parameterization.options.spectrum: " in err and message.format(path=tmp_path / name) in err
    assert "[parameterization 'maco' from plugin 'maco'" in err


def test_a_spectrum_that_changed_since_the_spec_was_written_is_refused(tmp_path, capsys):
    options = {"spectrum": str(TOYWORLD_SPECTRUM), "spectrum_sha256": "0" * 64}
    err = refused(tmp_path, capsys, tiny_maco(parameterization={"name": "maco", "options": options}))
    assert "parameterization.options.spectrum_sha256: " in err and "the file changed since this spec was written" in err


def test_a_spectrum_of_another_size_is_resampled_and_extrapolated_with_a_note():
    small = maco(size=(8, 8))
    assert small.magnitude.shape == (3, 8, 5)
    with pytest.warns(UserWarning, match="are extrapolated"):
        big = maco(size=(96, 96))
    assert big.magnitude.shape == (3, 96, 49) and torch.isfinite(big.magnitude).all()
    assert_magnitude_is_the_spectrum(big)
    # beyond the file's 32 cycles per image, the power law goes on falling
    assert (big.magnitude[:, 0, 48] < big.magnitude[:, 0, 32]).all()


def test_crops_larger_than_the_image_are_refused(tmp_path, capsys):
    crops = {"name": "crops", "options": {"box_size": [0.5, 1.5]}}
    err = refused(tmp_path, capsys, tiny_maco(augmentations=[crops]))
    assert "augmentations[0].options.box_size: a crop of 1.5 x the image's side is larger than the image" in err


@pytest.mark.parametrize(
    "make, argv, message",
    [
        (lambda d: None, [], "'{dir}' holds no images (.png, .jpg, .jpeg files)"),
        (lambda d: (d / "b.png").write_bytes(b"not a png"), [], "'{dir}/b.png' is not a readable image"),
        (lambda d: None, ["--size", "1"], "--size must be 2 or more, not 1"),
    ],
)
def test_the_spectrum_command_names_a_bad_folder_or_image_and_writes_nothing(tmp_path, capsys, make, argv, message):
    folder = tmp_path / "images"
    folder.mkdir()
    if "no images" not in message:
        Image.new("RGB", (8, 8), (200, 30, 30)).save(folder / "a.png")
    make(folder)
    out = tmp_path / "s.npy"
    assert main(["spectrum", str(folder), "--out", str(out), *argv]) == 2
    assert message.format(dir=folder) in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_the_spectrum_command_refuses_a_missing_folder_and_an_existing_file(tmp_path, capsys):
    assert main(["spectrum", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s.npy")]) == 2
    assert f"'{tmp_path / 'nowhere'}' is not a folder" in capsys.readouterr().err
    (tmp_path / "taken.npy").write_bytes(b"x")
    assert main(["spectrum", str(tmp_path), "--out", str(tmp_path / "taken.npy")]) == 2
    assert "already exists; choose another --out" in capsys.readouterr().err
    assert (tmp_path / "taken.npy").read_bytes() == b"x"
