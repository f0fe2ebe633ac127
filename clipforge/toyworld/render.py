"""Painting the toy world: every pixel of an image from the parameters ``World.sample`` drew for it.

Rendering is vectorised over a chunk of images: each shape is a signed-distance function evaluated
on one fixed pixel grid (pixel centres at +0.5), turned into a mask with 1 pixel of antialiasing
and composited in a fixed order (background texture, scenes, slot a, slot b, marker, noise). The
order and every operation are part of the world's definition: the shipped models were trained on
these exact pixels, so a change here must leave images bit-identical (or ship new models).
"""

from __future__ import annotations

import math

import torch

from clipforge.toyworld.palette import IMAGE_SIZE, MARKER_CELLS, SHAPES

_SKY_TOP = (0.45, 0.65, 0.95)
_SKY_HORIZON = (0.80, 0.90, 1.00)
_GROUND = (0.25, 0.60, 0.15)
_SEA = (0.05, 0.22, 0.55)

#: pixel-centre coordinates (row y, column x) of every pixel: one grid, built once, for all painting.
_COORDS = torch.arange(IMAGE_SIZE, dtype=torch.float32) + 0.5
_YY, _XX = torch.meshgrid(_COORDS, _COORDS, indexing="ij")


def render(p: dict[str, torch.Tensor], g: torch.Generator, texture: float, noise_std: float) -> torch.Tensor:
    """Paint one chunk of images, (n, 3, H, W) in [0, 1], from their drawn parameters (one row per
    image; ``World._render_all`` lists the keys): background, scene, the two object slots, the marker,
    then the pixel noise, the only draw from ``g`` made here."""
    n = len(p["base"])
    images = p["base"][:, :, None, None].expand(n, 3, IMAGE_SIZE, IMAGE_SIZE).clone()
    if texture > 0:
        images += texture * _texture(p["texture"]).unsqueeze(1)
    _draw_scenes(images, p)
    _draw_objects(images, p["shape_a"], p["rgb_a"], p["cx_a"], p["cy_a"], p["r_a"])
    _draw_objects(images, p["shape_b"], p["rgb_b"], p["cx_b"], p["cy_b"], p["r_b"])
    _draw_marker(images, p["marker"], p["mx"], p["my"], p["cell"])
    if noise_std > 0:
        images += torch.randn(images.shape, generator=g) * noise_std
    return images.clamp_(0, 1)


def _texture(u: torch.Tensor) -> torch.Tensor:
    """A smooth brightness pattern in [-1, 1] per image: half a linear gradient of random direction,
    half a plane wave of 1-4 cycles per image with its own direction and phase."""
    yy, xx = _YY / IMAGE_SIZE - 0.5, _XX / IMAGE_SIZE - 0.5
    theta, phi = 2 * math.pi * u[:, 0, None, None], 2 * math.pi * u[:, 1, None, None]
    gradient = 2 * (xx * torch.cos(theta) + yy * torch.sin(theta))  # within [-1.42, 1.42]
    cycles = 1 + 3 * u[:, 2, None, None]
    wave = torch.sin(
        2 * math.pi * cycles * (xx * torch.cos(phi) + yy * torch.sin(phi)) + 2 * math.pi * u[:, 3, None, None]
    )
    return (0.5 * gradient.clamp(-1, 1) + 0.5 * wave) * (0.5 + 0.5 * u[:, 4, None, None])


def _draw_scenes(images: torch.Tensor, p: dict[str, torch.Tensor]) -> None:
    """Paint landscape (sky over green hills) and seascape (sky over dark sea) backgrounds."""
    yy, xx = _YY, _XX
    for kind, ground in (("landscape", _GROUND), ("seascape", _SEA)):
        idx = p[kind].nonzero().squeeze(1)
        if len(idx) == 0:
            continue
        s = p["scene"][idx]
        horizon = 34 + 10 * s[:, 0, None, None]  # y of the horizon
        t = (yy / horizon).clamp(0, 1).unsqueeze(1)
        sky = (
            torch.tensor(_SKY_TOP)[None, :, None, None] * (1 - t) + torch.tensor(_SKY_HORIZON)[None, :, None, None] * t
        )
        if kind == "landscape":  # rolling hills
            amp = 2 + 4 * s[:, 1, None, None]
            freq = 2 * math.pi * (1 + s[:, 3, None, None]) / IMAGE_SIZE
            line = horizon + amp * torch.sin(freq * xx + 2 * math.pi * s[:, 2, None, None])
            shade = 1.0 - 0.3 * ((yy - line) / IMAGE_SIZE).clamp(0, 1)
        else:  # flat horizon with wave stripes
            line = horizon.expand(-1, IMAGE_SIZE, IMAGE_SIZE)
            shade = 0.9 + 0.15 * torch.sin(1.3 * yy + 0.6 * torch.sin(0.25 * xx + 6.28 * s[:, 2, None, None]))
        ground_rgb = torch.tensor(ground)[None, :, None, None] * shade.unsqueeze(1)
        m = (yy - line + 0.5).clamp(0, 1).unsqueeze(1)
        images[idx] = (sky * (1 - m) + ground_rgb * m).clamp(0, 1)


