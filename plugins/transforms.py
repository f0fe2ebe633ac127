"""Feature-visualisation transforms of the anchors' toolbox (Lucent's ``pad``, and a Gaussian blur and
a flip), as augmentations of the copies.

Every random draw comes from the image's own generator (``ctx.per_copy``), so an image's copies are
the same alone or in a batch, and the same seeds give the same copies.

Order: list them before ``resize``, as Lucent does (``pad`` -> ``jitter`` -> ... and then the model's
input size): ``pad`` changes the copies' size, and ``resize`` (or, without it, the engine) brings
them to each backbone's input size afterwards. Blurring after ``resize`` blurs at the model's
resolution instead of the image's.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from clipforge import API_VERSION, Augmentation, AugmentContext, Options, hookimpl

CLIPFORGE_API = API_VERSION  # a built-in is written against the API of the clipforge it comes with


class PadOptions(Options):
    pixels: int = Field(
        ge=0, description="Pixels added on every side (Lucent's `pad(w)`; its standard transforms use 12)."
    )
    mode: Literal["constant", "reflect"] = Field(
        "reflect", description="'constant': fill with `value`; 'reflect': mirror the image (Lucent's default)."
    )
    value: float = Field(0.5, description="The fill of 'constant' padding (Lucent's 0.5, mid-grey).")


class Pad(Augmentation):
    """Lucent's ``pad``: a border around every copy, so that jitter and rotation do not always keep the
    image's edge at the copy's edge. The copies grow by ``2 * pixels`` per side; ``resize`` (or the
    engine) brings them back to the model's size."""

    name = "pad"
    Options = PadOptions

    def __call__(self, copies: torch.Tensor, ctx: AugmentContext) -> torch.Tensor:
        w = self.options.pixels
        if w == 0:
            return copies
        if self.options.mode == "constant":
            return F.pad(copies, (w, w, w, w), mode="constant", value=self.options.value)
        h, width = copies.shape[-2:]
        if w >= min(h, width):
            raise ValueError(
                f"pad: reflecting {w} pixels needs copies larger than {w} pixels per side, these are "
                f"{h} x {width} (use mode 'constant', or fewer pixels)"
            )
        return F.pad(copies, (w, w, w, w), mode="reflect")


class BlurOptions(Options):
    sigma: float | tuple[float, float] = Field(
        1.0,
        description="The Gaussian's standard deviation in pixels, or [low, high]: one drawn uniformly per copy "
        "0 leaves the copies as they are.",
    )

    @field_validator("sigma")
    @classmethod
    def _range(cls, value: float | tuple[float, float]) -> float | tuple[float, float]:
        low, high = (value, value) if isinstance(value, float | int) else value
        if not 0 <= low <= high:
            raise ValueError(f"sigma must be >= 0, or [low, high] with 0 <= low <= high, got {value}")
        return value


class Blur(Augmentation):
    """A Gaussian blur of every copy, its sigma drawn per copy when a range is given: it discourages
    high-frequency patterns the model answers to but a person does not see. The kernel spans three
    sigmas (of the range's top) either side; the border is repeated."""

    name = "blur"
    Options = BlurOptions

    def __call__(self, copies: torch.Tensor, ctx: AugmentContext) -> torch.Tensor:
        sigma = self.options.sigma
        low, high = (float(sigma), float(sigma)) if isinstance(sigma, float | int) else map(float, sigma)
        if high == 0:
            return copies
        n, c, h, w = copies.shape
        if low == high:
            sigmas = torch.full((n,), high, device=copies.device)
        else:
            sigmas = ctx.per_copy((1,), copies.device, low, high)[:, 0]
        radius = math.ceil(3 * high)
        offsets = torch.arange(-radius, radius + 1, device=copies.device, dtype=copies.dtype)
        kernel = torch.exp(-(offsets[None] ** 2) / (2 * sigmas[:, None].to(copies.dtype).clamp_min(1e-6) ** 2))
        kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (n * c, k)
        x = F.pad(copies.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="replicate")
        x = F.conv2d(x, kernel[:, None, None, :], groups=n * c)  # along rows
        x = F.conv2d(x, kernel[:, None, :, None], groups=n * c)  # along columns
        return x.reshape(n, c, h, w)


class FlipOptions(Options):
    p: float = Field(0.5, ge=0, le=1, description="Probability that a copy is flipped left to right.")


class Flip(Augmentation):
    """A horizontal flip of each copy with probability ``p``, drawn per copy: the image must work
    mirrored too, which removes left-right artefacts of the model."""

    name = "flip"
    Options = FlipOptions

    def __call__(self, copies: torch.Tensor, ctx: AugmentContext) -> torch.Tensor:
        if self.options.p == 0:
            return copies
        flip = ctx.per_copy((1,), copies.device)[:, 0] < self.options.p
        return torch.where(flip.view(-1, 1, 1, 1), copies.flip(-1), copies)


@hookimpl
def register_augmentations(register):
    for cls in (Pad, Blur, Flip):
        register(cls)
