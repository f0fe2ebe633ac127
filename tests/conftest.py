"""Shared fixtures. Tests never download: tiny open_clip models are built from configs."""

from __future__ import annotations

import copy
import os
import signal

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub download must fail fast, never hang on retries

import pytest
import torch

import clipforge

TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def default_signals() -> None:
    """``preexec_fn`` of a child that the tests send Ctrl-C: SIGINT back to its default, so that the
    child's Python turns it into KeyboardInterrupt even when pytest was started from a shell that
    ignores SIGINT (a background job), whose ignoring the child would otherwise inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def tiny_backbone(seed: int = 0) -> dict:
    return {"name": "open_clip", "options": {"config": copy.deepcopy(TINY_CONFIG), "init_seed": seed}}


def tiny_spec_dict(**overrides) -> dict:
    spec = {
        "prompts": ["a red circle", "a blue square"],
        "seeds": [0, 1],
        "backbones": [tiny_backbone()],
        "steps": 6,
        "copies": 3,
        "resolution": [{"step": 0, "size": 16}, {"step": 3, "size": 32}],
        "callbacks": [
            {"name": "progress", "options": {"disable": True}},
            "metrics",
            {"name": "snapshots", "options": {"every": 2}},
        ],
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def tiny_spec() -> dict:
    return tiny_spec_dict()


@pytest.fixture(autouse=True)
def _threads():
    # CLIPFORGE_TEST_THREADS=1 under the mutation run: a forked child hangs in a parent's thread pool
    torch.set_num_threads(int(os.environ.get("CLIPFORGE_TEST_THREADS", "2")))
    yield


def registry_with(*classes: type) -> clipforge.Registry:
    """The installed plugins plus one more, "extra", that registers ``classes`` through their kinds'
    hooks: components that only this registry knows."""
    hooks: dict[str, list[type]] = {}
    for cls in classes:
        hooks.setdefault(cls.hook, []).append(cls)

    def hook(found: list[type]):
        def register_all(register):
            for cls in found:
                register(cls)

        return clipforge.hookimpl(register_all)

    plugin = type("Extra", (), {name: staticmethod(hook(found)) for name, found in hooks.items()})
    return clipforge.build_registry(extra_plugins=[("extra", plugin)])


class DimOnlyHere(clipforge.Regularizer):
    """A regularizer no installed plugin provides, to see that a registry passed in is the one used."""

    name = "dim_only_here"

    def __call__(self, images):
        return images.mean(dim=(1, 2, 3))


class StopAt(clipforge.Callback):
    """Ctrl-C after a given step (a run stopped part-way, for resume and checkpoint tests)."""

    name = "stop_at"

    def __init__(self, step: int):
        super().__init__(clipforge.Options())
        self.step = step

    def on_step_end(self, run, state):
        if state.step == self.step:
            raise KeyboardInterrupt


def tiny_sweep_base() -> dict:
    """The base run of a sweep test: a tiny backbone, two steps, one copy, 16 px, on the CPU."""
    return {
        "backbones": [tiny_backbone()],
        "steps": 2,
        "copies": 1,
        "resolution": [{"step": 0, "size": 16}],
        "device": "cpu",
    }
