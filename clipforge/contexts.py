"""The values a run hands its components, and the one a screen hands back: the per-image random
draws and :class:`AugmentContext` (an augmentation's), :class:`Features` and :func:`channel_maps`
(an objective's), :class:`RunInfo` and :class:`StepState` (a callback's), and :class:`Screened`
(what a screening callback returns).

They are apart from :mod:`clipforge.components` (the kinds of component and their contracts) because
they are plain data a component receives, not something a plugin subclasses; the engine builds them
and :mod:`clipforge.components` re-exports every one, so ``from clipforge.components import
Features`` (and ``clipforge.Features``) work as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from clipforge.result import Row

if TYPE_CHECKING:  # pragma: no cover
    from clipforge.spec import RunSpec


def draw_per_image(
    generators: Sequence[torch.Generator],
    shape: Sequence[int],
    device: torch.device,
    low: float = 0.0,
    high: float = 1.0,
) -> torch.Tensor:
    """Uniform draws of ``shape`` for each image from its own generator: returns (B, *shape).

    Draws are made on the CPU (where the generators live) and moved to ``device``, so results do
    not depend on the device either.
    """
    draws = [torch.rand(tuple(shape), generator=g) for g in generators]
    out = torch.stack(draws)
    if (low, high) != (0.0, 1.0):  # the usual [0, 1) costs no arithmetic (a step draws several times)
        out = out * (high - low) + low
    if device.type == "cuda":  # pinned memory: the copy does not wait for the GPU to catch up
        return out.pin_memory().to(device, non_blocking=True)
    return out.to(device)


@dataclass
class AugmentContext:
    """What an augmentation may need to know about the current step."""

    generators: Sequence[torch.Generator]  # one per image
    copies: int  # K copies of each image
    model_size: tuple[int, int]  # input size of the (first) backbone
    step: int
    resize_count: int  # how many resolution increases have happened so far

    @property
    def batch_size(self) -> int:
        return len(self.generators)

    def per_copy(self, shape: Sequence[int], device: torch.device, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        """Uniform draws for every copy: (B * K, *shape), each image's copies from its generator."""
        out = draw_per_image(self.generators, (self.copies, *shape), device, low, high)
        return out.reshape(self.batch_size * self.copies, *shape)

    def per_image(
        self, shape: Sequence[int], device: torch.device, low: float = 0.0, high: float = 1.0
    ) -> torch.Tensor:
        """Uniform draws shared by all copies of an image: (B, *shape)."""
        return draw_per_image(self.generators, shape, device, low, high)


@dataclass
class Features:
    """What one backbone made of a batch of copies, as an objective sees it: only the copies of the
    images the objective serves, image-major (the copies of its first image, then its second ...)."""

    embeddings: torch.Tensor  # (N, D), normalised, float32
    activations: dict[str, torch.Tensor]  # layer name -> its output for these copies, batch first (N, ...)
    image_index: torch.Tensor  # (N,): each copy's image, as an index into the objective's ``rows``

    def layer(self, name: str) -> torch.Tensor:
        """A captured layer's output for these copies, batch first, as the layer gives it."""
        return self.activations[name]

    def channels(self, name: str) -> torch.Tensor:
        """A captured layer as (N, C, P): every channel at every position, whatever the layer's
        layout (feature maps, token sequences, vectors; :func:`channel_maps`)."""
        return channel_maps(self.layer(name))


def channel_maps(activations: torch.Tensor) -> torch.Tensor:
    """A layer's batch-first activations as (N, C, P), every channel at every position, in float32:
    a feature map (N, C, H, W), a token sequence (N, L, C) or a vector (N, C)."""
    act = activations.float()
    if act.dim() == 4:
        return act.flatten(2)
    if act.dim() == 3:
        return act.transpose(1, 2)
    return act.unsqueeze(-1)


@dataclass
class RunInfo:
    """What callbacks can see of a run."""

    spec: RunSpec
    rows: list[Row]
    device: torch.device
    out_dir: Path | None
    spec_hash: str
    total_steps: int
    extra: dict[str, Any] = field(default_factory=dict)
    start_step: int = 0  # a resumed run starts after this step (its checkpoint's)

    def output_path(self, name: str) -> Path:
        """Where a component writes the file ``name`` (an ``OutputName`` option): inside the output
        folder, never outside it, whatever ``name`` says."""
        if self.out_dir is None:
            raise ValueError("this run writes no files (it has no output folder)")
        root = self.out_dir.resolve()
        path = (root / name).resolve()
        if path == root or root not in path.parents:
            raise ValueError(f"{name!r} is not a file name inside the output folder {str(self.out_dir)!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class StepState:
    """The state of the loop after an optimiser step; ``images()`` is computed only when asked."""

    step: int  # steps completed so far (1-based)
    size: tuple[int, int]
    _images: Any = None
    _cached: torch.Tensor | None = None

    def images(self) -> torch.Tensor:
        """The current images, detached, clamped to [0, 1], screened, on the CPU (computed once per step)."""
        if self._cached is None:
            self._cached = self._images()
        return self._cached


@dataclass
class Screened:
    """What a screening callback lets through: (possibly altered) images and rows to withhold."""

    images: torch.Tensor  # (N, 3, H, W)
    withheld: torch.Tensor  # (N,) bool: these rows are not written or shown at all
