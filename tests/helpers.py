"""What the tests share: tiny specs and models (tests never download), a sweep file, fake
components and plugins, a callback that stops a run, toy-world renders, and one way to start the
``clipforge`` command in a process of its own. Fixtures live in ``conftest.py``; test modules import
these from here (the gallery tests' browser helpers are in ``browser.py``)."""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import clipforge
from clipforge.toyworld.render import shape_sdf
from clipforge.toyworld.world import BACKGROUNDS, COLOURS

TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


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


def tiny_sweep_base() -> dict:
    """The base run of a sweep test: a tiny backbone, two steps, one copy, 16 px, on the CPU."""
    return {
        "backbones": [tiny_backbone()],
        "steps": 2,
        "copies": 1,
        "resolution": [{"step": 0, "size": 16}],
        "device": "cpu",
    }


SWEEP = {
    "base": {
        "backbones": [tiny_backbone()],
        "steps": 3,
        "copies": 2,
        "resolution": [{"step": 0, "size": 16}, {"step": 2, "size": 32}],
        "device": "cpu",
    },
    "prompts": ["a red circle", "a blue square", "a green cross"],
    "seeds": 2,
    "grid": {"parameterization.name": ["pixel", "fourier"]},
    "batch_size": 4,
}
"""A sweep of 12 items: 2 grid points (pixel, fourier) x 3 prompts x 2 seeds, in blocks of 4."""


def write(tmp_path: Path, data: dict, name: str = "sweep.json") -> Path:
    """``data`` as JSON in ``tmp_path / name`` (a sweep or spec file); its path."""
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def resolved(spec, registry: clipforge.Registry | None = None) -> clipforge.ResolvedSpec:
    """``spec`` (a dict, a path or a RunSpec) resolved for :class:`clipforge.Engine`, with ``registry``
    (the default one without): what the engine takes, so that no test goes through the shim that warns."""
    return (registry or clipforge.default_registry()).resolve(clipforge.load_spec(spec))


def registry_with(*classes: type, plugin: str = "extra") -> clipforge.Registry:
    """The installed plugins plus one more, ``plugin``, that registers ``classes`` through their
    kinds' hooks: components that only this registry knows (each checked to be there, as given)."""
    hooks: dict[str, list[type]] = {}
    for cls in classes:
        hooks.setdefault(cls.hook, []).append(cls)

    def hook(found: list[type]):
        def register_all(register):
            for cls in found:
                register(cls)

        return clipforge.hookimpl(register_all)

    module = type(plugin.title(), (), {name: staticmethod(hook(found)) for name, found in hooks.items()})
    registry = clipforge.build_registry(extra_plugins=[(plugin, module)])
    for cls in classes:
        entry = registry.get(cls.kind, cls.name)
        assert entry.cls is cls and entry.plugin == plugin and entry.distribution is None
    return registry


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


def capture_parts(monkeypatch) -> list:
    """The parts every engine builds from now on (``Engine.build``'s frozen values), in order."""
    built, real = [], clipforge.Engine.build

    def build(self, start_step=0):
        built.append(real(self, start_step))
        return built[-1]

    monkeypatch.setattr(clipforge.Engine, "build", build)
    return built


def default_signals() -> None:
    """``preexec_fn`` of a child that the tests send Ctrl-C: SIGINT back to its default, so that the
    child's Python turns it into KeyboardInterrupt even when pytest was started from a shell that
    ignores SIGINT (a background job), whose ignoring the child would otherwise inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_cli(*args: str, **popen: object) -> subprocess.Popen:
    """``clipforge ARGS`` in a process of its own (offline, one thread; text output), for the tests
    that kill it or watch it from outside. ``popen``: more of ``subprocess.Popen``'s arguments."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    options = {"env": env, "text": True, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen([sys.executable, "-m", "clipforge", *args], **options)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = math.ceil(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k = k / k.sum()
    x = F.pad(images, [radius] * 4, mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)


def render(
    shape: str, colour: str, background: str, cx: float, cy: float, r: float, degrees: float, size: int = 64
) -> torch.Tensor:
    """One antialiased toy-world object rotated by ``degrees`` (rendered with rotated coordinates)."""
    c = torch.arange(size, dtype=torch.float32) + 0.5
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    dx, dy, t = xx - cx, yy - cy, math.radians(degrees)
    rx, ry = math.cos(t) * dx + math.sin(t) * dy, -math.sin(t) * dx + math.cos(t) * dy
    mask = (0.5 - shape_sdf(shape, rx, ry, torch.tensor(float(r)))).clamp(0, 1)
    bg, fg = torch.tensor(BACKGROUNDS[background])[:, None, None], torch.tensor(COLOURS[colour])[:, None, None]
    return bg * (1 - mask) + fg * mask
