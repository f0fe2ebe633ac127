"""A multi-resolution parameterisation (Direct Ascent Synthesis style).

The image is a sum of components at a ladder of resolutions, from one pixel up to the full size,
each upsampled to the current size, then squashed into [0, 1]. Why: a gradient that reaches the
coarse components moves large regions together, so the optimiser builds global structure instead
of only the pixel-level patterns that fool a CLIP model; the fine components still add detail.

Its defaults (the ladder from 8 px, ``init_std`` 0.3, learning rate 0.01 through
``default_optimizer``) are chosen so that channels do not collapse. Adam moves every element of
every component by about the learning rate per step, so the coarsest components (1, 2 and 4 px, each
element covering much of the image) shift the whole image's colour a ladder's worth of learning
rates per step: at the layer example's settings on ``toyworld-rn``'s layer2, with the ladder from
1 px, ``init_std`` 0.01 and lr 0.1, half the channels ended as one saturated colour (the squash's
corner, where its gradient vanishes and the total-variation regulariser is zero), four of them
with no activation at all. Without the coarsest components, a start as varied as pixel noise, and a
smaller rate, the flat images left were those the pixel parameterisation draws too (a unit whose
best image is one colour); measured in ``benchmarks/RESULTS.md``, "The new defaults".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from clipforge import API_VERSION, Options, Parameterization, hookimpl

CLIPFORGE_API = API_VERSION  # a built-in is written against the API of the clipforge it comes with


class MultiresOptions(Options):
    resolutions: list[Annotated[int, Field(gt=0)]] | None = Field(
        None,
        min_length=1,
        description="Side lengths of the square components. Default: powers of two from 'coarsest' below "
        "the image size, plus the size itself. Resolutions above the current size are added "
        "(at zero) when the image grows to them.",
    )
    coarsest: int = Field(
        8,
        gt=0,
        description="The default ladder's coarsest side (ignored when 'resolutions' is given); 1 is the Direct "
        "Ascent Synthesis ladder, whose 1-4 px components drive whole images into one saturated colour.",
    )
    upsample: Literal["bilinear", "bicubic"] = Field(
        "bilinear", description="How components are upsampled to the image size."
    )
    squash: Literal["tanh", "sigmoid", "clamp"] = Field(
        "tanh", description="How the sum becomes [0, 1]: 0.5 + 0.5 tanh(x), sigmoid(x), or 0.5 + x clamped."
    )
    init_std: float = Field(
        0.3,
        ge=0,
        description="Standard deviation of each component's initial values (0.3: a start about as varied as "
        "pixel noise, on which units that are zero on a flat image still respond).",
    )


def default_ladder(size: int, coarsest: int = 1) -> list[int]:
    """Powers of two from ``coarsest`` below ``size``, then ``size``: [1, 2, 4, 8, 16] for 16,
    [1, ..., 128, 224] for 224; [8, 16, 32] for 32 from 8; [4] for 4 from 8."""
    ladder, r = [], coarsest
    while r < size:
        ladder.append(r)
        r *= 2
    return ladder + [size]


class Multires(Parameterization):
    """Components (B, 3, r, r), one per resolution r, coarsest first; new (finer) ones are appended."""

    name = "multires"
    Options = MultiresOptions
    default_optimizer = {"lr": 0.01}  # see the module's docstring: 0.1 saturates the image's colour

    def __init__(
        self,
        options: MultiresOptions,
        batch_size: int,
        size: tuple[int, int],
        generators: Sequence[torch.Generator],
        device: torch.device,
    ) -> None:
        super().__init__(options, batch_size, size, generators, device)
        self.size = tuple(size)
        self.resolutions: list[int] = []
        self.components: list[torch.Tensor] = []
        for r in self._ladder(self.size):
            # drawn on the CPU from each image's generator: the same seed gives the same image
            # whatever the batch and the device
            draws = torch.stack([torch.randn((3, r, r), generator=g) for g in generators]) * options.init_std
            self.resolutions.append(r)
            self.components.append(draws.to(device).requires_grad_(True))

    def _ladder(self, size: tuple[int, int]) -> list[int]:
        """The resolutions in use at ``size``, coarsest first."""
        side = max(size)
        if self.options.resolutions is None:
            return default_ladder(side, self.options.coarsest)
        return sorted({r for r in self.options.resolutions if r <= side}) or [min(self.options.resolutions)]

    def parameters(self) -> list[torch.Tensor]:
        return list(self.components)

    def linear_image(self) -> torch.Tensor:
        """The sum of the upsampled components, before squashing, (B, 3, H, W)."""
        total = None
        for c in self.components:
            up = (
                c
                if tuple(c.shape[-2:]) == self.size
                else F.interpolate(c, size=self.size, mode=self.options.upsample, align_corners=False)
            )
            total = up if total is None else total + up
        return total

    def image(self) -> torch.Tensor:
        x = self.linear_image()
        if self.options.squash == "tanh":
            return 0.5 + 0.5 * torch.tanh(x)
        if self.options.squash == "sigmoid":
            return torch.sigmoid(x)
        return (x + 0.5).clamp(0, 1)

    def resize(self, size: tuple[int, int]) -> None:
        """Components do not depend on the image size, so they are all kept (upsampled to the new size
        at each ``image()``); the resolutions between the old and the new size join as zeros, after
        the old components, so the old parameters keep their positions in ``parameters()``."""
        self.size = tuple(size)
        have = set(self.resolutions)
        for r in self._ladder(self.size):
            if r not in have:
                self.resolutions.append(r)
                self.components.append(torch.zeros((self.batch_size, 3, r, r), device=self.device).requires_grad_(True))

    def resize_state(self, tensor: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        """An old component keeps its shape (and position), so its optimiser state carries over as it
        is; new components have no old state and start afresh."""
        if tuple(tensor.shape) == tuple(size):
            return tensor.clone()
        if tensor.dim() == 4 and len(size) == 4 and tensor.shape[:2] == tuple(size[:2]):
            return F.interpolate(tensor, size=tuple(size[-2:]), mode="bilinear", align_corners=False)
        raise NotImplementedError(f"multires.resize_state: cannot map {tuple(tensor.shape)} to {tuple(size)}")


@hookimpl
def register_parameterizations(register):
    register(Multires)
