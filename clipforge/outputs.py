"""What a run leaves in its output directory.

    spec.json                the resolved spec (every default filled in): runs again as it is
    run.json                 status (running, finished, interrupted, failed with its error), process
                             and host, spec hash, device, library versions, rows (prompt x seed), timings
    images/<row>.png         the images, with prompt, seed, step and spec hash in the PNG metadata
    images.safetensors       the image tensors (B, 3, H, W) in [0, 1], unscaled
    checkpoint.safetensors   the optimisation state (parameters, optimiser, random generators), for resuming
    metrics.jsonl            per-step metrics (the ``metrics`` callback)
    snapshots/               images every N steps (the ``snapshots`` callback)

An output folder is claimed by one process at a time (a lock file made with ``O_EXCL``); an existing,
non-empty one is never reused, so results already there are not touched. Images, ``run.json`` and the
checkpoint are rewritten every ``checkpoint_every`` steps and every ``checkpoint_seconds`` of wall time
(5 minutes by default), each file written whole under a temporary name and then renamed, so a killed run
leaves its last checkpoint's images and never a half file.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from safetensors.torch import save_file

from clipforge.components import InversionResult, RunInfo

LOCK = ".clipforge.lock"


def _process() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def process_alive(record: dict[str, Any]) -> bool | None:
    """Whether the process a lock or ``run.json`` names still runs: None when it ran on another host."""
    if record.get("host") != socket.gethostname() or not isinstance(record.get("pid"), int):
        return None
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_folder(path: Path) -> str:
    """What an existing output folder holds, from its ``run.json`` (for error messages)."""
    try:
        run = json.loads((path / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "it is not empty"
    if not isinstance(run, dict):
        return "it is not empty"
    status, where = run.get("status"), f"process {run.get('pid')} on {run.get('host')}"
    if status == "running":
        alive = process_alive(run)
        if alive is False:
            return (
                f"it holds a run whose process died ({where}) after step {run.get('steps_done', 0)}; "
                "its images and checkpoint are as of then"
            )
        return f"it holds a run still in progress ({where})" if alive else f"it holds a run started by {where}"
    return f"it holds a run that {status or 'ended'}" + (f": {run['error']}" if run.get("error") else "")


class OutputExistsError(FileExistsError):
    def __init__(self, path: Path, why: str | None = None):
        why = why or describe_folder(path)
        super().__init__(
            f"output directory {str(path)!r} already exists and {why}; "
            "choose another with --out (clipforge never overwrites results)"
        )


class FolderInUseError(OutputExistsError):
    """A live process holds the lock (``holder``: its pid and host)."""

    def __init__(self, path: Path, holder: dict[str, Any]):
        self.holder = holder
        super().__init__(path, f"is in use by process {holder.get('pid')} on {holder.get('host')}")


class OutputPathError(FileExistsError):
    """The output folder cannot be made where it was asked for: something that is not a folder, or a
    symbolic link to nowhere, is in the way."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"cannot make the output folder {str(path)!r}: {why}; choose another with --out")


def make_folder(path: Path) -> None:
    """``mkdir -p path``; when something is in the way, an :class:`OutputPathError` that names it
    (rather than "[Errno 17] File exists")."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        for part in [*reversed(path.parents), path]:
            if part.is_symlink() and not part.exists():
                raise OutputPathError(
                    path, f"{str(part)!r} is a symbolic link to {os.readlink(part)!r}, which does not exist"
                ) from None
            if part.exists() and not part.is_dir():
                raise OutputPathError(path, f"{str(part)!r} is a file, not a folder") from None
        raise


class NothingToResumeError(FileNotFoundError):
    """``--resume`` was given a folder that holds no run to continue."""


def claim_out_dir(path: Path, resume: bool = False) -> Path | None:
    """Claim an output folder for this process: create it (or take an empty one) and make its lock
    file with ``O_EXCL``, so that of two processes given one folder, one is refused at once. With
    ``resume``, the folder must hold a run that stopped (interrupted, failed, or whose process died)
    with a checkpoint. Returns the topmost folder created here (``path`` or a parent of it; None
    when ``path`` existed), which :func:`abandon_out_dir` removes again. Release it with
    :func:`release_out_dir`."""
    if resume:
        check_resumable(path)
    created = None
    if not path.exists() and not path.is_symlink():
        created = path
        while not created.parent.exists() and created.parent != created:
            created = created.parent
    if path.exists() and not path.is_dir():
        raise OutputExistsError(path, "is not a folder")
    if not resume and path.is_dir() and any(p.name != LOCK for p in path.iterdir()):
        raise OutputExistsError(path)
    make_folder(path)
    take_lock(path / LOCK)
    if resume:  # the folder is this process's now: what a killed write left there goes
        remove_temporary_files(path)
    return created


def check_resumable(path: Path) -> None:
    """Refuse a folder that holds no stopped run with a checkpoint (:class:`NothingToResumeError`)."""
    run = read_run_json(path)
    if run.get("status") == "finished":
        raise NothingToResumeError(f"the run in {str(path)!r} has finished: there is nothing to resume")
    if run.get("status") == "running" and process_alive(run) is not False:
        raise OutputExistsError(path, f"holds a run that may still be in progress ({describe_folder(path)})")
    if not (path / "checkpoint.safetensors").is_file():
        raise NothingToResumeError(
            f"the run in {str(path)!r} stopped before its first checkpoint: there is nothing to resume; start it again"
        )


RUN_STATUSES = ("running", "finished", "interrupted", "failed")


def read_run_json(path: Path) -> dict[str, Any]:
    """A run folder's ``run.json``, refused (naming it) when it is not a run's record."""
    file = path / "run.json"
    try:
        run = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise NothingToResumeError(f"{str(path)!r} holds no run to resume (no readable run.json)") from None
    if not isinstance(run, dict) or run.get("status") not in RUN_STATUSES or not isinstance(run.get("rows"), list):
        raise NothingToResumeError(
            f"{str(file)!r} is not a run's record (a JSON object with a 'status' of {', '.join(RUN_STATUSES)} "
            "and its 'rows'): it was edited or damaged; clipforge does not resume from it"
        )
    return run


class DamagedCheckpointError(NothingToResumeError):
    """A checkpoint that cannot be read, or does not hold what this run's state needs."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"checkpoint {str(path)!r} {why}; it cannot be resumed from (start the run again)")


