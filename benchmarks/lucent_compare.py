"""Feature visualisation against Lucent (issue 31): the same channels of the bundled models, each
visualised by clipforge's ``clipforge layer`` setup and by Lucent's ``render_vis``, every final image
measured the same way, and the wall time per channel of each.

- **clipforge**: the example spec ``examples/toyworld/layer.json`` (pixels, Adam lr 0.1, 8 augmented
  copies, tv 0.02, 160 steps at 32 -> 64 px), every channel of a layer one prompt of a batched run, as
  the analysis makes it (``LayerSpec.inversion_specs``; at most ``batch`` 32 channels to a run).
- **Lucent** (torch-lucent 0.1.8): ``render_vis`` at its defaults (an fft, colour-decorrelated image,
  its standard transforms, Adam lr 0.05, 512 steps), one call per channel, on the image tower wrapped
  with the model's normalisation. Its image is 64 px, the size the models take (the ResNet's attention
  pool and the ViT's position embedding need it), and ``fixed_image_size=64`` resizes the transformed
  image back to 64 in place of Lucent's default upsampling to 224. ``preprocess=False``: Lucent's
  preprocessing is ImageNet's normalisation, and the wrapper applies the model's own.
- **Measured the same way**: each final image clamped to [0, 1] and quantised to 8 bits as its PNG
  holds it, run through the same backbone, the channel's mean over positions read with hooks: the
  layer analysis's own measurement (``as_saved`` and ``measure``).

Two settings: each tool at its own defaults, and at equal steps (``--equal-steps``, by default
clipforge's: Lucent then runs that many steps, and clipforge's run is its default one). Wall time is
the engine run (building it included) of a layer's channels over their count, and Lucent's
``render_vis`` calls over theirs, after a short warm-up of each, at ``--threads`` threads.

    python -m benchmarks.lucent_compare --threads 1 --channels 16

Prints a table per model, layer and setting: channels, the share of them where clipforge's activation
is at least Lucent's, the median activation of each (and of a gray image, for scale), and seconds per
channel of each, wall (CPU: at one thread, the process's own work, whatever else shares the core);
``--json``: one JSON object, with every channel's figures.

Lucent is a benchmark-only dependency (``pip install torch-lucent==0.1.8``, which brings kornia
0.4.1). :func:`import_lucent` lets it run on a newer kornia and without IPython too.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import resolved
from clipforge import Backbone, channel_count, image_tower, layer_shape
from clipforge.engine import Engine
from clipforge.judge import load_backbone
from clipforge_plugins.analysis_layer import LayerSpec, as_saved, measure

#: the layer analysis's example spec: clipforge's default feature-visualisation setup
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "toyworld" / "layer.json"

#: the layers compared: two of the ResNet's stages, and the ViT's last two transformer blocks
LAYERS: dict[str, list[str]] = {
    "toyworld-rn": ["layer2", "layer3"],
    "toyworld-vit": ["transformer.resblocks.2", "transformer.resblocks.3"],
}

#: render_vis's default steps (its ``thresholds=(512,)``)
LUCENT_STEPS = 512


# --------------------------------------------------------------------------- clocks, channels and the measurement


@dataclass
class Clock:
    """Wall and CPU seconds of the blocks it timed. At one thread the CPU seconds are this process's
    work alone: beside the wall time they show whether something else shared the core."""

    wall: float = 0.0
    cpu: float = 0.0

    @contextmanager
    def timing(self) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall += time.perf_counter() - wall
            self.cpu += time.process_time() - cpu


def backbone_ref(model: str) -> dict[str, Any]:
    return {"name": "open_clip", "options": {"model": model}}


def pick_channels(count: int, layer_channels: int, seed: int) -> list[int]:
    """``count`` distinct channels of a layer drawn with a seeded generator, in order: the same
    channels on every run, not only the first few (which may share a kind)."""
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(layer_channels, generator=generator)[:count].tolist())


def activations(backbone: Backbone, layer: str, images: torch.Tensor, channels: list[int]) -> torch.Tensor:
    """(N,): image ``i``'s activation of ``channels[i]`` (its mean over positions) as the layer
    analysis measures it: on the image as its PNG holds it, read with hooks, so that both tools'
    images are judged by one ruler."""
    values = measure(backbone, layer, as_saved(images), "channel", batch=32)
    return values[torch.arange(len(channels)), torch.tensor(channels)]


# --------------------------------------------------------------------------- clipforge


def layer_spec(model: str, layer: str, channels: list[int], steps: int | None = None) -> LayerSpec:
    """The example spec on ``model``'s ``layer`` and ``channels``; ``steps`` other than the example's
    keep its resolution switch at half of them."""
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    run = {**data["run"], "backbones": [backbone_ref(model)]}
    if steps is not None and steps != run["steps"]:
        run["steps"] = steps
        run["resolution"] = [{**run["resolution"][0], "step": 0}, {**run["resolution"][-1], "step": max(1, steps // 2)}]
    return LayerSpec.model_validate({**data, "layer": layer, "channels": channels, "run": run})


def run_clipforge(spec: LayerSpec) -> tuple[torch.Tensor, Clock]:
    """(images in the spec's channel order, their clock): the analysis's runs, each timed whole (its
    build included), as ``clipforge layer`` makes them."""
    images: list[torch.Tensor] = []
    clock = Clock()
    for chunk, run in zip(spec.batches(), spec.inversion_specs().values()):
        with clock.timing():
            result = Engine(resolved(run)).run()
        images += [result.image(i) for i in range(len(chunk))]  # one seed: prompt i is the chunk's channel i
    return torch.stack(images), clock


# --------------------------------------------------------------------------- Lucent


def import_lucent() -> tuple[Any, Any, Any]:
    """Lucent's ``render``, ``param`` and ``objectives``. Lucent 0.1.8 calls kornia's top-level
    ``get_rotation_matrix2d`` and ``warp_affine``, which kornia 0.5 moved to
    ``kornia.geometry.transform``, and compares kornia's version as a string (0.10 < 0.4); its package
    imports IPython to show images in notebooks, which this benchmark never does. Each is put right
    here, and only where missing, so the kornia it pins (0.4.1) runs untouched."""
    import kornia
    from kornia.geometry import transform as geometry

    for name in ("get_rotation_matrix2d", "warp_affine"):
        if not hasattr(kornia, name):
            setattr(kornia, name, getattr(geometry, name))
    try:
        import IPython.display  # noqa: F401
    except ImportError:
        display = types.ModuleType("IPython.display")
        display.display = display.HTML = lambda *args, **kwargs: None  # type: ignore[attr-defined]
        ipython = types.ModuleType("IPython")
        ipython.display = display  # type: ignore[attr-defined]
        sys.modules.update({"IPython": ipython, "IPython.display": display})
    from lucent.optvis import objectives, param, render, transform

    major_minor = tuple(int(p) for p in kornia.__version__.split(".")[:2])
    if major_minor >= (0, 4) and transform.KORNIA_VERSION < "0.4.0":
        transform.KORNIA_VERSION = "0.4.0"  # its rotation then passes kornia >= 0.4's (B, 2) scale
    return render, param, objectives


class NormalisedTower(torch.nn.Module):
    """The image tower of an open_clip backbone behind its normalisation, as Lucent takes a model:
    an nn.Module from [0, 1] pixels. Its layers are Lucent's ``visual_`` + the tower's name, with
    underscores for dots."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.visual = copy.deepcopy(image_tower(backbone))  # render_vis leaves a hook on every module
        self.register_buffer("mean", backbone.mean.detach().clone().cpu())
        self.register_buffer("std", backbone.std.detach().clone().cpu())

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual((pixels - self.mean) / self.std)


def lucent_layer(layer: str) -> str:
    """A layer's name as Lucent's hooks call it in :class:`NormalisedTower`."""
    return "visual_" + layer.replace(".", "_")


def lucent_objective(objectives: Any, layer: str, channel: int, tokens: bool) -> Any:
    """Lucent's own ``channel`` objective on feature maps (N, C, H, W); on a token layer (N, L, C) its
    ``[:, n]`` would pick token n, so there the channel is the last axis, averaged over tokens the same
    way (clipforge's ``channel`` objective on either)."""
    name = lucent_layer(layer)
    if not tokens:
        return objectives.channel(name, channel)
    return objectives.Objective(lambda hook: -hook(name)[..., channel].mean(), name=f"token_channel {name}:{channel}")


@contextmanager
def seeded_globals(seed: int) -> Iterator[None]:
    """Lucent draws its start from torch's global RNG and its transforms from numpy's: both are
    seeded for one channel's render and given back as they were afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        np.random.set_state(state)


def run_lucent(
    backbone: Backbone, layer: str, channels: list[int], steps: int, seed: int = 0
) -> tuple[torch.Tensor, Clock]:
    """(images, their clock): one ``render_vis`` per channel at Lucent's defaults but ``steps``, each
    timed whole (its parameterisation and hooks included) on a fresh copy of the tower."""
    render, param, objectives = import_lucent()
    size = backbone.input_size[0]
    tokens = len(layer_shape(backbone, layer)) == 2
    images, clock = [], Clock()
    for channel in channels:
        model = NormalisedTower(backbone).eval()
        objective = lucent_objective(objectives, layer, channel, tokens)
        with seeded_globals(seed + channel), clock.timing():
            out = render.render_vis(
                model,
                objective,
                param_f=lambda: param.image(size),
                thresholds=(steps,),
                preprocess=False,
                progress=False,
                show_image=False,
                fixed_image_size=size,
            )
        images.append(torch.from_numpy(out[-1]).permute(0, 3, 1, 2)[0])
    return torch.stack(images), clock


# --------------------------------------------------------------------------- the comparison


@dataclass(frozen=True)
class Steps:
    """The steps of each setting: each tool's defaults, and the one count both run at equal steps."""

    clipforge: int
    lucent: int
    equal: int


def example_steps() -> int:
    """clipforge's default steps: the example spec's."""
    return int(json.loads(EXAMPLE.read_text(encoding="utf-8"))["run"]["steps"])


def median(values: torch.Tensor) -> float:
    """The middle value, or the mean of the two middle ones (torch's ``median`` takes the lower)."""
    return float(torch.quantile(values.float(), 0.5))


def summary(
    setting: str, ours: torch.Tensor, theirs: torch.Tensor, clocks: dict[str, Clock], steps: dict[str, int]
) -> dict[str, Any]:
    """One table row: the share of channels where clipforge's activation is at least Lucent's, the
    medians, and wall and CPU seconds per channel."""
    n = len(ours)
    return {
        "setting": setting,
        "channels": n,
        "steps": steps,
        "share_clipforge_at_least_lucent": float((ours >= theirs).float().mean()),
        "median_clipforge": median(ours),
        "median_lucent": median(theirs),
        "seconds_per_channel": {tool: c.wall / n for tool, c in clocks.items()},
        "cpu_seconds_per_channel": {tool: c.cpu / n for tool, c in clocks.items()},
    }


def warm_up(backbone: Backbone, model: str, layer: str, channel: int, lucent: bool) -> None:
    """A two-step run of each, untimed: the model read and the kernels chosen before the clocks start."""
    run_clipforge(layer_spec(model, layer, [channel], steps=2))
    if lucent:
        run_lucent(backbone, layer, [channel], steps=2)


def compare_layer(model: str, layer: str, count: int, seed: int, steps: Steps, lucent: bool = True) -> dict[str, Any]:
    """Both tools on ``count`` channels of one layer, each run once per distinct step count, and a
    row per setting (none without ``lucent``: then only clipforge's side runs)."""
    backbone = load_backbone(backbone_ref(model))
    channels = pick_channels(count, channel_count(layer_shape(backbone, layer)), seed)
    warm_up(backbone, model, layer, channels[0], lucent)
    gray = activations(backbone, layer, torch.full((len(channels), 3, *backbone.input_size), 0.5), channels)
    ours, theirs = {}, {}
    for n in dict.fromkeys([steps.clipforge, steps.equal]):
        images, clock = run_clipforge(layer_spec(model, layer, channels, n))
        ours[n] = (activations(backbone, layer, images, channels), clock)
    for n in dict.fromkeys([steps.lucent, steps.equal]) if lucent else ():
        images, clock = run_lucent(backbone, layer, channels, n)
        theirs[n] = (activations(backbone, layer, images, channels), clock)
    rows = []
    for setting, mine, other in (
        ("defaults", steps.clipforge, steps.lucent),
        ("equal steps", steps.equal, steps.equal),
    ):
        if lucent:
            timing = {"clipforge": ours[mine][1], "lucent": theirs[other][1]}
            row = summary(setting, ours[mine][0], theirs[other][0], timing, {"clipforge": mine, "lucent": other})
            rows.append({"model": model, "layer": layer, **row, "median_gray": median(gray)})

    def figures(side: dict[int, tuple[torch.Tensor, Clock]]) -> dict[str, Any]:
        return {
            str(n): {"activations": a.tolist(), "seconds": c.wall, "cpu_seconds": c.cpu} for n, (a, c) in side.items()
        }

    return {
        "model": model,
        "layer": layer,
        "channels": channels,
        "gray": gray.tolist(),
        "clipforge": figures(ours),
        "lucent": figures(theirs),
        "rows": rows,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (as RESULTS.md holds it); seconds are wall (CPU)."""
    head = (
        "| model | layer | setting | steps (clipforge / Lucent) | channels | clipforge >= Lucent | "
        "median activation clipforge | median activation Lucent | median gray | s/channel clipforge | "
        "s/channel Lucent |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        wall, cpu = r["seconds_per_channel"], r["cpu_seconds_per_channel"]
        lines.append(
            f"| {r['model']} | {r['layer']} | {r['setting']} | {r['steps']['clipforge']} / {r['steps']['lucent']} | "
            f"{r['channels']} | {r['share_clipforge_at_least_lucent']:.0%} | {r['median_clipforge']:.3f} | "
            f"{r['median_lucent']:.3f} | {r['median_gray']:.3f} | {wall['clipforge']:.2f} ({cpu['clipforge']:.2f}) | "
            f"{wall['lucent']:.2f} ({cpu['lucent']:.2f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=16, help="channels per layer, drawn with --seed")
    parser.add_argument("--seed", type=int, default=0, help="the seed that draws the channels")
    parser.add_argument("--clipforge-steps", type=int, default=None, help="clipforge's default (the example's)")
    parser.add_argument("--lucent-steps", type=int, default=LUCENT_STEPS, help="Lucent's default (render_vis's)")
    parser.add_argument("--equal-steps", type=int, default=None, help="both tools' steps (default: clipforge's)")
    parser.add_argument("--models", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ours = args.clipforge_steps or example_steps()
    steps = Steps(clipforge=ours, lucent=args.lucent_steps, equal=args.equal_steps or ours)
    start = time.perf_counter()
    layers = [
        compare_layer(model, layer, args.channels, args.seed, steps) for model in args.models for layer in LAYERS[model]
    ]
    out = {
        "rows": [row for layer in layers for row in layer["rows"]],
        "layers": layers,
        "threads": args.threads,
        "seconds": time.perf_counter() - start,
        "command": "python -m benchmarks.lucent_compare " + shlex.join(sys.argv[1:] if argv is None else argv),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return out
    print(table(out["rows"]))
    print(f"seconds per channel: wall (CPU); {args.threads} thread(s), {out['seconds']:.0f} s in all")
    print(f"command: {out['command']}")
    return out


if __name__ == "__main__":
    main()
