"""Images every N steps, as one grid per step in ``snapshots/`` (the paper saved every 100)."""

from __future__ import annotations

import glob
import math
from typing import Any

import torch
from PIL import Image
from pydantic import Field

from clipforge import API_VERSION, Callback, Options, RunInfo, StepState, hookimpl, image_grid, save_png, to_display

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
        columns = len(run.spec.seeds) if len(run.rows) > 1 else 1
        if columns == 1:
            columns = math.ceil(math.sqrt(len(run.rows)))
        save_png(image_grid(images, columns), folder / f"step_{state.step:06d}.png")
        if self.options.per_image:
            for row in run.rows:
                save_png(images[row.index], folder / f"{row.slug}_step_{state.step:06d}.png")

    def on_run_end(self, run: RunInfo, result: Any) -> None:
        """An image a screen withheld in the end is withheld everywhere: its own snapshots of the steps
        before it was flagged are blanked, as those after are (the grids of those steps keep it)."""
        withheld = getattr(result, "withheld", None) or []
        if run.out_dir is None or not self.options.per_image or not any(withheld):
            return
        for row in run.rows:
            if withheld[row.index]:
                for path in (run.out_dir / "snapshots").glob(f"{glob.escape(row.slug)}_step_*.png"):
                    with Image.open(path) as image:
                        width, height = image.size
                    save_png(torch.zeros(3, height, width), path)


@hookimpl
def register_callbacks(register):
    register(Snapshots)
