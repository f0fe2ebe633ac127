"""A rich progress bar: step, loss, similarity, elapsed time and ETA."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from rich.progress import Progress, TextColumn

from clipforge import API_VERSION, Callback, Options, RunInfo, hookimpl, progress_bar

CLIPFORGE_API = API_VERSION  # a built-in is written against the API of the clipforge it comes with


class ProgressOptions(Options):
    disable: bool = Field(False, description="Show nothing.")


class ProgressBar(Callback):
    name = "progress"
    Options = ProgressOptions

    def __init__(self, options: ProgressOptions) -> None:
        super().__init__(options)
        self.progress: Progress | None = None

    def on_run_start(self, run: RunInfo) -> None:
        if self.options.disable:
            return
        self.progress = progress_bar(TextColumn("loss {task.fields[loss]}  sim {task.fields[sim]}"))
        label = f"{len(run.rows)} image{'s' if len(run.rows) != 1 else ''}"
        self.task = self.progress.add_task(f"inverting {label}", total=run.total_steps, loss="-", sim="-")
        self.progress.start()

    def on_metrics(self, run: RunInfo, records: list[dict[str, Any]]) -> None:
        if self.progress is None:
            return
        last = records[-1]
        similarities = [s for s in last["similarity"] if s is not None]  # None: no objective reports one
        sim = f"{sum(similarities) / len(similarities):.3f}" if similarities else "-"
        loss = sum(last["loss"]) / len(last["loss"])
        self.progress.update(self.task, completed=last["step"], loss=f"{loss:.4f}", sim=sim)

    def on_run_end(self, run: RunInfo, result: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


@hookimpl
def register_callbacks(register):
    register(ProgressBar)
