"""The parameterisation comparison's measures (benchmarks/fv_parameterizations.py), on images whose
answers are known, and a tiny run of it so that it cannot rot."""

from __future__ import annotations

import math

import torch

from benchmarks.fv_parameterizations import (
    chosen_channels,
    collapsed,
    compare_layer,
    high_frequency_share,
    saved_image,
)
from clipforge.images import image_grid, save_png


def test_high_frequency_share_is_one_for_a_checkerboard_and_zero_for_a_slow_wave():
    y, x = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    checker = ((x + y) % 2).float().expand(3, 64, 64)
    wave = (0.5 + 0.4 * torch.sin(2 * math.pi * 2 * x / 64)).float().expand(3, 64, 64)
    assert high_frequency_share(checker) > 0.999
    assert high_frequency_share(wave) < 1e-6
    assert high_frequency_share(torch.full((3, 64, 64), 0.5)) == 0.0  # no energy at all: nothing is high


def test_a_flat_image_is_collapsed_and_noise_is_not():
    assert collapsed(torch.full((3, 64, 64), 0.01))
    assert not collapsed(torch.rand((3, 64, 64), generator=torch.Generator().manual_seed(0)))


def test_the_channels_are_drawn_by_the_seed_within_the_layer():
    first = chosen_channels("toyworld-rn", "layer2", 8, 0)
    assert first == chosen_channels("toyworld-rn", "layer2", 8, 0) != chosen_channels("toyworld-rn", "layer2", 8, 1)
    assert len(set(first)) == 8 and all(0 <= c < 128 for c in first)


def test_a_tiny_comparison_gives_one_row_per_parameterisation(tmp_path):
    rows = compare_layer("toyworld-rn", "layer3", [1, 2], ["pixel", "fourier"], 2, tmp_path)
    assert [r["parameterization"] for r in rows] == ["pixel", "fourier"]
    assert all(r["channels"] == 2 and 0 <= r["median_high_frequency"] <= 1 for r in rows)
    assert sum(r["highest"] for r in rows) >= 2  # every channel has a highest (ties count for both)


def test_a_saved_channel_image_is_read_without_its_white_frame(tmp_path):
    black = torch.zeros((1, 3, 64, 64))
    save_png(image_grid(black, 1), tmp_path / "c.png")  # as the layer report writes a channel of one seed
    image = saved_image(tmp_path / "c.png")
    assert image.shape == (3, 64, 64) and image.max() == 0  # the frame is gone: a black image reads black
    assert collapsed(image)
