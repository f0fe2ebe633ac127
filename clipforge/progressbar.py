"""clipforge's progress bar: rich's on a terminal, plain lines in a log file, one bar that updates
in place in a Jupyter notebook."""

from __future__ import annotations

import html
import math
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class LogProgress(Progress):
    """A rich progress bar that, where its console is no terminal (output redirected to a file:
    nohup, Slurm, a pipe), writes a plain line instead: each time a task passes another ``fraction``
    of its total, or ``seconds`` after its last line, whichever comes first, and when it completes
    (``done/total (percent), its fields, rate, elapsed time, ETA``). On a terminal, rich's bar as
    ever; rich's one final bar line in a file is left out (the lines say it all)."""

    def __init__(self, *columns: Any, fraction: float = 0.1, seconds: float = 30.0, **kwargs: Any) -> None:
        super().__init__(*columns, **kwargs)
        self.fraction, self.seconds = fraction, seconds
        self.plain = not self.console.is_terminal and not self.disable
        self._logged: dict[TaskID, tuple[float, float]] = {}  # task -> (completed, time) of its last line

    def start(self) -> None:
        if not self.plain:  # in a log, no live display (rich would write its final bar at the end)
            super().start()

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log(task_id)

    def stop(self) -> None:
        """Stop; in a log, each task's state once more where its last line said less (or it had none)."""
        if not self.plain:
            super().stop()
        else:
            with self._lock:
                tasks = [t for t in self._tasks.values() if self._logged.get(t.id, (None,))[0] != t.completed]
                for task in tasks:
                    self._logged[task.id] = (task.completed, self.get_time())
                lines = [self._line(task) for task in tasks]
            for line in lines:
                self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _log(self, task_id: TaskID) -> None:
        if not self.plain:
            return
        with self._lock:
            task = self._tasks[task_id]
            now = self.get_time()
            started = now if task.start_time is None else task.start_time
            done_before, then = self._logged.get(task_id, (0.0, started))
            total = task.total or 0
            step = max(1.0, total * self.fraction) if total else math.inf
            due = (
                (total and task.completed >= total)
                or task.completed >= (done_before // step + 1) * step
                or now - then >= self.seconds
            )
            if not due or task.completed == done_before and task_id in self._logged:
                return
            self._logged[task_id] = (task.completed, now)
            line = self._line(task)
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    @staticmethod
    def _line(task: Task) -> str:
        done = f"{task.completed:g}/{task.total:g}" if task.total else f"{task.completed:g}"
        percent = f" ({100 * task.completed / task.total:.0f}%)" if task.total else ""
        fields = "".join(f", {key} {value}" for key, value in task.fields.items())
        # rich's speed looks at the last 30 s only; slow items (a sweep's blocks) leave it empty, so fall back
        # to the average since the start
        speed = task.finished_speed or task.speed or (task.completed / task.elapsed if task.elapsed else None)
        rate = f"{speed:.3g}/s" if speed else "-/s"
        left = task.time_remaining
        if task.total and task.completed >= task.total:
            left = 0.0
        elif left is None and speed and task.total:
            left = (task.total - task.completed) / speed
        return (
            f"{task.description}: {done}{percent}{fields}, {rate}, elapsed {_duration(task.elapsed)}, "
            f"ETA {_duration(left)}"
        )


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where a terminal bar cannot redraw itself)."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


class NotebookProgress(LogProgress):
    """In a notebook: one HTML bar per task in the cell's output, redrawn in place (at most every
    ``every`` seconds, and at the end) with the same text as a log line; nothing on stderr."""

    def __init__(self, *columns: Any, every: float = 0.25, **kwargs: Any) -> None:
        super().__init__(*columns, **kwargs)
        self.plain, self.every = False, every
        self._handles: dict[TaskID, tuple[Any, float]] = {}

    def start(self) -> None:
        pass

    def stop(self) -> None:
        for task_id in list(self._handles):
            self._draw(task_id, force=True)

    def _log(self, task_id: TaskID) -> None:
        self._draw(task_id)

    def _draw(self, task_id: TaskID, force: bool = False) -> None:
        if self.disable:
            return
        from IPython.display import HTML, display

        task = self._tasks[task_id]
        handle, last = self._handles.get(task_id, (None, -math.inf))
        now = time.monotonic()
        if handle is not None and not force and now - last < self.every and task.completed < (task.total or math.inf):
            return
        bar = f"<progress value='{task.completed:g}' max='{task.total or 1:g}' style='width:240px'></progress>"
        view = HTML(f"<div style='font:12px monospace'>{bar} {html.escape(self._line(task))}</div>")
        if handle is None:
            handle = display(view, display_id=True)
        else:
            handle.update(view)
        self._handles[task_id] = (handle, now)


def progress_bar(*fields: ProgressColumn, disable: bool = False) -> Progress:
    """clipforge's rich progress bar, on stderr: text, bar, steps done of total, any extra columns
    (``fields``), elapsed time and time left. Used by the ``progress`` callback and by analyses.
    When stderr is no terminal (a log file), it writes a plain line every 10 % or 30 s instead
    (:class:`LogProgress`); in a Jupyter notebook, a bar that updates in place (:class:`NotebookProgress`)."""
    return (NotebookProgress if in_notebook() else LogProgress)(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *fields,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=disable,
    )
