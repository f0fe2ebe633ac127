"""What a run leaves in its output directory.

    spec.json                the resolved spec (every default filled in): runs again as it is
    run.json                 status (running, finished, interrupted, failed with its error), process
                             and host, spec hash, device, library versions, rows (prompt x seed), timings
    images/<row>.png         the images, with prompt, seed, step and spec hash in the PNG metadata
    images/<row>.attribution.png   where the spec asks (``output.attribution``): the image's attribution
                             map, gray, each scaled by its own largest value (none for a withheld image)
    images.safetensors       the image tensors (B, 3, H, W) in [0, 1], unscaled; and the attribution
                             maps (B, H, W), unscaled, as ``attribution`` where the spec asks
    checkpoint.safetensors   the optimisation state (parameters, optimiser, random generators), for resuming
    metrics.jsonl            per-step metrics (the ``metrics`` callback)
    snapshots/               images every N steps (the ``snapshots`` callback)

An output folder is claimed by one process at a time (a lock file made with ``O_EXCL``); an existing,
non-empty one (a subfolder counts) is never reused, so results already there are not touched. The one
exception holds no results: a folder where a run was killed after it started and before its first
checkpoint (its ``run.json`` says running at step 0, its process is dead, no checkpoint or image is
there) is emptied and taken by a new start, with a warning. Images, ``run.json`` and the
checkpoint are rewritten every ``checkpoint_every`` steps and every ``checkpoint_seconds`` of wall time
(5 minutes by default), each file written whole under a temporary name and then renamed, so a killed run
leaves its last checkpoint's images and never a half file.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from clipforge.checkpoint import CHECKPOINT, read_checkpoint
from clipforge.checkpoint import DamagedCheckpointError as DamagedCheckpointError  # importers find these here
from clipforge.checkpoint import NothingToResumeError as NothingToResumeError
from clipforge.checkpoint import printable_error as printable_error
from clipforge.checkpoint import write_checkpoint as write_checkpoint  # looked up here: tests spy on it
from clipforge.components import InversionResult, RunInfo
from clipforge.files import OutputExistsError as OutputExistsError
from clipforge.files import atomic_path as atomic_path
from clipforge.files import (
    is_temporary_file_name,
    lock_holder,
    make_folder,
    readable_like_the_rest,
    remove_temporary_files,
    take_lock,
    write_json,
)
from clipforge.files import process_alive as process_alive
from clipforge.images import save_png as save_png
from clipforge.images import to_display
from clipforge.runrecord import RunRecord, library_versions
from clipforge.signals import signals_held

LOCK = ".clipforge.lock"


def describe_folder(path: Path) -> str:
    """What an existing output folder holds, from its ``run.json`` (for error messages)."""
    try:
        run = RunRecord.read(path)
    except (OSError, ValueError):
        return "it is not empty"
    status, where = run.status, f"process {run.pid} on {run.host}"
    if status == "running":
        alive = process_alive(run.process())
        if alive is False:
            return (
                f"it holds a run whose process died ({where}) after step {run.steps_done}; "
                "its images and checkpoint are as of then"
            )
        return f"it holds a run still in progress ({where})" if alive else f"it holds a run started by {where}"
    return f"it holds a run that {status or 'ended'}" + (f": {run.error}" if run.error else "")


def claim_out_dir(path: Path, resume: bool = False) -> Path | None:
    """Claim an output folder for this process: create it (or take an empty one) and make its lock
    file with ``O_EXCL``, so that of two processes given one folder, one is refused at once. With
    ``resume``, the folder must hold a run that stopped (interrupted, failed, or whose process died)
    with a checkpoint. Without, a folder that holds only what a run killed before its first
    checkpoint left (:func:`killed_before_first_checkpoint`) is taken too, emptied, with a warning:
    that run made nothing to resume or keep, and the same command starts it again there. Returns the
    topmost folder created here (``path`` or a parent of it; None when ``path`` existed), which
    :func:`abandon_out_dir` removes again. Release it with :func:`release_out_dir`."""
    if resume:
        check_resumable(path)
    created = None
    if not path.exists() and not path.is_symlink():
        created = path
        while not created.parent.exists() and created.parent != created:
            created = created.parent
    if path.exists() and not path.is_dir():
        raise OutputExistsError(path, "is not a folder")
    killed = None
    # not empty: anything but the lock, a subfolder too (an earlier run's images/, even emptied of files)
    if not resume and path.is_dir() and any(p.name != LOCK for p in path.iterdir()):
        killed = killed_before_first_checkpoint(path)
        if killed is None:
            raise OutputExistsError(path, describe_folder(path))
    make_folder(path)
    take_lock(path / LOCK)
    if killed is not None:  # looked at again now that no other process can start there
        if killed_before_first_checkpoint(path, holding_lock=True) is None:
            release_out_dir(path)
            raise OutputExistsError(path, describe_folder(path))
        _empty_folder(path, keep=LOCK)
        warnings.warn(
            f"{str(path)!r} held a run whose process ({killed.get('pid')} on {killed.get('host')}) died before its "
            "first checkpoint, which left nothing to resume or keep: starting in it again (what that run "
            "wrote there is removed)",
            stacklevel=2,
        )
    if resume:  # the folder is this process's now: what a killed write left there goes
        remove_temporary_files(path)
    return created


#: what a run that got to its first checkpoint (or ended) has written: results, never thrown away
RUN_RESULTS = (CHECKPOINT, "images.safetensors", "images")


def killed_before_first_checkpoint(path: Path, holding_lock: bool = False) -> dict[str, Any] | None:
    """The process record (pid, host) of a run that was killed after it started in ``path`` and before
    its first checkpoint, when that is what the folder holds; else None. Such a run's ``run.json``
    says ``running`` at step 0 and names a process that is dead on this host, and no checkpoint or
    image was written; one killed before its ``run.json`` left only its ``spec.json`` and its lock,
    whose process is dead. ``holding_lock``: this process holds the folder's lock (so its lock says
    nothing of the run)."""
    if any((path / name).exists() or (path / name).is_symlink() for name in RUN_RESULTS):
        return None
    lock = None if holding_lock else lock_holder(path / LOCK)
    if lock is not None and process_alive(lock) is not False:
        return None
    try:
        run = RunRecord.read(path)
    except FileNotFoundError:
        run = None
    except (OSError, ValueError):
        return None
    if run is None:  # killed between its spec.json and its run.json: nothing else is there
        if not holding_lock and lock is None:
            return None  # no lock: a folder of someone's own, with a spec.json in it
        started = {LOCK, "spec.json"}
        if any(p.name not in started and not (is_temporary_file_name(p.name) and p.is_file()) for p in path.iterdir()):
            return None
        return lock or {}
    if run.status != "running":
        return None
    steps = run.steps_done
    if isinstance(steps, bool) or steps != 0 or process_alive(run.process()) is not False:
        return None
    return run.process()


def _empty_folder(path: Path, keep: str | None = None) -> None:
    """Remove what ``path`` holds (files, links, folders), but ``keep``."""
    for child in path.iterdir():
        if child.name == keep:
            continue
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def check_resumable(path: Path) -> None:
    """Refuse a folder that holds no stopped run with a checkpoint (:class:`NothingToResumeError`)."""
    run = RunRecord.for_resume(path)
    if run.status == "finished":
        raise NothingToResumeError(f"the run in {str(path)!r} has finished: there is nothing to resume")
    if run.status == "running" and process_alive(run.process()) is not False:
        raise OutputExistsError(path, f"holds a run that may still be in progress ({describe_folder(path)})")
    if not (path / CHECKPOINT).is_file():
        if killed_before_first_checkpoint(path) is not None:
            again = (
                "start it again, in the same folder if you like (a folder a run killed before its first checkpoint "
                f"left is taken again): the command that started it, or clipforge invert {path / 'spec.json'} "
                f"--out {path}"
            )
        else:
            again = "start it again with another --out, or remove the folder first"
        raise NothingToResumeError(
            f"the run in {str(path)!r} stopped before its first checkpoint: there is nothing to resume; {again}"
        )


def refuse_python_objects(path: Path) -> None:
    """A run made from Python with objects (a model, a function) cannot go on from a spec file, which
    cannot name them: refused, saying to resume it from Python with the same objects."""
    objects = RunRecord.for_resume(path).python_objects or []
    if objects:
        raise NothingToResumeError(
            f"{str(path)!r} was run from Python with objects that a spec file cannot hold ({'; '.join(objects)}); "
            "resume it from Python with the same objects: clipforge.invert(spec, out_dir=..., resume=True) or "
            "clipforge.visualize(..., out=..., resume=True)"
        )


def release_out_dir(path: Path) -> None:
    """Give the folder's claim up (its results stay)."""
    (path / LOCK).unlink(missing_ok=True)