def _draw_objects(
    images: torch.Tensor,
    shape_id: torch.Tensor,
    rgb: torch.Tensor,
    cx: torch.Tensor,
    cy: torch.Tensor,
    r: torch.Tensor,
) -> None:
    """Composite one object per image (shape_id -1 = none) with 1-pixel antialiasing."""
    for sid, shape in enumerate(list(SHAPES) + ["sphere"]):
        idx = (shape_id == sid).nonzero().squeeze(1)
        if len(idx) == 0:
            continue
        dx = _XX - cx[idx, None, None]
        dy = _YY - cy[idx, None, None]
        rr = r[idx, None, None]
        mask = (0.5 - shape_sdf(shape, dx, dy, rr)).clamp(0, 1).unsqueeze(1)
        if shape == "sphere":
            colour = _ball_colour(rgb[idx], dx, dy, rr)
        else:
            colour = rgb[idx, :, None, None]
        images[idx] = images[idx] * (1 - mask) + colour * mask


def _draw_marker(
    images: torch.Tensor, present: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor, cell: torch.Tensor
) -> None:
    """Paste the black/white checkerboard marker (top-left cell white)."""
    idx = present.nonzero().squeeze(1)
    if len(idx) == 0:
        return
    px = torch.floor((_XX - x0[idx, None, None]) / cell[idx, None, None])
    py = torch.floor((_YY - y0[idx, None, None]) / cell[idx, None, None])
    inside = (px >= 0) & (px < MARKER_CELLS) & (py >= 0) & (py < MARKER_CELLS)
    value = ((px + py) % 2 == 0).float()  # 1 = white, 0 = black
    sub = images[idx]
    images[idx] = torch.where(inside.unsqueeze(1), value.unsqueeze(1).expand_as(sub), sub)


def shape_sdf(shape: str, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Signed distance (pixels, negative inside) of a shape centred at 0 with size r."""
    if shape in ("circle", "sphere"):
        return torch.sqrt(dx * dx + dy * dy) - r
    if shape == "square":
        return torch.maximum(dx.abs(), dy.abs()) - 0.8 * r
    if shape == "triangle":  # equilateral, pointing up, circumradius 1.2 r, vertically centred
        dyc = dy - 0.3 * r
        ri = 0.6 * r
        s = math.sqrt(3) / 2
        return torch.maximum(torch.maximum(dyc - ri, -s * dx - 0.5 * dyc - ri), s * dx - 0.5 * dyc - ri)
    if shape == "cross":  # plus sign
        t = 0.32 * r
        bar_h = torch.maximum(dx.abs() - r, dy.abs() - t)
        bar_v = torch.maximum(dx.abs() - t, dy.abs() - r)
        return torch.minimum(bar_h, bar_v)
    if shape == "ring":
        return (torch.sqrt(dx * dx + dy * dy) - 0.7 * r).abs() - 0.3 * r
    raise ValueError(f"unknown shape {shape!r}")


def _ball_colour(base: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Shaded sphere colour (n,3,H,W): Lambert shading plus a white highlight."""
    nx, ny = dx / r, dy / r
    nz = torch.sqrt((1 - nx * nx - ny * ny).clamp(min=0))
    light = torch.tensor([-0.5, -0.6, 0.62])
    light = light / light.norm()
    half = light + torch.tensor([0.0, 0.0, 1.0])
    half = half / half.norm()
    lambert = (nx * light[0] + ny * light[1] + nz * light[2]).clamp(min=0)
    spec = (nx * half[0] + ny * half[1] + nz * half[2]).clamp(min=0) ** 30
    shade = (0.3 + 0.7 * lambert).unsqueeze(1)
    return (base[:, :, None, None] * shade + 0.7 * spec.unsqueeze(1)).clamp(0, 1)
