"""The benchmark scripts' own arithmetic: a wrong ratio there would be a wrong figure in RESULTS.md."""

import pytest
import torch

from benchmarks import compare_parameterizations, speed, toyworld_eval


def test_speed_methods_take_turns_and_keep_medians():
    calls = []

    def method(name, seconds):
        def run():
            calls.append(name)
            return [seconds.pop(0) * 10] * 3  # three phases of 10 steps

        return run

    results = speed.measure(
        {"a": method("a", [1.0, 3.0, 2.0]), "b": method("b", [5.0, 4.0, 6.0])},
        torch.device("cpu"),
        repeats=3,
        steps_per_phase=10,
    )
    assert calls == ["a", "b"] * 3  # alternating, so drift of the machine hits both alike
    assert results["a"]["seconds_per_step"] == pytest.approx(2.0)
    assert results["b"]["seconds_per_step"] == pytest.approx(5.0)
    assert results["a"]["runs"] == pytest.approx([1.0, 3.0, 2.0])


def test_speed_weights_phases_by_the_paper_schedule():
    # 10 steps per phase at 1, 2 and 4 s/step, weighted 900/900/1600 of 3400
    expected = (1 * 900 + 2 * 900 + 4 * 1600) / 3400
    assert speed.weighted_seconds_per_step([10.0, 20.0, 40.0], 10) == pytest.approx(expected)


def test_attribute_accuracy_counts_each_stated_fact_of_the_prompt():
    attribute_accuracy = toyworld_eval.attribute_accuracy
    prompts = [
        "a red circle on a gray background",
        "a blue square on a white background",
        "a green ring on a black background",
        "a cyan cross on a gray background",
    ]
    judged = [
        "a red square on a gray background",  # colour, background
        "a blue square on a white background",  # all three
        "a green ring",  # colour, shape (partial caption: no background)
        "a calm landscape",
    ]  # nothing
    acc = attribute_accuracy(prompts, judged)
    assert acc == {"colour": 3 / 4, "shape": 2 / 4, "background": 2 / 4}


def test_first_reaching_finds_the_first_check_at_or_above_the_target():
    first_reaching = compare_parameterizations.first_reaching
    curve = [
        {"step": 50, "accuracy": 0.1, "seconds": 1.0},
        {"step": 100, "accuracy": 0.4, "seconds": 2.0},
        {"step": 150, "accuracy": 0.3, "seconds": 3.0},
        {"step": 200, "accuracy": 0.5, "seconds": 4.0},
    ]
    assert first_reaching(curve, 0.4)["step"] == 100  # reached exactly, not only exceeded
    assert first_reaching(curve, 0.45)["step"] == 200
    assert first_reaching(curve, 0.05)["step"] == 50
    assert first_reaching(curve, 0.6) is None


def test_the_hand_written_reference_step_agrees_with_the_built_ins():
    from benchmarks.common import paper_affine, tv_four_directions
    from clipforge import default_registry

    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    tv = default_registry().get("regularizer", "tv").cls
    assert torch.allclose(tv_four_directions(images), tv(tv.Options())(images), atol=1e-6)
    still = torch.tensor([[0.5, 0.5, 0.5, 0.6, 0.0]]).repeat(3, 1)  # no turn, no shift, scale 1, applied
    assert torch.allclose(paper_affine(images, still), images, atol=1e-5)
    skipped = torch.tensor([[0.9, 0.1, 0.9, 0.0, 0.7]]).repeat(3, 1)  # a big move, but not applied
    assert torch.equal(paper_affine(images, skipped), images)
    moved = torch.tensor([[0.9, 0.1, 0.9, 0.0, 0.1]]).repeat(3, 1)
    assert (paper_affine(images, moved) - images).abs().max() > 0.1


def test_marker_frequency_reads_a_grating_at_the_markers_period(tmp_path):
    from benchmarks import marker_frequency
    from clipforge.outputs import image_grid, save_png

    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    grating = 0.5 + 0.4 * torch.sin(2 * torch.pi * (x + y) / (8 * 2**0.5))  # diagonal, period 8 px
    smooth = 0.5 + 0.4 * torch.sin(2 * torch.pi * x / 64)  # one slow wave
    images = torch.stack([grating, smooth])[:, None].expand(2, 3, 64, 64)
    save_png(image_grid(images, columns=2), tmp_path / "grid.png")
    tiles = marker_frequency.grid_tiles(tmp_path / "grid.png")
    assert tiles.shape == (2, 3, 64, 64) and (tiles - images).abs().max() < 1 / 255 + 1e-6  # the layout is read
    on_band, off_band = marker_frequency.band_share(tiles)
    assert on_band > 0.7 and off_band < 0.01  # measured 0.85 (the rest leaks: 64 px is no whole number of periods)
