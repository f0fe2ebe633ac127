"""Images every N steps, as one grid per step in ``snapshots/`` (the paper saved every 100)."""

from __future__ import annotations

import math

from pydantic import Field

from clipforge import Callback, Options, RunInfo, StepState, hookimpl, image_grid, save_png, to_display

CLIPFORGE_API = "1.1"  # the public API this plugin was written against (checked at load)


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


@hookimpl
def register_callbacks(register):
    register(Snapshots)