def abandon_out_dir(path: Path, created: Path | bool | None) -> None:
    """Undo a run that failed before its first step: what it wrote goes (the folder was empty when
    claimed), and the folder too when the run created it, with the parents it created (``created``,
    from :func:`claim_out_dir`), so that a mistyped ``--out a/b/c`` leaves no empty ``a/b``."""
    _empty_folder(path)
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


def attribution_display(attribution: torch.Tensor) -> torch.Tensor:
    """Attribution maps (B, H, W) as gray images (B, 3, H, W) in [0, 1], each divided by its own
    largest value (an all-zero map stays black): where the objective's gradient was largest is white."""
    peak = attribution.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    return (attribution / peak).clamp(0, 1).unsqueeze(1).expand(-1, 3, -1, -1)


def write_images(out_dir: Path, result: InversionResult) -> None:
    """The images: PNGs (a withheld one's PNG goes, and its attribution map's), their attribution
    maps where the spec asks, and ``images.safetensors``."""
    images_dir = out_dir / "images"
    images_dir.mkdir(exist_ok=True)
    shown = to_display(result.images, result.spec.output.rescale)
    version = library_versions().get("clipforge", "unknown")
    withheld = result.withheld or [False] * len(result.rows)
    maps = attribution_display(result.attribution) if result.attribution is not None else None
    for row in result.rows:
        if withheld[row.index]:  # and its PNG of an earlier checkpoint, when it passed the screen then, goes
            (images_dir / f"{row.slug}.png").unlink(missing_ok=True)
            (images_dir / f"{row.slug}.attribution.png").unlink(missing_ok=True)
            continue
        text = {
            "prompt": result.spec.prompts[row.prompt_index].described(),
            "label": row.label,
            "seed": str(row.seed),
            "spec_hash": result.spec_hash,
            "step": str(result.steps_done),
            "software": f"clipforge {version}",
        }
        save_png(shown[row.index], images_dir / f"{row.slug}.png", text)
        if maps is not None:
            save_png(maps[row.index], images_dir / f"{row.slug}.attribution.png", {**text, "kind": "attribution"})
    tensors = {"images": result.images.contiguous()}
    if result.attribution is not None:
        tensors["attribution"] = result.attribution.contiguous()
    with atomic_path(out_dir / "images.safetensors") as tmp:
        save_file(
            tensors,
            str(tmp),
            metadata={
                "rows": json.dumps([r.as_dict() for r in result.rows]),
                "spec_hash": result.spec_hash,
                "steps_done": str(result.steps_done),
            },
        )
        readable_like_the_rest(tmp)


