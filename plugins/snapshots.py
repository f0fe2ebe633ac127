"""Images every N steps, as one grid per step in ``snapshots/`` (the paper saved every 100)."""

from __future__ import annotations

import glob
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pydantic import Field

from clipforge import API_VERSION, Callback, Options, RunInfo, StepState, hookimpl, image_grid, save_png, to_display

GRID_PAD = 2  # image_grid's gap between cells, in pixels

CLIPFORGE_API = API_VERSION  # a built-in is written against the API of the clipforge it comes with


class SnapshotOptions(Options):
    every: int = Field(100, ge=1, description="Save a snapshot every N steps.")
    per_image: bool = Field(False, description="Also save each image on its own.")


class Snapshots(Callback):
    name = "snapshots"
    Options = SnapshotOptions

    def on_step_end(self, run: RunInfo, state: StepState) -> None:
        if run.out_dir is None or state.step % self.options.every:
            return
        folder = run.out_dir / "snapshots"
        folder.mkdir(exist_ok=True)
        images = to_display(state.images(), run.spec.output.rescale)
        save_png(image_grid(images, grid_columns(run), GRID_PAD), folder / f"step_{state.step:06d}.png")
        if self.options.per_image:
            for row in run.rows:
                save_png(images[row.index], folder / f"{row.slug}_step_{state.step:06d}.png")

    def on_run_end(self, run: RunInfo, result: Any) -> None:
        """An image a screen withheld in the end is withheld everywhere: its snapshots of the steps
        before it was flagged are blanked, as those after are: its own files, and its cell of every
        grid (a grid whose layout cannot be read is blanked whole)."""
        withheld = getattr(result, "withheld", None) or []
        if run.out_dir is None or not any(withheld):
            return
        folder = run.out_dir / "snapshots"
        for path in folder.glob("step_*.png"):
            blank_cells(path, [row.index for row in run.rows if withheld[row.index]], len(run.rows), grid_columns(run))
        for row in run.rows:
            if withheld[row.index]:
                for path in folder.glob(f"{glob.escape(row.slug)}_step_*.png"):
                    with Image.open(path) as image:
                        width, height = image.size
                    save_png(torch.zeros(3, height, width), path)


def grid_columns(run: RunInfo) -> int:
    """A grid's columns: one per seed (a prompt per line), else a square."""
    columns = len(run.spec.seeds) if len(run.rows) > 1 else 1
    return columns if columns > 1 else math.ceil(math.sqrt(len(run.rows)))


def blank_cells(path: Path, cells: list[int], count: int, columns: int, pad: int = GRID_PAD) -> None:
    """Black out ``cells`` of a grid of ``count`` images in ``columns`` (as :func:`image_grid` lays
    them out), in place; the whole grid when its size does not fit that layout."""
    with Image.open(path) as image:
        grid = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float() / 255
    lines = (count + columns - 1) // columns
    _, height, width = grid.shape
    w, w_rest = divmod(width - pad, columns)
    h, h_rest = divmod(height - pad, lines)
    if w_rest or h_rest or w <= pad or h <= pad:
        grid.zero_()
    else:
        for i in cells:
            line, column = divmod(i, columns)
            top, left = pad + line * h, pad + column * w
            grid[:, top : top + h - pad, left : left + w - pad] = 0.0
    save_png(grid, path)


@hookimpl
def register_callbacks(register):
    register(Snapshots)