def read_checkpoint(out_dir: Path, spec_hash: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and facts of ``checkpoint.safetensors``; refused when it belongs to another spec,
    and, naming it, when it is not a whole safetensors file with clipforge's facts."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = out_dir / "checkpoint.safetensors"
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
        tensors = load_file(str(path))
    except Exception as exc:  # truncated, garbage: safetensors' own errors name no file
        raise DamagedCheckpointError(path, f"is not a readable safetensors file ({printable_error(exc)})") from None
    try:
        meta = json.loads((metadata or {})["clipforge"])
    except (KeyError, TypeError, ValueError):
        raise DamagedCheckpointError(path, "has no clipforge facts (step, size, spec hash) in its metadata") from None
    if not isinstance(meta, dict):
        raise DamagedCheckpointError(path, "has no clipforge facts (step, size, spec hash) in its metadata")
    if meta.get("spec_hash") != spec_hash:
        raise NothingToResumeError(
            f"{str(path)!r} was written by a run of another spec (hash {meta.get('spec_hash')}, not {spec_hash}); "
            "was spec.json edited?"
        )
    for key in ("step", "size", "resize_count"):
        if not isinstance(meta.get(key), int) or isinstance(meta.get(key), bool):
            raise DamagedCheckpointError(path, f"has no whole number {key!r} in its facts")
    return tensors, meta


def printable_error(exc: BaseException) -> str:
    """An exception's first line, cut short, with its type when it says nothing."""
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def write_run_resumed(out_dir: Path, step: int) -> None:
    """``run.json`` of a resumed run: running again, in this process, from ``step``."""
    run = json.loads((out_dir / "run.json").read_text(encoding="utf-8"))
    run.pop("error", None)
    run.update({"status": "running", **_process(), "steps_done": step})
    run.setdefault("resumed", []).append({"from_step": step, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    write_json(out_dir / "run.json", run)


def take_lock(lock: Path) -> None:
    """Create the lock file ``lock`` with ``O_EXCL`` (recording this process), or refuse when a live
    process holds it; a lock left by a process that died on this host is taken over.

    Taking over is one step that cannot race: under an exclusive ``flock`` of the folder (which the
    kernel drops if its holder dies), the lock is read again and, if its process is still dead,
    replaced by this process's with an atomic rename. Two processes that both found the dead lock
    take turns there, and the second finds the first alive (deleting the dead lock and creating a
    new one instead, as before, let both succeed: the second deleted the first's new lock)."""
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        with _folder_guard(lock.parent):
            holder = _lock_holder(lock)
            if holder is not None and process_alive(holder) is False:  # a killed run's lock: take it over
                with atomic_path(lock) as tmp:
                    tmp.write_text(json.dumps(_process()), encoding="utf-8")
                return
        if holder is None:  # released meanwhile: claim it as new (O_EXCL again: one process wins)
            return take_lock(lock)
        raise FolderInUseError(lock.parent, holder) from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(_process(), f)


def _lock_holder(lock: Path) -> dict[str, Any] | None:
    """What a lock file records (an empty record when it cannot be read), or None when it is gone."""
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


@contextmanager
def _folder_guard(folder: Path, wait: float = 10.0) -> Iterator[None]:
    """An exclusive ``flock`` of ``folder`` while the block runs (where the system has ``flock``);
    released by the kernel if this process dies, so it never outlives its holder."""
    try:
        import fcntl
    except ImportError:  # no flock here: the block runs unguarded
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OutputExistsError(folder, "is being claimed by another process right now") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # drops the flock


def release_out_dir(path: Path) -> None:
    """Give the folder's claim up (its results stay)."""
    (path / LOCK).unlink(missing_ok=True)


def abandon_out_dir(path: Path, created: Path | bool | None) -> None:
    """Undo a run that failed before its first step: what it wrote goes (the folder was empty when
    claimed), and the folder too when the run created it, with the parents it created (``created``,
    from :func:`claim_out_dir`), so that a mistyped ``--out a/b/c`` leaves no empty ``a/b``."""
    for child in path.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    if not created:
        return
    path.rmdir()
    if isinstance(created, Path) and created != path and created in path.parents:
        for parent in path.parents:
            try:
                parent.rmdir()  # only while empty: another process may have put something there meanwhile
            except OSError:
                break
            if parent == created:
                break


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; renamed to ``path`` once the block succeeds,
    removed if it fails, so ``path`` is never half written. The name says which process writes it
    (``.NAME.PID@HOST.tmp``), so that one a killed process left can be told from one being written
    (:func:`remove_temporary_files`)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}@{socket.gethostname()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_TEMPORARY = re.compile(r"^\.(?P<name>.+?)(?:\.(?P<pid>\d+)(?:@(?P<host>[^/@]+))?)?\.tmp$")


def remove_temporary_files(folder: Path, only_dead: bool = False) -> list[Path]:
    """Remove the temporary files (``.*.tmp``) that writes cut short by a kill left in ``folder`` and
    below it. Call it holding the folder's lock; with ``only_dead`` (a folder several processes share,
    as a sweep's shards do), only those whose writer, named in the file name, died on this host go.
    Returns what was removed."""
    removed = []
    for path in folder.rglob(".*.tmp"):
        match = _TEMPORARY.match(path.name)
        if match is None or not path.is_file() or path.is_symlink():
            continue
        if only_dead:
            pid, host = match.group("pid"), match.group("host")
            if pid is None or host is None or process_alive({"pid": int(pid), "host": host}) is not False:
                continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the run stops and saves."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while the block runs (main thread only)."""
    if not _main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class StopSignals:
    """Ctrl-C and SIGTERM for a whole run: the first one stops it (``KeyboardInterrupt``, or
    :class:`Terminated`), and every later one is held until the run has saved its results and
    handed its folder back, wherever it arrives (a second Ctrl-C in the moment between the loop's
    end and the save would otherwise break the save). Within :meth:`held` the first one is held
    too (a checkpoint is written whole) and listed. A Ctrl-C that this process ignores (a job
    started in the background) stays ignored. Use it as a context manager (main thread only)."""

    def __init__(self) -> None:
        self.stopping = False
        self.holding = 0
        self.arrived: list[int] = []
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if not _main_thread():
            return self
        for sig in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(sig)
            if current is signal.SIG_IGN or (sig == signal.SIGINT and current is not signal.default_int_handler):
                continue  # ignored, or someone else's handler: left alone
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        self.arrived.append(signum)
        if self.stopping or self.holding:
            return
        self.stop_now(signum)

    def stop_now(self, signum: int | None = None) -> None:
        """Stop the run here: raise, as the first signal does."""
        self.stopping = True
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    @contextmanager
    def held(self) -> Iterator[list[int]]:
        """Hold the signals while the block runs; yields the list of those that arrived in it."""
        start = len(self.arrived)
        self.holding += 1
        seen: list[int] = []
        try:
            yield seen
        finally:
            self.holding -= 1
            seen.extend(self.arrived[start:])


@contextmanager
def signals_held() -> Iterator[list[int]]:
    """Hold Ctrl-C and SIGTERM while results are written (a second Ctrl-C must not break the save);
    the signals that arrived are listed in the yielded list."""
    if not _main_thread():
        yield []
        return
    arrived: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: arrived.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield arrived
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


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


def progress_bar(*fields: ProgressColumn, disable: bool = False) -> Progress:
    """clipforge's rich progress bar, on stderr: text, bar, steps done of total, any extra columns
    (``fields``), elapsed time and time left. Used by the ``progress`` callback and by analyses.
    When stderr is no terminal (a log file), it writes a plain line every 10 % or 30 s instead
    (:class:`LogProgress`)."""
    return LogProgress(
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


def _finite(value: Any) -> Any:
    """``value`` for JSON, which has no NaN or infinity: those become None (null)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, data: Any) -> None:
    """JSON, indented, written atomically (a reader never sees half a file); NaN and infinities are
    written as null, so that every JSON reader can read it."""
    text = json.dumps(_finite(data), indent=2, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


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
            "threads": torch.get_num_threads(),  # CPU threads (the CLI's --threads, CLIPFORGE_THREADS, ...)
            "versions": library_versions(),
            "backbones": run.extra.get("backbones", []),
            "rows": [row.as_dict() for row in run.rows],
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "status": "running",
            **_process(),
            "steps_done": 0,
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
    with atomic_path(Path(path)) as tmp:
        to_pil(image).save(tmp, format="PNG", pnginfo=info)


def _umask() -> int:
    """This process's umask, read without changing it where the system says it (Linux), else by
    setting it and back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def readable_like_the_rest(path: Path) -> None:
    """Give a file the permissions an ordinary new file gets (``0o666`` less the umask):
    safetensors writes its files readable by their owner only (0600), which on a shared filesystem
    would hide ``images.safetensors`` and the checkpoint from colleagues who can read the PNGs."""
    os.chmod(path, 0o666 & ~_umask())


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


def write_results(
    out_dir: Path, result: InversionResult, run: RunInfo, status: str | None = None, error: str | None = None
) -> None:
    """The images (PNGs and ``images.safetensors``) and ``run.json`` with ``status``: ``running`` at
    a checkpoint, at the end ``finished``, ``interrupted`` or ``failed`` (with ``error``)."""
    status = status or ("interrupted" if result.interrupted else "finished")
    images_dir = out_dir / "images"
    images_dir.mkdir(exist_ok=True)
    shown = to_display(result.images, result.spec.output.rescale)
    version = library_versions().get("clipforge", "unknown")
    withheld = result.withheld or [False] * len(result.rows)
    for row in result.rows:
        if withheld[row.index]:  # and its PNG of an earlier checkpoint, when it passed the screen then, goes
            (images_dir / f"{row.slug}.png").unlink(missing_ok=True)
            continue
        save_png(
            shown[row.index],
            images_dir / f"{row.slug}.png",
            {
                "prompt": result.spec.prompts[row.prompt_index].described(),
                "label": row.label,
                "seed": str(row.seed),
                "spec_hash": result.spec_hash,
                "step": str(result.steps_done),
                "software": f"clipforge {version}",
            },
        )
    with atomic_path(out_dir / "images.safetensors") as tmp:
        save_file(
            {"images": result.images.contiguous()},
            str(tmp),
            metadata={
                "rows": json.dumps([r.as_dict() for r in result.rows]),
                "spec_hash": result.spec_hash,
                "steps_done": str(result.steps_done),
            },
        )
        readable_like_the_rest(tmp)
    run_json = json.loads((out_dir / "run.json").read_text(encoding="utf-8"))
    final = result.metrics[-1] if result.metrics else {}
    run_json.update(
        {
            "status": status,
            "steps_done": result.steps_done,
            "withheld": [row.slug for row in result.rows if withheld[row.index]],
            "seconds": round(result.seconds, 3),
            "final": {"loss": final.get("loss"), "similarity": final.get("similarity")},
        }
    )
    if status != "running":
        run_json["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if error is not None:
        run_json["error"] = error
    write_json(out_dir / "run.json", run_json)


def mark_failed(out_dir: Path, error: str) -> None:
    """Say in ``run.json`` that the run failed, when even saving its results failed (best effort:
    with a full disk this may fail too, and then ``run.json`` keeps the last checkpoint's state)."""
    try:
        run_json = json.loads((out_dir / "run.json").read_text(encoding="utf-8"))
        run_json.update({"status": "failed", "error": error, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        write_json(out_dir / "run.json", run_json)
    except Exception:
        pass


def write_checkpoint(out_dir: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """The optimisation state (``checkpoint.safetensors``, its facts as JSON in the metadata), in
    one atomic write: a kill leaves the previous checkpoint or this one, never half of one."""
    with atomic_path(out_dir / "checkpoint.safetensors") as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
            str(tmp),
            metadata={"clipforge": json.dumps(meta)},
        )
        readable_like_the_rest(tmp)


def load_image(path: str, size: tuple[int, int]) -> torch.Tensor:
    """An image file as (3, H, W) in [0, 1] at ``size`` (image prompts are read with it)."""
    with Image.open(path) as img:
        array = torch.frombuffer(bytearray(img.convert("RGB").tobytes()), dtype=torch.uint8)
        w, h = img.size
    image = array.view(h, w, 3).permute(2, 0, 1).float() / 255
    return F.interpolate(image[None], size=size, mode="bicubic", antialias=True)[0].clamp(0, 1)
