"""Fixtures for clipforge-extras' tests: a tiny randomly initialised open_clip model, so nothing is
downloaded (a copy of the small config clipforge's own tests use; these tests do not import them)."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub download must fail fast, never hang

import pytest
import torch

TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture
def make_spec() -> Callable[..., dict[str, Any]]:
    """A factory of small run specs on the tiny model, using this package's components."""

    def make(**overrides: Any) -> dict[str, Any]:
        spec = {
            "prompts": ["a red circle", "a blue square"],
            "seeds": [0, 1],
            "backbones": [{"name": "open_clip", "options": {"config": copy.deepcopy(TINY_CONFIG)}}],
            "augmentations": ["random_affine", "resize", {"name": "gaussian_noise", "options": {"std": 0.05}}],
            "regularizers": [{"name": "saturation", "options": {"weight": 0.1}}],
            "steps": 6,
            "copies": 3,
            "resolution": [{"step": 0, "size": 16}, {"step": 3, "size": 32}],
            "device": "cpu",
            "callbacks": [
                {"name": "progress", "options": {"disable": True}},
                "metrics",
                {"name": "progress_gif", "options": {"every": 2}},
            ],
        }
        spec.update(overrides)
        return spec

    return make


@pytest.fixture(scope="session")
def tiny_backbone():
    """The tiny model, built once, as a run would build it (for objectives, which read its layers)."""
    import clipforge

    torch.manual_seed(0)
    ref = {"name": "open_clip", "options": {"config": copy.deepcopy(TINY_CONFIG)}}
    return clipforge.load_backbone(ref, torch.device("cpu"))


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
    yield