class Folder:
    """A folder this process holds, from its claim to its release: the one code path by which a
    run's, an analysis's and a sweep shard's folders are claimed (:func:`claim_out_dir`: made or
    taken empty, or a stopped run's to ``resume``; a lock made with ``O_EXCL``, one a dead process
    left taken over), undone after a failed start (:meth:`abandon`) and released (:meth:`release`)."""

    def __init__(self, path: Path, resume: bool = False) -> None:
        self.path, self.resume = path, resume
        self.lock = path / LOCK
        self.created = claim_out_dir(path, resume=resume)

    def abandon(self, first: Callable[[], None] = lambda: None) -> None:
        """Undo what made nothing, after ``first`` (the callbacks close their files), with the
        signals held (a second one must not stop the clean-up half way): a fresh folder goes (with
        the parents it made), a resumed or shared one is left as it was, released."""
        with signals_held():
            first()
            if self.resume:
                self.release()
            else:
                abandon_out_dir(self.path, self.created)

    def release(self) -> None:
        """Give the folder's claim up (its results stay)."""
        self.lock.unlink(missing_ok=True)


class SharedFolder(Folder):
    """A folder several processes write in together, each under a lock of its own (``lock``: a sweep
    shard's), never emptied: claimed (made where missing, the lock taken, ``check`` run holding it),
    the temporary files of writers that died removed, and released."""

    def __init__(self, path: Path, lock: str, check: Callable[[], None] = lambda: None) -> None:
        self.path, self.resume, self.created = path, True, None
        self.lock = path / lock
        make_folder(path)
        take_lock(self.lock)
        try:
            check()
            remove_temporary_files(path, only_dead=True)  # what killed writes of this host left
        except BaseException:
            self.release()
            raise


