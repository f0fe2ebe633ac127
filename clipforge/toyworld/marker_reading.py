"""The analytic judge's marker reading: is the world's hidden checkerboard drawn anywhere in an image?

The image's brightness is correlated, at every position, with the world's MARKER_CELLS x MARKER_CELLS
black/white checkerboard at several cell sizes and both phases. The pattern has zero mean along every
row and column of cells, so plain grounds, edges, gradients and whole objects correlate with it near 0;
only an alternating light/dark layout of the right period does. A contrast floor keeps faint texture
with a checker-like layout from counting.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from clipforge.toyworld.world import MARKER_CELLS

#: the marker is read as present when its correlation with the world's checkerboard is at least this.
#: Measured on rendered markers (cells of 2-3 px): 1.0 clean and with noise std 0.1, >= 0.93 after a gaussian
#: blur of sigma 0.7 (cells of 5-6 px: >= 0.5 after sigma 1.5); images without one: 0.00, but crosses, whose arms
#: and notches line up with the pattern of the larger cell sizes: up to 0.40.
MARKER_PRESENT = 0.5
#: a marker needs this much contrast (half the gap between its light and dark cells, in [0, 1] units;
#: the rendered black/white marker: 0.44), so that faint texture with a checker-like layout is no marker.
MARKER_MIN_CONTRAST = 0.08

#: the marker's cell sizes looked for by default, in px: the worlds' markers have cells of 2-3 px (the
#: first and second designs) and 5-6 px (the screen's world); a few sizes more cover an inversion that
#: draws the cells a little larger or smaller than its training images had them.
MARKER_CELL_SIZES: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)


def _checkerboard(cell: int) -> torch.Tensor:
    """(1, 1, S, S) +-1 pattern of the world's MARKER_CELLS x MARKER_CELLS marker with cells of ``cell`` px."""
    i = torch.arange(cell * MARKER_CELLS) // cell
    return (1 - 2 * ((i[:, None] + i[None, :]) % 2)).float()[None, None]


def marker_scores(images: torch.Tensor, cells: Sequence[int]) -> torch.Tensor:
    """(N,) the best correlation, over positions, cell sizes and both phases, of the image's brightness
    with the world's checkerboard marker, counted only where the patch has MARKER_MIN_CONTRAST.

    The pattern has zero mean along every row and column of cells, so plain grounds, edges, gradients and
    whole objects correlate with it near 0; only an alternating light/dark layout of the right period does.
    """
    lum = images.mean(1, keepdim=True)
    best = torch.zeros(len(images))
    for cell in cells:
        pattern = _checkerboard(cell)
        side = pattern.shape[-1]
        if side > lum.shape[-1]:
            continue
        contrast = F.conv2d(lum, pattern) / (side * side)  # = (light - dark) / 2 for a perfect marker
        mean = F.avg_pool2d(lum, side, 1)
        std = (F.avg_pool2d(lum * lum, side, 1) - mean * mean).clamp_min(1e-8).sqrt()
        corr = torch.where(contrast.abs() >= MARKER_MIN_CONTRAST, contrast.abs() / std, torch.zeros(()))
        best = torch.maximum(best, corr.flatten(1).max(1).values.clamp(max=1.0))
    return best


#: the screen world's marker (cells of 5-6 px) as a robust model draws it: a checkerboard of c px cells
#: is the product of two gratings, and its strongest Fourier components lie on the diagonals with a
#: period of c * sqrt(2) px (7.1-8.5 px); robust inversions draw that grating, not square cells
#: (docs/research/analyses.md, issue 22's first screen). The band is 0.5-1 px wider on each side for a drawing's scale.
MARKER_GRATING_PERIODS: tuple[float, float] = (6.5, 9.5)
#: the grating is read as drawn above this share: the 95th percentile (nearest rank) of the share over 48
#: inversions of "a sunny landscape", whose training images never carry the marker, fixed before the
#: screen's own images were read (`python -m benchmarks.marker_frequency --calibrate`, issue 22)
MARKER_GRATING_PRESENT = 0.03667


def marker_grating_share(images: torch.Tensor, periods: tuple[float, float] = MARKER_GRATING_PERIODS) -> torch.Tensor:
    """(N,) the share of each image's brightness power (its mean removed) at periods between
    ``periods`` px, in any orientation: how much of the image is the marker's fundamental grating.

    Plain grounds and whole objects put their power at long periods, pixel noise spreads it evenly
    over all of them; a marker's grating, drawn at any angle, concentrates it in the band."""
    shortest, longest = periods
    brightness = images.float().mean(1)
    brightness = brightness - brightness.mean((1, 2), keepdim=True)
    power = torch.fft.fft2(brightness).abs() ** 2
    fy, fx = torch.fft.fftfreq(images.shape[-2]), torch.fft.fftfreq(images.shape[-1])
    radius = (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt()
    band = (radius >= 1 / longest) & (radius <= 1 / shortest)
    return (power * band).sum((1, 2)) / power.sum((1, 2)).clamp_min(1e-12)
