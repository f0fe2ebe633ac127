"""Augmentations of the training images: Gaussian noise and a random affine.

Why this random affine is not the inversion's (``clipforge_plugins.paper_augmentations.RandomAffine``):
both use the paper's ranges (rotation +-30 degrees, shift +-10 %, zoom 0.7-1.2, bilinear, border
padding), but they are different transforms and draw differently. This one shifts the sampling
grid in the input's frame (the inversion shifts in the output's frame, so its shift is rotated and
scaled by the zoom), turns the other way for the same draw, and draws each quantity for the whole
batch from one generator (the inversion draws five numbers per copy from each image's generator).
Replacing it would change every shipped model trained with ``affine_p`` > 0, so it stays as the
shipped recipes were trained.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def add_noise(pixels: torch.Tensor, noise_std: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise of a per-image strength drawn from U(0, noise_std), clipped to [0, 1]."""
    sigma = torch.rand(len(pixels), 1, 1, 1, generator=generator) * noise_std
    return (pixels + sigma * torch.randn(pixels.shape, generator=generator)).clamp(0, 1)


def random_affine_batch(
    images: torch.Tensor,
    generator: torch.Generator,
    degrees: float = 30.0,
    translate: float = 0.1,
    scale: tuple[float, float] = (0.7, 1.2),
    p: float = 0.5,
) -> torch.Tensor:
    """A random affine of the inversion's ranges (the paper's) applied to training images, so that the
    image tower must recognise objects at any angle, size and sub-patch position; each image is
    transformed with probability ``p``; borders are extended (plain backgrounds stay plain)."""
    n = len(images)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(degrees)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * translate * 2  # grid units span 2
    zoom = scale[0] + torch.rand(n, generator=generator) * (scale[1] - scale[0])
    apply = torch.rand(n, generator=generator) < p
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    out = images.clone()
    if apply.any():
        grid = F.affine_grid(theta[apply], list(images[apply].shape), align_corners=False)
        out[apply] = F.grid_sample(images[apply], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out
