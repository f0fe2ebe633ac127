"""``saturation``: a penalty on how colourful each image is.

Why: inverted images often drift towards garish, fully saturated colours; pulling each image's mean
chroma (max channel minus min channel, per pixel) towards a target keeps colours plausible. A
negative weight rewards colour instead.
"""

from __future__ import annotations

import torch
from pydantic import Field

import clipforge
from clipforge import Regularizer


class Saturation(Regularizer):
    """|mean chroma - target| for each image, (B, 3, H, W) -> (B,)."""

    name = "saturation"

    class Options(clipforge.RegularizerOptions):  # keeps the `weight` every regulariser has
        weight: float = Field(0.1, description="Multiplier in the loss (negative: reward colour).")
        target: float = Field(
            0.0,
            ge=0,
            le=1,
            description="Mean chroma the images should have; 0 penalises any colour (pushes towards grey).",
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        chroma = images.amax(dim=1) - images.amin(dim=1)  # (B, H, W)
        return (chroma.flatten(1).mean(dim=1) - self.options.target).abs()
