"""The paper's augmentations, applied to every copy of every image.

Order in the paper's pipeline (the default spec): ``random_affine`` -> ``resize`` (to the model's
input) -> ``color_shift``. ``jitter`` (off in the paper's preset) rolls each image before the
others when listed first.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from clipforge import API_VERSION, Augmentation, AugmentContext, Options, hookimpl

CLIPFORGE_API = API_VERSION  # a built-in is written against the API of the clipforge it comes with


class AffineOptions(Options):
    degrees: float = Field(30.0, ge=0, description="Rotation drawn uniformly in [-degrees, degrees].")
    translate: float = Field(0.1, ge=0, le=1, description="Shift per axis, as a fraction of the size.")
    scale: tuple[float, float] = Field((0.7, 1.2), description="Zoom factor range.")
    p: float = Field(0.5, ge=0, le=1, description="Probability that a copy is transformed at all.")
    padding: Literal["border", "zeros", "reflection"] = Field(
        "border", description="How pixels outside the image are filled (the paper repeats the border)."
    )
    interpolation: Literal["bilinear", "nearest", "bicubic"] = Field(
        "bilinear", description="Sampling of the transformed image."
    )

    @model_validator(mode="after")
    def _scale_range(self) -> AffineOptions:
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {self.scale}")
        return self


class RandomAffine(Augmentation):
    """Rotation, translation and zoom about the centre, drawn independently for each copy."""

    name = "random_affine"
    Options = AffineOptions

    def __call__(self, copies: torch.Tensor, ctx: AugmentContext) -> torch.Tensor:
        o = self.options
        n, _, h, w = copies.shape
        u = ctx.per_copy((5,), copies.device)  # angle, tx, ty, scale, apply
        angle = (u[:, 0] * 2 - 1) * math.radians(o.degrees)
        tx, ty = (u[:, 1] * 2 - 1) * o.translate, (u[:, 2] * 2 - 1) * o.translate
        s = o.scale[0] + u[:, 3] * (o.scale[1] - o.scale[0])
        apply = u[:, 4] < o.p
        cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
        # Sampling grid: output pixel -> input pixel, i.e. the inverse transform, in [-1, 1] units.
        theta = torch.stack(
            [
                torch.stack([cos, sin * h / w, -2 * (cos * tx + sin * ty * h / w)], dim=1),
                torch.stack([-sin * w / h, cos, -2 * (-sin * tx * w / h + cos * ty)], dim=1),
            ],
            dim=1,
        ).to(copies.dtype)
        grid = F.affine_grid(theta, [n, 3, h, w], align_corners=False)
        moved = F.grid_sample(copies, grid, mode=o.interpolation, padding_mode=o.padding, align_corners=False)
        return torch.where(apply.view(-1, 1, 1, 1), moved, copies)


class ResizeOptions(Options):
    size: int | None = Field(None, ge=1, description="Target size; omitted: the model's input size.")
    mode: Literal["bicubic", "bilinear", "nearest", "area"] = Field("bicubic", description="Interpolation.")


class Resize(Augmentation):
    """Resize every copy (by default to the backbone's input size, as the paper does)."""

    name = "resize"
    Options = ResizeOptions

    def __call__(self, copies: torch.Tensor, ctx: AugmentContext) -> torch.Tensor:
        size = (self.options.size, self.options.size) if self.options.size else tuple(ctx.model_size)
        if tuple(copies.shape[-2:]) == size:
            return copies
        return F.interpolate(copies, size=size, mode=self.options.mode)


class ColorShiftOptions(Options):
    mean: float = Field(0.0, ge=0, description="mu ~ U(-mean, mean) per copy and channel (paper: 0).")
    std: float = Field(0.0, ge=0, description="sigma = exp(U(-std, std)) per copy and channel (paper: 0).")


class ColorShift(Augmentation):
    """Plug-In Inversion's ColorShift: (x - mu) / sigma. With both ranges 0 (the paper's code
    defaults) it is the identity and draws nothing."""

    name = "color_shift"
    Options = ColorShiftOptions

    def __call__(self, copies: torch.Tensor, ctx: AugmentContext) -> torch.Tensor:
        o = self.options
        if o.mean == 0 and o.std == 0:
            return copies
        u = ctx.per_copy((2, 3), copies.device)
        mu = ((u[:, 0] * 2 - 1) * o.mean).view(-1, 3, 1, 1)
        sigma = ((u[:, 1] * 2 - 1) * o.std).exp().view(-1, 3, 1, 1)
        return (copies - mu.to(copies.dtype)) / sigma.to(copies.dtype)


class JitterOptions(Options):
    limit: int = Field(32, ge=0, description="Roll by up to this many pixels per axis.")
    double_on_resize: bool = Field(True, description="Double the limit at each resolution increase.")


class Jitter(Augmentation):
    """A random roll of each image, the same for all its copies (the paper's, off by default)."""

    name = "jitter"
    Options = JitterOptions

    def __call__(self, copies: torch.Tensor, ctx: AugmentContext) -> torch.Tensor:
        limit = self.options.limit * (2**ctx.resize_count if self.options.double_on_resize else 1)
        if limit == 0:
            return copies
        shifts = (ctx.per_image((2,), torch.device("cpu")) * (2 * limit + 1)).floor().long() - limit
        k = ctx.copies
        parts = [
            torch.roll(copies[b * k : (b + 1) * k], shifts=(int(dy), int(dx)), dims=(2, 3))
            for b, (dy, dx) in enumerate(shifts.tolist())
        ]
        return torch.cat(parts)


@hookimpl
def register_augmentations(register):
    for cls in (RandomAffine, Resize, ColorShift, Jitter):
        register(cls)
