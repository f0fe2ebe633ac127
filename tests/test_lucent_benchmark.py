"""The Lucent benchmark in a tiny configuration (two channels, a few steps), so that it cannot rot:
clipforge's side and the measurement always, Lucent's side where torch-lucent is installed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import lucent_compare
from clipforge import image_tower
from clipforge.judge import load_backbone

TINY = lucent_compare.Steps(clipforge=2, lucent=3, equal=2)


@pytest.fixture(scope="module")
def rn():
    return load_backbone(lucent_compare.backbone_ref("toyworld-rn"))


@pytest.fixture(scope="module")
def vit():
    return load_backbone(lucent_compare.backbone_ref("toyworld-vit"))


def quantised_image(count: int, seed: int) -> torch.Tensor:
    """Images a PNG holds exactly (whole multiples of 1/255), so the measurement's quantising is a no-op."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, 64, 64), generator=generator).float() / 255


def read_directly(backbone, layer: str, images: torch.Tensor, channels: list[int]) -> torch.Tensor:
    """Each image's channel, its mean over positions, from a plain forward hook on the normalised
    image: written apart from clipforge's ``captured`` and ``channel_maps``."""
    module = dict(image_tower(backbone).named_modules())[layer]
    seen = []
    handle = module.register_forward_hook(lambda m, i, out: seen.append(out.detach().clone()))
    try:
        with torch.no_grad():
            backbone.model.visual((images - backbone.mean) / backbone.std)
    finally:
        handle.remove()
    out = seen[0]
    if out.dim() == 4:  # (N, C, H, W)
        return torch.stack([out[i, c].mean() for i, c in enumerate(channels)])
    return torch.stack([out[i, :, c].mean() for i, c in enumerate(channels)])  # (N, L, C)


def test_the_channels_are_drawn_by_their_seed():
    picked = lucent_compare.pick_channels(16, 128, seed=0)
    assert picked == lucent_compare.pick_channels(16, 128, seed=0)
    assert len(set(picked)) == 16 and picked == sorted(picked) and all(0 <= c < 128 for c in picked)
    assert picked != list(range(16)) and picked != lucent_compare.pick_channels(16, 128, seed=1)


@pytest.mark.parametrize(("model", "layer"), [("rn", "layer3"), ("vit", "transformer.resblocks.3")])
def test_the_measurement_is_the_channels_mean_read_directly(model, layer, request):
    backbone = request.getfixturevalue(model)
    images, channels = quantised_image(2, seed=5), [3, 17]
    measured = lucent_compare.activations(backbone, layer, images, channels)
    assert measured.shape == (2,)
    assert torch.allclose(measured, read_directly(backbone, layer, images, channels), atol=1e-5)


def test_the_measurement_reads_the_image_as_its_png_holds_it(rn):
    images, channels = quantised_image(1, seed=2), [9]
    beyond = images.clone()
    beyond[:, :, :8] = 1.7  # clamped to 1 as the PNG holds it
    assert lucent_compare.activations(rn, "layer2", beyond, channels) == pytest.approx(
        lucent_compare.activations(rn, "layer2", beyond.clamp(0, 1), channels).tolist()
    )


def test_clipforges_side_is_the_example_setup_and_keeps_each_channels_image():
    spec = lucent_compare.layer_spec("toyworld-rn", "layer2", list(range(16)))
    assert spec.run["steps"] == lucent_compare.example_steps() == 160 and spec.run["copies"] == 8
    assert len(spec.batches()) == 1  # a layer's channels in one run
    short = lucent_compare.layer_spec("toyworld-rn", "layer2", [4, 40], steps=2)
    assert [r["step"] for r in short.run["resolution"]] == [0, 1]
    together, clock = lucent_compare.run_clipforge(short)
    alone, _ = lucent_compare.run_clipforge(lucent_compare.layer_spec("toyworld-rn", "layer2", [40], steps=2))
    assert together.shape == (2, 3, 64, 64) and clock.wall > 0 and clock.cpu > 0
    assert torch.allclose(together[1], alone[0], atol=1e-4)  # channel 40's image is the second, as ordered


def test_a_tiny_comparison_without_lucent_measures_clipforges_images():
    out = lucent_compare.compare_layer("toyworld-rn", "layer2", 2, seed=0, steps=TINY, lucent=False)
    assert len(out["channels"]) == 2 and out["rows"] == [] and out["lucent"] == {}
    assert list(out["clipforge"]) == ["2"] and len(out["clipforge"]["2"]["activations"]) == 2
    assert out["clipforge"]["2"]["seconds"] > 0 and len(out["gray"]) == 2


# --------------------------------------------------------------------------- Lucent's side, where installed


@pytest.fixture(scope="module")
def lucent():
    pytest.importorskip("lucent")
    return lucent_compare.import_lucent()


def test_the_token_objective_reads_the_last_axis_and_lucents_own_the_second(lucent):
    _, _, objectives = lucent
    tokens = torch.arange(2 * 5 * 4, dtype=torch.float32).view(2, 5, 4)  # (N, L, C)
    maps = torch.arange(2 * 4 * 3 * 3, dtype=torch.float32).view(2, 4, 3, 3)  # (N, C, H, W)
    name = lucent_compare.lucent_layer("transformer.resblocks.3")
    assert name == "visual_transformer_resblocks_3"
    on_tokens = lucent_compare.lucent_objective(objectives, "transformer.resblocks.3", 2, tokens=True)
    on_maps = lucent_compare.lucent_objective(objectives, "layer2", 2, tokens=False)
    assert float(on_tokens(lambda layer: tokens)) == pytest.approx(-float(tokens[..., 2].mean()))
    assert float(on_maps(lambda layer: maps)) == pytest.approx(-float(maps[:, 2].mean()))


def test_lucents_names_are_the_wrapped_towers_and_its_renders_repeat_without_touching_global_rngs(lucent, vit):
    from lucent.modelzoo.util import get_model_layers

    assert "visual_transformer_resblocks_3" in get_model_layers(lucent_compare.NormalisedTower(vit))
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    first, clock = lucent_compare.run_lucent(vit, "transformer.resblocks.3", [1, 7], steps=2)
    again, _ = lucent_compare.run_lucent(vit, "transformer.resblocks.3", [1, 7], steps=2)
    assert first.shape == (2, 3, 64, 64) and clock.wall > 0 and torch.equal(first, again)
    assert torch.equal(torch.get_rng_state(), torch_state) and np.array_equal(np.random.get_state()[1], numpy_state)


def test_a_tiny_comparison_fills_a_row_per_setting(lucent):
    out = lucent_compare.compare_layer("toyworld-vit", "transformer.resblocks.3", 2, seed=0, steps=TINY)
    assert [r["setting"] for r in out["rows"]] == ["defaults", "equal steps"]
    assert sorted(out["lucent"]) == ["2", "3"]  # Lucent at its (tiny) default and at equal steps
    defaults, equal = out["rows"]
    assert defaults["steps"] == {"clipforge": 2, "lucent": 3} and equal["steps"] == {"clipforge": 2, "lucent": 2}
    ours, theirs = out["clipforge"]["2"]["activations"], out["lucent"]["2"]["activations"]
    assert equal["share_clipforge_at_least_lucent"] == sum(a >= b for a, b in zip(ours, theirs)) / 2
    assert equal["median_lucent"] == pytest.approx(sum(theirs) / 2)
    assert all(r["channels"] == 2 and min(r["seconds_per_channel"].values()) > 0 for r in out["rows"])
    lines = lucent_compare.table(out["rows"]).splitlines()
    assert len(lines) == 4 and all(line.count("|") == 12 for line in lines)
