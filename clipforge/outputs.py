"""What a run leaves in its output directory.

    spec.json           the resolved spec (every default filled in): runs again as it is
    run.json            spec hash, device, library versions, rows (prompt x seed), timings
    images/<row>.png    final images, with prompt, seed and spec hash in the PNG metadata
    images.safetensors  the final image tensors (B, 3, H, W) in [0, 1], unscaled
    metrics.jsonl       per-step metrics (the ``metrics`` callback)
    snapshots/          images every N steps (the ``snapshots`` callback)

An existing, non-empty output directory is never reused: results already there are not touched.
"""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from safetensors.torch import save_file

from clipforge.components import InversionResult, RunInfo


class OutputExistsError(FileExistsError):
    def __init__(self, path: Path):
        super().__init__(
            f"output directory {str(path)!r} already exists and is not empty; "
            "choose another with --out (clipforge never overwrites results)"
        )


def prepare_out_dir(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise OutputExistsError(path)
    path.mkdir(parents=True, exist_ok=True)


def progress_bar(*fields: ProgressColumn, disable: bool = False) -> Progress:
    """clipforge's rich progress bar, on stderr: text, bar, steps done of total, any extra columns
    (``fields``), elapsed time and time left. Used by the ``progress`` callback and by analyses."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *fields,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=disable,
    )


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("clipforge", "torch", "open_clip_torch", "timm", "pydantic", "pluggy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def write_json(path: Path, data: Any) -> None:
    """JSON, indented, written atomically (a reader never sees half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def write_run_start(out_dir: Path, run: RunInfo) -> None:
    write_json(out_dir / "spec.json", run.spec.model_dump(mode="json"))
    write_json(
        out_dir / "run.json",
        {
            "spec_hash": run.spec_hash,
            "device": _device_name(run.device),
            "versions": library_versions(),
            "backbones": run.extra.get("backbones", []),
            "rows": [row.as_dict() for row in run.rows],
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "status": "running",
        },
    )


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
    to_pil(image).save(path, pnginfo=info)


def image_grid(images: torch.Tensor, columns: int, pad: int = 2) -> torch.Tensor:
    """Tile (N, 3, H, W) images into one (3, H', W') image with white gaps."""
    n, c, h, w = images.shape
    rows = (n + columns - 1) // columns
    grid = torch.ones(c, rows * (h + pad) + pad, columns * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top : top + h, left : left + w] = images[i]
    return grid


def write_results(out_dir: Path, result: InversionResult, run: RunInfo) -> None:
    images_dir = out_dir / "images"
    images_dir.mkdir(exist_ok=True)
    shown = to_display(result.images, result.spec.output.rescale)
    version = library_versions().get("clipforge", "unknown")
    withheld = result.withheld or [False] * len(result.rows)
    for row in result.rows:
        if withheld[row.index]:
            continue
        save_png(
            shown[row.index],
            images_dir / f"{row.slug}.png",
            {
                "prompt": row.label,
                "seed": str(row.seed),
                "spec_hash": result.spec_hash,
                "step": str(result.steps_done),
                "software": f"clipforge {version}",
            },
        )
    save_file(
        {"images": result.images.contiguous()},
        str(out_dir / "images.safetensors"),
        metadata={
            "rows": json.dumps([r.as_dict() for r in result.rows]),
            "spec_hash": result.spec_hash,
            "steps_done": str(result.steps_done),
        },
    )
    run_json = json.loads((out_dir / "run.json").read_text(encoding="utf-8"))
    final = result.metrics[-1] if result.metrics else {}
    run_json.update(
        {
            "status": "interrupted" if result.interrupted else "finished",
            "steps_done": result.steps_done,
            "withheld": [row.slug for row in result.rows if withheld[row.index]],
            "seconds": round(result.seconds, 3),
            "final": {"loss": final.get("loss"), "similarity": final.get("similarity")},
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
    )
    write_json(out_dir / "run.json", run_json)


def load_image(path: str, size: tuple[int, int]) -> torch.Tensor:
    """An image file as (3, H, W) in [0, 1] at ``size`` (image prompts are read with it)."""
    with Image.open(path) as img:
        array = torch.frombuffer(bytearray(img.convert("RGB").tobytes()), dtype=torch.uint8)
        w, h = img.size
    image = array.view(h, w, 3).permute(2, 0, 1).float() / 255
    return F.interpolate(image[None], size=size, mode="bicubic", antialias=True)[0].clamp(0, 1)
