"""The paper's parameterisation: the image is its own RGB pixels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from clipforge import API_VERSION, Options, Parameterization, draw_per_image, existing_image, hookimpl, read_image

CLIPFORGE_API = API_VERSION  # a built-in is written against the API of the clipforge it comes with


class PixelOptions(Options):
    init: Literal["uniform", "gray"] = Field("uniform", description="'uniform' in [0, 1] (the paper's), or 0.5 gray.")
    init_image: str | None = Field(
        None,
        description="An image file every image starts from instead (resized to the starting size; a path "
        "relative to the spec file's folder, as a prompt's image); 'init' is then ignored.",
    )
    resize_mode: Literal["bicubic", "bilinear", "nearest"] = Field(
        "bicubic", description="Interpolation used when the image grows."
    )
    clamp: bool = Field(True, description="Clamp pixels to [0, 1] after each backward (before the step).")

    # found as a prompt's image is, and a missing or broken file is an error now, not mid-run
    _readable = field_validator("init_image")(existing_image)


class Pixel(Parameterization):
    """Raw pixels, (B, 3, H, W), updated directly by the optimiser."""

    name = "pixel"
    Options = PixelOptions

    def __init__(
        self,
        options: PixelOptions,
        batch_size: int,
        size: tuple[int, int],
        generators: Sequence[torch.Generator],
        device: torch.device,
    ) -> None:
        super().__init__(options, batch_size, size, generators, device)
        if options.init_image is not None:
            pixels = read_image(options.init_image, size).to(device).expand(batch_size, -1, -1, -1).clone()
        elif options.init == "uniform":
            pixels = draw_per_image(generators, (3, *size), device)
        else:
            pixels = torch.full((batch_size, 3, *size), 0.5, device=device)
        self.pixels = pixels.requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.pixels]

    def image(self) -> torch.Tensor:
        return self.pixels

    def resize(self, size: tuple[int, int]) -> None:
        grown = F.interpolate(self.pixels.detach(), size=size, mode=self.options.resize_mode)
        self.pixels = grown.requires_grad_(True)
        self.size = size

    def resize_state(self, tensor: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        # bilinear weights are convex, so a non-negative second moment stays non-negative
        return F.interpolate(tensor, size=tuple(size[-2:]), mode="bilinear") if tensor.dim() == 4 else tensor

    def after_backward(self) -> None:
        if self.options.clamp:
            with torch.no_grad():
                self.pixels.clamp_(0, 1)


@hookimpl
def register_parameterizations(register):
    register(Pixel)
