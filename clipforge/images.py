"""Images in and out: reading an image file, the PNGs a run shows, and grids of them.

Images are float tensors in [0, 1], (3, H, W) one at a time or (B, 3, H, W) batched.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from clipforge.files import atomic_path


def read_image(path: str | Path, size: tuple[int, int]) -> torch.Tensor:
    """An image file as (3, H, W) in [0, 1], resized to ``size`` (bicubic, antialiased): prompt
    images, a parameterisation's starting image. A file that cannot be read whole is a
    ``ValueError`` naming it."""
    try:
        with Image.open(Path(path).expanduser()) as image:
            rgb = image.convert("RGB")
            data = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(rgb.height, rgb.width, 3)
    except Exception as exc:
        raise ValueError(f"{str(path)!r} is not a readable image: {exc}") from None
    pixels = data.permute(2, 0, 1)[None].float() / 255
    return F.interpolate(pixels, size=size, mode="bicubic", antialias=True)[0].clamp(0, 1)


def to_display(images: torch.Tensor, rescale: str) -> torch.Tensor:
    """Images as they are shown: each min-max rescaled (the paper's PNGs) or clamped."""
    images = images.float()
    if rescale == "minmax":
        flat = images.flatten(1)
        low = flat.min(dim=1).values.view(-1, 1, 1, 1)
        high = flat.max(dim=1).values.view(-1, 1, 1, 1)
        return (images - low) / (high - low).clamp_min(1e-5)
    return images.clamp(0, 1)


def to_pil(image: torch.Tensor) -> Image.Image:
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


def save_png(image: torch.Tensor, path: Path, text: dict[str, str] | None = None) -> None:
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    with atomic_path(Path(path)) as tmp:
        to_pil(image).save(tmp, format="PNG", pnginfo=info)


def image_grid(images: torch.Tensor, columns: int, pad: int = 2) -> torch.Tensor:
    """Tile (N, 3, H, W) images into one (3, H', W') image with white gaps (torchvision's
    ``make_grid``; one image gets its frame too, as it does in a grid of several)."""
    from torchvision.utils import make_grid

    if images.shape[0] == 1:
        return torch.nn.functional.pad(images[0], (pad, pad, pad, pad), value=1.0)
    return make_grid(images, nrow=columns, padding=pad, pad_value=1.0)
