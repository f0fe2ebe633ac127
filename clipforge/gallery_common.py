"""What every gallery item is made of, and the checks on what a folder gives: the item's fields
(:func:`gallery_item`), finite numbers, paths that name the folder's own files, a saved attribution
map, judges' scalar verdicts, and where each image sits in a grid.

They are apart because both :mod:`clipforge.gallery_items` (runs and sweeps) and
:mod:`clipforge.gallery_reports` (analysis reports) build items with them: kept in
:mod:`clipforge.gallery_items`, which re-exports the reports' names, they would make the two import
each other. :mod:`clipforge.gallery_items` re-exports them too (``_item``, ``_verdicts`` and
``_grid_boxes`` under the names they had there).
"""

from __future__ import annotations

import json
import math
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image

#: the white gap between a snapshot grid's images (``clipforge.images.image_grid``'s default)
GRID_PAD = 2
#: how an image's transparency (attribution) map is named beside it
ATTRIBUTION = ".attribution.png"


def settings_text(settings: dict[str, Any]) -> str:
    """A grid point's settings as one line (``lr=0.1, parameterization.name="pixel"``), or ``base``."""
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in settings.items()) or "base"


def number(value: Any) -> float | None:
    """A finite number or None: NaN and infinities have no JSON spelling the page could read."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def inside(folder: Path, path: Any) -> str | None:
    """``path`` as a relative POSIX path when it names an existing file inside ``folder``, else None:
    the page only ever loads the folder's own files (no absolute path, no ``..``, no URL)."""
    if not isinstance(path, str) or not path:
        return None
    rel = PurePosixPath(path.replace("\\", "/"))
    if not rel.parts or rel.is_absolute() or ".." in rel.parts or ":" in rel.parts[0]:  # "." or "./": no file
        return None
    return rel.as_posix() if (folder / rel).is_file() else None


def attribution_beside(folder: Path, src: str | None) -> str | None:
    """The transparency (attribution) map saved beside an image (``images/<slug>.attribution.png``
    beside ``images/<slug>.png``), when the folder holds one; else None."""
    if not src or not src.endswith(".png") or src.endswith(ATTRIBUTION):
        return None
    return inside(folder, src[: -len(".png")] + ATTRIBUTION)


def gallery_item(**fields: Any) -> dict[str, Any]:
    """One thing the page shows, every field present (the page's script reads them all)."""
    item: dict[str, Any] = {
        "id": "",
        "src": None,
        "title": "",
        "prompt": "",
        "label": "",
        "seed": "",
        "group": 0,
        "setting": "",
        "settings": {},
        "status": "done",
        "error": "",
        "similarity": None,
        "loss": None,
        "verdicts": {},
        "spec": "",
        "strip": [],
        "curve": None,
        "key": "",
        "extra": {},
        "box": None,
        "size": None,
        "attribution": None,
        "brief": None,
    }
    item.update(fields)
    return item


def scalar_verdicts(value: Any) -> dict[str, Any]:
    """A record's ``verdicts`` (judge name to verdict), scalars only."""
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str | bool) or number(v) is not None}


def grid_boxes(path: Path, count: int, columns: int) -> tuple[list[list[int]], list[int]] | None:
    """Where each of ``count`` images sits in a snapshot grid of ``columns`` columns (as the snapshots
    callback tiles them), or None when the grid's size does not fit that layout."""
    with Image.open(path) as image:
        width, height = image.size
    rows = math.ceil(count / columns)
    cell_w, rest_w = divmod(width - GRID_PAD * (columns + 1), columns)
    cell_h, rest_h = divmod(height - GRID_PAD * (rows + 1), rows)
    if rest_w or rest_h or cell_w <= 0 or cell_h <= 0:
        return None
    boxes = []
    for i in range(count):
        r, c = divmod(i, columns)
        boxes.append([GRID_PAD + c * (cell_w + GRID_PAD), GRID_PAD + r * (cell_h + GRID_PAD), cell_w, cell_h])
    return boxes, [width, height]
