"""The paper's regularisers (total variation in four directions, and L1), and an L2 after Lucid's."""

from __future__ import annotations

import torch
from pydantic import Field

from clipforge import API_VERSION, Regularizer, RegularizerOptions, hookimpl

CLIPFORGE_API = API_VERSION  # a built-in is written against the API of the clipforge it comes with


class TVOptions(RegularizerOptions):
    weight: float = Field(
        0.005, ge=0, description="Multiplier in the loss (the paper's 0.005; a negative one would reward noise)."
    )
    p: float = Field(2.0, gt=0, description="Norm of each difference map (2: L2, not squared).")


class TotalVariation(Regularizer):
    """For each of four difference maps (horizontal, vertical, both diagonals), the p-norm over
    H x W of each channel, averaged over channels, then summed over the four maps."""

    name = "tv"
    Options = TVOptions

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        maps = (
            x[:, :, :, 1:] - x[:, :, :, :-1],
            x[:, :, 1:, :] - x[:, :, :-1, :],
            x[:, :, 1:, 1:] - x[:, :, :-1, :-1],
            x[:, :, 1:, :-1] - x[:, :, :-1, 1:],
        )
        return sum(m.norm(p=self.options.p, dim=(2, 3)).mean(dim=1) for m in maps)


class L1Options(RegularizerOptions):
    weight: float = Field(0.0, ge=0, description="Multiplier in the loss (the paper's default: 0, i.e. off).")


class L1(Regularizer):
    """The sum of absolute pixel values of each image."""

    name = "l1"
    Options = L1Options

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images.abs().flatten(1).sum(dim=1)


class L2Options(RegularizerOptions):
    weight: float = Field(1.0, ge=0, description="Multiplier in the loss.")
    constant: float = Field(0.5, description="The value the pixels are pulled towards (0.5: mid-grey, Lucent's).")


class L2(Regularizer):
    """The mean squared distance of each image's pixels from a constant, ``mean((x - constant)^2)``
    over its 3 x H x W values: it keeps a visualisation from saturating. Lucid's ``L2`` is
    ``sqrt(1e-6 + sum(...))``; the mean makes a weight mean the same at every image size."""

    name = "l2"
    Options = L2Options

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.options.constant).square().flatten(1).mean(dim=1)


@hookimpl
def register_regularizers(register):
    register(TotalVariation)
    register(L1)
    register(L2)
