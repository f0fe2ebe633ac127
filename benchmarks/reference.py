"""The paper's step written out by hand, as a researcher would type it: the reference loops of
``speed`` (the authors' loop) and ``engine_overhead`` (a plain batched loop) share these pieces, so
that both compare the engine against the same arithmetic."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def paper_affine(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The paper's random affine on copies ``x`` (N, 3, H, W) from uniform draws ``u`` (N, 5):
    rotation +-30 degrees, translation +-10 %, scale 0.7-1.2, each copy moved with probability 0.5."""
    angle = (u[:, 0] * 2 - 1) * math.radians(30)
    tx, ty = (u[:, 1] * 2 - 1) * 0.1, (u[:, 2] * 2 - 1) * 0.1
    s = 0.7 + u[:, 3] * 0.5
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack(
        [
            torch.stack([cos, sin, -2 * (cos * tx + sin * ty)], 1),
            torch.stack([-sin, cos, -2 * (-sin * tx + cos * ty)], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    moved = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    return torch.where((u[:, 4] < 0.5).view(-1, 1, 1, 1), moved, x)


def tv_four_directions(image: torch.Tensor) -> torch.Tensor:
    """The paper's total variation of each image (B,): unsquared L2 norms of the differences in four
    directions, averaged over channels, summed over directions."""
    diffs = (
        image[..., :, 1:] - image[..., :, :-1],
        image[..., 1:, :] - image[..., :-1, :],
        image[..., 1:, 1:] - image[..., :-1, :-1],
        image[..., 1:, :-1] - image[..., :-1, 1:],
    )
    return sum(d.norm(dim=(2, 3)).mean(dim=1) for d in diffs)
