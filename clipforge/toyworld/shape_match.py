"""Shape matching for the analytic judge: the best IoU of a pixel mask with each of the world's shapes.

A mask is normalised to unit area about its centroid and compared with templates of every shape,
rendered from the world's own signed distance functions (``shape_sdf``) over rotations (up to each
shape's symmetry), scales (+-20 %) and small shifts. The templates are built once, on first use.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from clipforge.toyworld.palette import SHAPES
from clipforge.toyworld.render import shape_sdf

#: rotational period of each shape in degrees (0 = rotation-invariant).
SYMMETRY: dict[str, float] = {"circle": 0.0, "square": 90.0, "triangle": 120.0, "cross": 90.0, "ring": 0.0}
#: template search grid, in units of sqrt(mask area) about the mask's centroid.
ROTATION_STEP = 7.5  # degrees
SCALES: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.2)
SHIFTS: tuple[float, ...] = (-0.1, -0.05, 0.0, 0.05, 0.1)
_WINDOW = 1.3  # the normalised frame spans [-_WINDOW, _WINDOW]^2 ...
_GRID = 52  # ... sampled on a _GRID x _GRID grid
_SUPERSAMPLE = 3  # mask samples per grid cell and axis


_TEMPLATES: tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[slice]] | None = None


def _shape_moments(shape: str, fine: int = 600, extent: float = 2.0) -> tuple[float, float, float]:
    """Area and centroid (x, y) of a shape of size r = 1, measured on a fine grid."""
    c = (torch.arange(fine, dtype=torch.float64) + 0.5) / fine * 2 * extent - extent
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    inside = (shape_sdf(shape, xx, yy, torch.tensor(1.0, dtype=torch.float64)) < 0).double()
    cell = (2 * extent / fine) ** 2
    area = float(inside.sum()) * cell
    return area, float((inside * xx).sum() * cell / area), float((inside * yy).sum() * cell / area)


def _templates() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[slice]]:
    """Unit-area templates of every shape, centred on their centroids, over the search grid:
    (K, G*G) soft masks, (K,) their areas and sums of squares, and each shape's slice of K. Built once."""
    global _TEMPLATES
    if _TEMPLATES is not None:
        return _TEMPLATES
    step = 2 * _WINDOW / _GRID
    c = (torch.arange(_GRID, dtype=torch.float32) + 0.5) * step - _WINDOW
    vv, uu = torch.meshgrid(c, c, indexing="ij")
    shifts = torch.tensor([(tx, ty) for ty in SHIFTS for tx in SHIFTS])  # (S, 2)
    scales = torch.tensor(SCALES)
    chunks, slices, start = [], [], 0
    for shape in SHAPES:
        area, mx, my = _shape_moments(shape)
        period = SYMMETRY.get(shape, 360.0)  # a shape of unknown symmetry: search a full turn
        count = max(1, round(period / ROTATION_STEP)) if period else 1
        theta = torch.arange(count, dtype=torch.float32) * math.radians(period / count if period else 0.0)
        # every (rotation, scale, shift) combination
        th, sc, sh = torch.meshgrid(theta, scales, torch.arange(len(shifts), dtype=torch.float32), indexing="ij")
        th, sc, sh = th.reshape(-1, 1, 1), sc.reshape(-1, 1, 1), sh.reshape(-1).long()
        r = sc / math.sqrt(area)  # unit area at scale 1
        dx = uu - shifts[sh, 0, None, None]
        dy = vv - shifts[sh, 1, None, None]
        cos, sin = torch.cos(th), torch.sin(th)
        rx, ry = cos * dx + sin * dy, -sin * dx + cos * dy  # rotate the template by theta
        sdf = shape_sdf(shape, rx + mx * r, ry + my * r, r)
        chunks.append((0.5 - sdf / step).clamp(0, 1).flatten(1))  # ~ coverage of each cell
        slices.append(slice(start, start + len(chunks[-1])))
        start += len(chunks[-1])
    templates = torch.cat(chunks)
    _TEMPLATES = (templates, templates.sum(1) * step * step, (templates * templates).sum(1) * step * step, slices)
    return _TEMPLATES


def shape_ious(mask: torch.Tensor) -> torch.Tensor:
    """(N, len(SHAPES)) best IoU of each shape's templates with each (N, H, W) mask (0 for empty masks)."""
    n, h, w = mask.shape
    templates, t_area, t_sq, slices = _templates()
    m = mask.float()
    area = m.sum((1, 2))
    coords = torch.arange(h, dtype=torch.float32) + 0.5
    cy = (m.sum(2) * coords).sum(1) / area.clamp_min(1)
    cx = (m.sum(1) * coords).sum(1) / area.clamp_min(1)
    s = area.clamp_min(1).sqrt()
    step = 2 * _WINDOW / _GRID
    fine = _GRID * _SUPERSAMPLE  # nearest samples of the pixel mask, averaged to each cell's coverage
    c = (torch.arange(fine, dtype=torch.float32) + 0.5) * (step / _SUPERSAMPLE) - _WINDOW
    gx = (cx[:, None] + c[None] * s[:, None]) / (w / 2) - 1  # grid_sample's [-1, 1] (align_corners=False)
    gy = (cy[:, None] + c[None] * s[:, None]) / (h / 2) - 1
    grid = torch.stack([gx[:, None, :].expand(n, fine, fine), gy[:, :, None].expand(n, fine, fine)], -1)
    sampled = F.grid_sample(m[:, None], grid, mode="nearest", padding_mode="zeros", align_corners=False)
    sampled = F.avg_pool2d(sampled, _SUPERSAMPLE)
    # IoU of soft masks: |M & T| = (|M| + |T| - D) / 2 and |M | T| = (|M| + |T| + D) / 2, with the symmetric
    # difference D estimated by sum (M - T)^2, which is a matrix product (exact for 0/1 values, and near 0
    # rather than near the edge length for two matching masks with soft edges). Areas in units of the mask's.
    cell = step * step
    mv = sampled.flatten(1)
    outside = (1 - mv.sum(1) * cell).clamp_min(0)  # mask area beyond the window: all mismatch
    d = (mv * mv).sum(1, keepdim=True) * cell + t_sq[None] - 2 * (mv @ templates.T) * cell + outside[:, None]
    d = d.clamp_min(0)
    iou = (1 + t_area[None] - d) / (1 + t_area[None] + d)
    out = torch.stack([iou[:, sl].max(1).values for sl in slices], 1)
    return torch.where(area[:, None] > 0, out, torch.zeros_like(out))
