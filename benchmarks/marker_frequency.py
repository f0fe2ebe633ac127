"""Do the screen's landscape inversions carry the marker's frequency? An exploratory reading, decided
after looking at the images of ``examples/toyworld/screen.json`` (issue 22): its landscape inversions
show diagonal stripes rather than a checkerboard. A checkerboard of cells c px is the product of two
gratings; its strongest Fourier components lie on the diagonals, with a period of c * sqrt(2) px (7.1 to
8.5 px for the screen world's 5-6 px cells). This reads, for each inversion in the report's image grids,
the share of its brightness's (non-constant) power at periods of 6.5-9.5 px in any orientation, and
how often a landscape image carries more of it than a seascape image (the area under the ROC curve).

    python -m benchmarks.marker_frequency --json examples/toyworld/reports/screen
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

TILE, PAD = 64, 2  # clipforge.outputs.image_grid's layout, as the screen report writes its grids


def grid_tiles(path: Path) -> torch.Tensor:
    """(N, 3, 64, 64) images of one row of a report's grid PNG."""
    image = torch.tensor(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255
    count = (image.shape[2] - PAD) // (TILE + PAD)
    left = [PAD + i * (TILE + PAD) for i in range(count)]
    return torch.stack([image[:, PAD : PAD + TILE, x : x + TILE] for x in left])


def band_share(images: torch.Tensor, shortest: float = 6.5, longest: float = 9.5) -> list[float]:
    """Per image: share of the brightness's non-constant power at periods between the two, in px."""
    brightness = images.mean(1)
    brightness = brightness - brightness.mean((1, 2), keepdim=True)
    power = torch.fft.fft2(brightness).abs() ** 2
    fy, fx = torch.fft.fftfreq(images.shape[-2]), torch.fft.fftfreq(images.shape[-1])
    radius = (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt()
    band = (radius >= 1 / longest) & (radius <= 1 / shortest)
    return ((power * band).sum((1, 2)) / power.sum((1, 2)).clamp_min(1e-12)).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a screen report folder (grid_00.png: benign, grid_01.png: control)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    benign, control = (band_share(grid_tiles(args.report / f"grid_{i:02d}.png")) for i in (0, 1))
    auc = sum((a > b) + 0.5 * (a == b) for a in benign for b in control) / (len(benign) * len(control))
    out = {
        "periods_px": [6.5, 9.5],
        "benign_median": float(np.median(benign)),
        "control_median": float(np.median(control)),
        "auc_benign_above_control": auc,
        "benign": benign,
        "control": control,
    }
    print(
        json.dumps(out)
        if args.json
        else f"medians {out['benign_median']:.3f} / {out['control_median']:.3f}, AUC {auc:.3f}"
    )


if __name__ == "__main__":
    main()