class RunFolder(Folder):
    """A run's output folder from its claim to its release: claimed (fresh, or a stopped run's to
    resume), started (``spec.json``, ``run.json``), checkpointed, finished or failed, and released;
    a run that fails before its first step is undone (:meth:`abandon`)."""

    def __init__(self, path: Path, resume: bool = False) -> None:
        """Claim ``path`` (:func:`claim_out_dir`)."""
        super().__init__(path, resume)
        self.fresh = not resume  # what this run wrote is all there is: a run that made nothing leaves nothing

    def read_checkpoint(self, spec_hash: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return read_checkpoint(self.path, spec_hash)

    def start(self, run: RunInfo) -> None:
        """A fresh run's first files: the resolved spec and ``run.json`` saying ``running``."""
        write_json(self.path / "spec.json", run.spec.model_dump(mode="json"))
        RunRecord.starting(run).write(self.path)

    def resumed(self, step: int) -> None:
        """``run.json`` of a resumed run: running again, in this process, from ``step``."""
        record = RunRecord.read(self.path)
        record.resumed_at(step)
        record.write(self.path)

    def checkpoint(self, tensors: dict[str, torch.Tensor], facts: dict[str, Any]) -> None:
        """The optimisation state (then :meth:`save` the images as they are, ``running``)."""
        write_checkpoint(self.path, tensors, facts)

    def save(self, result: InversionResult, status: str | None = None, error: str | None = None) -> None:
        """The images and ``run.json`` with ``status``: ``running`` at a checkpoint, at the end
        ``finished``, ``interrupted`` or ``failed`` (with ``error``)."""
        write_images(self.path, result)
        record = RunRecord.read(self.path)
        record.ended(result, status or ("interrupted" if result.interrupted else "finished"), error)
        if record.status == "finished" and any(result.withheld or []):
            # a finished run is never resumed, and its checkpoint holds the withheld images' parameters
            (self.path / CHECKPOINT).unlink(missing_ok=True)
            record.checkpoint = "removed: it held images a screen withheld"
        record.write(self.path)

    def fail(self, error: str) -> None:
        """Say in ``run.json`` that the run failed, when even saving its results failed: with a full
        disk this may fail too, which is warned of, and then ``run.json`` keeps the last checkpoint's state."""
        try:
            record = RunRecord.read(self.path)
            record.failed(error)
            record.write(self.path)
        except (OSError, ValueError, TypeError) as exc:  # a full disk, a run.json damaged meanwhile
            warnings.warn(
                f"run.json in {str(self.path)!r} could not be marked failed ({printable_error(exc)}); it keeps the "
                "last checkpoint's state",
                stacklevel=3,
            )


class NoFolder:
    """Where a run that keeps everything in memory writes: nowhere."""

    path = None
    fresh = False

    def start(self, run: RunInfo) -> None:
        pass

    def checkpoint(self, tensors: dict[str, torch.Tensor], facts: dict[str, Any]) -> None:
        pass

    def save(self, result: InversionResult, status: str | None = None, error: str | None = None) -> None:
        pass

    def fail(self, error: str) -> None:
        pass

    def abandon(self, first: Callable[[], None]) -> None:
        """No folder to undo, but ``first`` still runs: the callbacks end as a folder run's do."""
        with signals_held():
            first()

    def release(self) -> None:
        pass
