"""What the benchmarks share: clocks and a memory meter, and the paper's step written out by hand
as a researcher would type it (the reference loops of ``speed``, the authors' loop, and of
``engine_overhead``, a plain batched loop, use these pieces, so both compare the engine against the
same arithmetic)."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import torch
import torch.nn.functional as F

from clipforge import Callback, Options, ResolvedSpec, StepState, default_registry, load_spec

# --------------------------------------------------------------------------- specs


def resolved(spec: Any) -> ResolvedSpec:
    """``spec`` (a dict, a path or a RunSpec) resolved with the installed plugins: what
    :class:`clipforge.engine.Engine` takes."""
    return default_registry().resolve(load_spec(spec))


# --------------------------------------------------------------------------- timing and memory


def sync(device: torch.device) -> None:
    """Wait for the device, so that a clock read afterwards counts the work queued before."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class RunClock(Callback):
    """Seconds from the start of an engine run to its end."""

    name = "clock"

    def on_run_start(self, run):
        self.start = time.perf_counter()

    def on_run_end(self, run, result):
        self.seconds = time.perf_counter() - self.start


class StepClock(Callback):
    """Seconds of the steps after the first ``warmup`` (the device synchronised at both ends)."""

    name = "step_clock"

    def __init__(self, device: torch.device, warmup: int) -> None:
        super().__init__(Options())
        self.device, self.warmup, self.started, self.seconds = device, warmup, 0.0, 0.0

    def on_step_end(self, run: Any, state: StepState) -> None:
        if state.step == self.warmup:
            sync(self.device)
            self.started = time.perf_counter()
        elif state.step == run.spec.steps:
            sync(self.device)
            self.seconds = time.perf_counter() - self.started


class PhaseClock(Callback):
    """Times each resolution phase of an engine run (every ``steps_per_phase`` steps)."""

    name = "phase_clock"

    def __init__(self, device: torch.device, steps_per_phase: int):
        super().__init__(Options())
        self.device, self.per_phase, self.times = device, steps_per_phase, []

    def on_run_start(self, run) -> None:
        sync(self.device)
        self.start = time.perf_counter()

    def on_step_end(self, run, state: StepState) -> None:
        if state.step % self.per_phase == 0:
            sync(self.device)
            now = time.perf_counter()
            self.times.append(now - self.start)
            self.start = now


class PeakMemory:
    """Peak memory while a block runs: CUDA's allocator peak, or the process's RSS sampled on CPU."""

    def __init__(self, device: torch.device):
        self.device = device

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            self.base = self.peak_rss = self._rss()
            self.running = True
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak_rss = max(self.peak_rss, self._rss())
            time.sleep(0.005)

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self.running = False
            self.thread.join()
            self.peak = self.peak_rss - self.base  # growth over the start: the model was loaded before


# --------------------------------------------------------------------------- the paper's step by hand


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
