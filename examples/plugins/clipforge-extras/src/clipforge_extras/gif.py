"""``progress_gif``: an animated GIF of the images as the optimisation goes, in the run directory.

Why: a still snapshot every N steps hides how an image forms; one GIF of the whole run shows it at
a glance. Frames are taken every ``every`` steps (asking the engine for the images only then), kept
in memory as 8-bit pixels, and written once, when the run ends (also after an interruption).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import Field, field_validator

import clipforge
from clipforge import Callback, InversionResult, RunInfo, StepState, image_grid, to_display


class ProgressGif(Callback):
    """Collects frames during the run and writes ``run.out_dir / filename`` at ``on_run_end``.

    Frames come from ``state.images()`` and ``result.images``, which the engine has already passed
    through every screening callback, so a withheld or blurred image stays so in the GIF.
    Does nothing at all when the run writes no files (``run.out_dir`` is None).
    """

    name = "progress_gif"

    class Options(clipforge.Options):
        every: int = Field(
            10, ge=1, description="Take a frame every N steps (the final images are always the last frame)."
        )
        filename: str = Field("progress.gif", description="File name inside the run directory (ends in .gif).")
        frame_ms: int = Field(100, ge=10, description="How long each frame is shown, in milliseconds.")
        hold_ms: int = Field(1500, ge=10, description="How long the last frame is shown before the GIF loops.")

        @field_validator("filename")
        @classmethod
        def _plain_gif_name(cls, value: str) -> str:
            if "/" in value or "\\" in value or not value.lower().endswith(".gif") or value.startswith("."):
                raise ValueError(f"must be a plain file name ending in .gif, not {value!r}")
            return value

    def __init__(self, options: ProgressGif.Options) -> None:
        super().__init__(options)
        self.frames: list[torch.Tensor] = []  # (N, 3, h, w) uint8, h and w grow over the run
        self.last_step = -1

    def on_run_start(self, run: RunInfo) -> None:
        self.frames, self.last_step = [], -1

    def on_step_end(self, run: RunInfo, state: StepState) -> None:
        if run.out_dir is None or state.step % self.options.every:
            return
        self._add(run, state.images())  # the only device-to-host copy this callback causes
        self.last_step = state.step

    def on_run_end(self, run: RunInfo, result: InversionResult) -> None:
        if run.out_dir is None:
            return
        if result.steps_done != self.last_step:  # the last step was no frame step, or the run stopped early
            self._add(run, result.images)
        if self.frames:
            write_gif(
                self.frames,
                run.out_dir / self.options.filename,
                columns(run),
                self.options.frame_ms,
                self.options.hold_ms,
            )
        self.frames = []

    def _add(self, run: RunInfo, images: torch.Tensor) -> None:
        shown = to_display(images.detach().float().cpu(), run.spec.output.rescale)
        self.frames.append((shown.clamp(0, 1) * 255).round().to(torch.uint8))


def columns(run: RunInfo) -> int:
    """One column per seed (one row per prompt), as the built-in snapshots lay out their grids."""
    if len(run.spec.seeds) > 1 and len(run.rows) > 1:
        return len(run.spec.seeds)
    return math.ceil(math.sqrt(len(run.rows)))


def write_gif(frames: list[torch.Tensor], path: Path, per_row: int, frame_ms: int, hold_ms: int) -> None:
    """Write uint8 (N, 3, h, w) frames as a looping GIF, every frame scaled up (nearest) to the
    largest size so the images keep their place as the resolution grows."""
    height = max(f.shape[-2] for f in frames)
    width = max(f.shape[-1] for f in frames)
    pictures = []
    for frame in frames:
        if tuple(frame.shape[-2:]) != (height, width):
            frame = F.interpolate(frame.float(), size=(height, width), mode="nearest").to(torch.uint8)
        grid = image_grid(frame.float() / 255, per_row)
        array = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        pictures.append(Image.fromarray(array))
    durations = [frame_ms] * (len(pictures) - 1) + [hold_ms]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=durations, loop=0, optimize=False)
