"""``gaussian_noise``: add Gaussian pixel noise to the augmented copies.

Why: noise on every copy makes the optimiser find images whose embedding survives small pixel
perturbations, which discourages the finest adversarial patterns.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

import clipforge
from clipforge import Augmentation, AugmentContext


class GaussianNoise(Augmentation):
    """Adds N(0, std^2) noise to each pixel of each copy (with probability ``p`` per copy).

    All draws go through ``ctx.per_copy``, i.e. each image's own generator, so a seed reproduces
    the noise and an image's noise does not depend on the other images in the batch.
    """

    name = "gaussian_noise"

    class Options(clipforge.Options):
        std: float = Field(
            0.05, ge=0, description="Standard deviation of the noise, in [0, 1] pixel units; 0 turns it off."
        )
        p: float = Field(1.0, ge=0, le=1, description="Probability that a copy gets noise at all.")

    def __call__(self, copies: torch.Tensor, ctx: AugmentContext) -> torch.Tensor:
        o = self.options
        if o.std == 0 or o.p == 0:
            return copies  # draws nothing, like the built-in color_shift at its defaults
        _, c, h, w = copies.shape
        # Box-Muller: two uniform draws per pixel become one standard normal draw. The context only
        # offers uniform draws in [0, 1); 1 - u lies in (0, 1], so the logarithm stays finite.
        u = ctx.per_copy((2, c, h, w), copies.device)
        normal = torch.sqrt(-2.0 * torch.log1p(-u[:, 0])) * torch.cos(2.0 * math.pi * u[:, 1])
        noise = (o.std * normal).to(copies.dtype)
        if o.p < 1:
            apply = ctx.per_copy((1,), copies.device)[:, 0] < o.p
            noise = noise * apply.view(-1, 1, 1, 1).to(copies.dtype)
        return copies + noise
