"""Feature visualisation by parameterisation (issue 32's comparison, its design written before it ran:
docs/research/objectives.md): the same channels of the bundled models' layers visualised with each image
parameterisation at its defaults and equal steps, through the layer analysis (``clipforge layer``),
and each saved image measured three ways:

- its activation, as the layer analysis measures it (on the saved 8-bit image, hooks on the layer);
- its share of high-frequency energy: the share of the luminance's spectral energy (mean removed)
  at radial frequencies above ``HIGH`` cycles per pixel (half the Nyquist frequency);
- whether it collapsed: the saved image's standard deviation over all pixels and channels below ``FLAT``.

    python -m benchmarks.fv_parameterizations --threads 2 --out runs/fv_parameterizations --json

A layer report already in ``--out`` (from an earlier run of the same command) is measured again
rather than run again. Prints a table per layer (median activation, channels where it is the highest of the
parameterisations, median high-frequency share, collapsed images); ``--json`` writes the rows too.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import clipforge

#: the layers compared: the bundled ResNet's layer2 and layer3, the bundled ViT's last two blocks
LAYERS = [
    ("toyworld-rn", "layer2"),
    ("toyworld-rn", "layer3"),
    ("toyworld-vit", "transformer.resblocks.2"),
    ("toyworld-vit", "transformer.resblocks.3"),
]
PARAMETERIZATIONS = ["pixel", "fourier", "multires", "maco"]
HIGH = 0.25  # cycles per pixel: above it, "high frequency"
FLAT = 0.02  # a saved image whose pixels vary less than this (std, in [0, 1]) collapsed


def high_frequency_share(image: torch.Tensor, cutoff: float = HIGH) -> float:
    """The share of an image's luminance energy (its mean removed) above ``cutoff`` cycles per pixel."""
    luminance = (image * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0)
    power = torch.fft.fft2(luminance - luminance.mean()).abs() ** 2
    h, w = luminance.shape
    radius = (torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.fftfreq(w)[None, :] ** 2).sqrt()
    total = power.sum()
    return float(power[radius > cutoff].sum() / total) if total > 0 else 0.0


def saved_image(path: Path, frame: int = 2) -> torch.Tensor:
    """A channel's image as the layer report saves it, (3, H, W) in [0, 1]: with one seed, a grid of
    one cell in a ``frame``-pixel white border (``clipforge.image_grid``), which is cut off here, so
    that neither measure reads the border."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB")).copy()
    return torch.from_numpy(array).permute(2, 0, 1).float()[:, frame:-frame, frame:-frame] / 255


def collapsed(image: torch.Tensor, threshold: float = FLAT) -> bool:
    return float(image.std()) < threshold


def chosen_channels(model: str, layer: str, count: int, seed: int) -> list[int]:
    """``count`` channels of the layer, drawn by a fixed seed (the same for every parameterisation)."""
    shape = clipforge.layer_shape(model, layer)
    total = clipforge.channel_count(shape)
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    return sorted(order[: min(count, total)].tolist())


def layer_spec(model: str, layer: str, channels: list[int], parameterization: str, steps: int) -> dict[str, Any]:
    """The layer example's settings (examples/toyworld/layer.json), with the parameterisation at its defaults."""
    return {
        "layer": layer,
        "channels": channels,
        "batch": len(channels),
        "run": {
            "backbones": [{"name": "open_clip", "options": {"model": model}}],
            "parameterization": parameterization,
            "regularizers": [{"name": "tv", "options": {"weight": 0.02}}],
            "copies": 8,
            "steps": steps,
            "resolution": [{"step": 0, "size": 32}, {"step": max(1, steps // 2), "size": 64}],
            "device": "cpu",
        },
    }


def compare_layer(
    model: str, layer: str, channels: list[int], parameterizations: list[str], steps: int, out: Path
) -> list[dict[str, Any]]:
    """One layer report per parameterisation, and every saved image measured."""
    measured: dict[str, dict[int, dict[str, Any]]] = {}
    for name in parameterizations:
        folder = out / f"{model}_{layer}_{name}"
        if (folder / "report.json").is_file():  # made by an earlier run of this command: measured again, not rerun
            report = json.loads((folder / "report.json").read_text())
        else:
            spec = layer_spec(model, layer, channels, name, steps)
            report = clipforge.analyse("layer", spec, folder, progress=False)
        measured[name] = {}
        for entry in report["channels"]:
            image = saved_image(folder / entry["image"])
            measured[name][entry["channel"]] = {
                "activation": entry["activation"],
                "high_frequency": high_frequency_share(image),
                "collapsed": collapsed(image),
            }
    rows = []
    for name in parameterizations:
        values = measured[name]
        best = sum(
            all(values[c]["activation"] >= measured[other][c]["activation"] for other in parameterizations)
            for c in channels
        )
        rows.append(
            {
                "model": model,
                "layer": layer,
                "parameterization": name,
                "channels": len(channels),
                "median_activation": statistics.median(v["activation"] for v in values.values()),
                "highest": best,
                "median_high_frequency": statistics.median(v["high_frequency"] for v in values.values()),
                "collapsed": sum(v["collapsed"] for v in values.values()),
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | layer | parameterisation | channels | median activation | highest | median HF share | collapsed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['layer']} | {r['parameterization']} | {r['channels']} | "
            f"{r['median_activation']:.3f} | {r['highest']} | {r['median_high_frequency']:.3f} | {r['collapsed']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=32, help="channels per layer (default 32)")
    parser.add_argument("--steps", type=int, default=160, help="steps of every run (default 160, the example's)")
    parser.add_argument("--seed", type=int, default=0, help="the seed that draws the channels")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--parameterizations", default=",".join(PARAMETERIZATIONS))
    parser.add_argument("--layers", type=int, default=len(LAYERS), help="the first N of the four layers")
    parser.add_argument("--out", type=Path, default=Path("runs/fv_parameterizations"))
    parser.add_argument("--json", action="store_true", help="also write rows.json into --out")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.parameterizations.split(",") if n.strip()]
    rows = []
    for model, layer in LAYERS[: args.layers]:
        channels = chosen_channels(model, layer, args.channels, args.seed)
        rows += compare_layer(model, layer, channels, names, args.steps, args.out)
        print(table([r for r in rows if r["layer"] == layer]), flush=True)
    if args.json:
        (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
