"""The layer-batching benchmark's arithmetic, and one small run of it on a tiny model."""

from __future__ import annotations

import pytest
from helpers import tiny_backbone

from benchmarks import layer_batching


def test_the_figures_are_channels_over_seconds_and_the_loops_seconds_over_the_batched_ones():
    out = layer_batching.figures(16, batched=4.0, loop=20.0)
    assert out["batched_channels_per_second"] == 4.0 and out["loop_channels_per_second"] == 0.8
    assert out["speedup"] == pytest.approx(5.0)


def test_a_small_comparison_runs_and_its_images_agree():
    out = layer_batching.compare(tiny_backbone(), "conv1", [1, 4, 7], steps=2, copies=1)
    assert out["channels"] == 3 and out["steps"] == 2
    assert out["batched_seconds"] > 0 and out["loop_seconds"] > 0 and out["in_loop"]["speedup"] > 0
    assert out["max_image_difference"] < 1e-4  # a channel's image does not depend on its neighbours
