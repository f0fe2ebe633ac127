"""Running a sweep: each process runs its shard's blocks that are not done yet, writing the items'
PNGs and index lines. A block is the unit of work, of resuming and of sharding, so a block's images
are the same whichever process runs it; one that does not fit the device runs in halves (then with
the copies in chunks), and the grid point's later blocks start at the size that fitted."""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

from clipforge.checkpoint import CHECKPOINT
from clipforge.components import Callback, Options, RunInfo, StepState
from clipforge.engine import Engine
from clipforge.errors import SpecError, printable
from clipforge.files import FolderInUseError, OutputExistsError, lock_holder, process_alive, write_json
from clipforge.images import save_png, to_display
from clipforge.outputs import LOCK, SharedFolder
from clipforge.progressbar import progress_bar
from clipforge.registry import ResolvedSpec
from clipforge.resolved import ResolvedComponent, with_prompts
from clipforge.runrecord import RUN_JSON
from clipforge.spec import Prompt
from clipforge.sweep.index import DoneCounter, append_record, check_unchanged, read_index, status_counts
from clipforge.sweep.spec import Block, GridPoint, Sweep


class _Watcher:
    """Calls ``update`` every ``every`` seconds in a background thread while the block runs."""

    def __init__(self, update: Callable[[], None], every: float, active: bool = True):
        self.update, self.every, self.active = update, every, active
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> _Watcher:
        if not self.active:  # nothing is shown: nothing to watch
            return self

        def loop() -> None:
            while not self.stop.wait(self.every):
                try:
                    self.update()
                except OSError:  # an index file being written: next time
                    pass

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


class _Advance(Callback):
    name = "sweep_progress"

    def __init__(self, advance: Callable[[], None]):
        super().__init__(Options())
        self.advance = advance

    def on_step_end(self, run: RunInfo, state: StepState) -> None:
        self.advance()


def run_sweep(
    sweep: Sweep,
    out_dir: str | Path,
    *,
    shard: tuple[int, int] = (0, 1),
    show_progress: bool = True,
) -> dict[str, int]:
    """Run every block of ``sweep`` this shard owns that is not done yet; return counts of items
    done, failed and left (over the whole sweep, as the index says afterwards)."""
    folder = Path(out_dir)
    rank, world = shard
    if not 0 <= rank < world:
        raise SpecError([("--shard", f"expected I/N with 0 <= I < N, not {rank}/{world}")])
    refuse_other_outputs(folder)
    try:  # two processes never run one shard, nor two splits one sweep
        claim = SharedFolder(folder, f".lock.shard-{rank}-of-{world}", lambda: refuse_other_shardings(folder, world))
    except FolderInUseError as exc:
        raise ShardRunningError(folder, shard, exc.holder) from None
    try:
        done = read_index(folder)
        check_unchanged(sweep, folder, done)
        if rank == 0:
            write_json(folder / "sweep.json", sweep.record())
        mine = [b for b in sweep.blocks if b.index % world == rank]
        pending = [b for b in mine if any(done.get(i.id, {}).get("status") != "done" for i in b.items)]
        steps = sum(sweep.points[b.point].spec.steps for b in pending)
        index_path = folder / (f"index.shard-{rank}-of-{world}.jsonl" if world > 1 else "index.jsonl")
        # one bar on rank 0 for the whole sweep (every rank's items, read from the index files), and
        # under it this process's steps
        shown = show_progress and rank == 0
        bar = progress_bar(disable=not shown)
        finished = DoneCounter(folder, {item.id for item in sweep.items})
        items_task = bar.add_task(
            f"sweep: items done (all {world} process(es))", total=len(sweep.items), completed=finished()
        )
        task = bar.add_task(f"this process: {len(pending)} block(s) of {len(mine)}", total=steps)
        watcher = _Watcher(lambda: bar.update(items_task, completed=finished()), every=2.0, active=shown)
        with bar, watcher, index_path.open("a", encoding="utf-8") as index:
            runner = _BlockRunner(sweep, folder, index, done, lambda: bar.advance(task))
            for block in pending:
                runner.run(block)
                bar.update(items_task, completed=finished())
    finally:
        claim.release()
    return status_counts(sweep, read_index(folder))


#: what a run, an analysis or a gallery leaves in its folder: a sweep does not go there
FOREIGN_OUTPUTS = (RUN_JSON, "spec.json", CHECKPOINT, "report.json", "report.md", LOCK)


def refuse_other_outputs(folder: Path) -> None:
    """Refuse a sweep into a folder that holds a run's or an analysis's results."""
    if not folder.is_dir():
        return
    found = [name for name in FOREIGN_OUTPUTS if (folder / name).exists()]
    if found:
        raise OutputExistsError(
            folder, f"holds a run's or an analysis's results ({', '.join(found)}), not a sweep's; a sweep needs its own"
        )


class ShardRunningError(FileExistsError):
    """The shard asked for is running already, in another process: nothing is wrong, and there is
    nothing for this one to do (another ``--out`` would start the sweep over)."""

    def __init__(self, folder: Path, shard: tuple[int, int], holder: dict[str, Any]):
        rank, world = shard
        what = "this sweep" if world == 1 else f"shard {rank}/{world} of this sweep"
        super().__init__(
            f"{what} is already running in {str(folder)!r} (process {holder.get('pid')} on "
            f"{holder.get('host')}): nothing to do here. Follow it with 'clipforge sweep {folder} --status'; "
            "once it stops, the same command continues the sweep where it stopped"
        )


def refuse_other_shardings(folder: Path, world: int) -> None:
    """Refuse to run while a process runs this folder split another way (``--shard I/M`` with
    M != ``world``, or none): blocks go to shards by ``block % world``, so two splits would both run
    the blocks neither has finished. One after another is fine: they share the index."""
    for lock in folder.glob(".lock.shard-*-of-*"):
        match = re.fullmatch(r"\.lock\.shard-(\d+)-of-(\d+)", lock.name)
        if match is None or int(match.group(2)) == world:
            continue
        holder = lock_holder(lock)
        if holder is None or (holder and process_alive(holder) is False):
            continue  # released, or left by a process that died
        other = "without --shard" if match.group(2) == "1" else f"with --shard {match.group(1)}/{match.group(2)}"
        mine = "without --shard" if world == 1 else f"as {world} shards"
        raise OutputExistsError(
            folder,
            f"is being run {other} by process {holder.get('pid')} on {holder.get('host')}; running it {mine} too "
            "would compute the same items twice. Wait for it, or use the same --shard count",
        )


@dataclass
class _BlockRunner:
    """Runs blocks of one process's share of a sweep, writing their items and index lines; keeps,
    per grid point, the block size (and copy chunks) that fitted the device."""

    sweep: Sweep
    folder: Path
    index: TextIO
    done: dict[str, dict[str, Any]]
    advance: Callable[[], None]  # called after every optimisation step
    fits: dict[int, dict[str, Any]] = field(default_factory=dict)

    def run(self, block: Block) -> None:
        """Run a block; on running out of device memory, run it in halves (then with the copies in
        chunks), remember what fitted for the grid point (also in ``fit.<pid>.json``), and use that
        size for the point's later blocks."""
        fit = self.fits.get(block.point)
        prompts = list(dict.fromkeys(i.prompt_index for i in block.items))
        if fit and len(prompts) > fit["prompts"]:
            for start in range(0, len(prompts), fit["prompts"]):
                part = set(prompts[start : start + fit["prompts"]])
                self.run(Block(block.index, block.point, [i for i in block.items if i.prompt_index in part]))
            return
        chunk = fit.get("chunk_copies") if fit else None
        try:
            self._items(block, chunk)
        except torch.OutOfMemoryError:
            copies = self.sweep.points[block.point].spec.copies
            if len(prompts) > 1:
                self.fits[block.point] = {"prompts": len(prompts) // 2, "chunk_copies": chunk}
            elif (chunk or copies) > 1:
                self.fits[block.point] = {"prompts": 1, "chunk_copies": max(1, (chunk or copies) // 2)}
            else:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            write_json(self.folder / f"fit.{os.getpid()}.json", {str(k): v for k, v in self.fits.items()})
            self.run(block)

    def _items(self, block: Block, chunk_copies: int | None) -> None:
        point = self.sweep.points[block.point]
        # by the prompts' places, not their texts: a prompt given twice is two items, each with its image
        prompts = list(dict.fromkeys(i.prompt_index for i in block.items))
        text = {i.prompt_index: i.prompt for i in block.items}
        seeds = list(dict.fromkeys(i.seed for i in block.items))
        by_key = {(i.prompt_index, i.seed): i for i in block.items}
        snapshots = _Snapshots(self.sweep.spec.snapshots, self.folder, block, prompts, by_key, self.done)
        try:
            goals = {j: self.sweep.goals[p] for j, p in enumerate(prompts) if p in self.sweep.goals}
            resolved = block_spec(point, [text[p] for p in prompts], goals, seeds, chunk_copies, prompts)
            result = Engine(resolved, callbacks=[_Advance(self.advance), snapshots]).run()
        except (KeyboardInterrupt, torch.OutOfMemoryError):
            raise
        except Exception as exc:  # the block's items fail; the sweep goes on
            error = printable(f"{type(exc).__name__}: {exc}", 500)
            for item in block.items:
                if self.done.get(item.id, {}).get("status") != "done":
                    append_record(
                        self.index,
                        {
                            "id": item.id,
                            "point": item.point,
                            "point_hash": point.hash,
                            "status": "failed",
                            "error": error,
                            "seed": item.seed,
                            "prompt": item.prompt,
                        },
                    )
            return
        if result.interrupted:
            raise KeyboardInterrupt
        final = result.metrics[-1] if result.metrics else {}
        shown = to_display(result.images, point.spec.output.rescale)
        images_dir = self.folder / "items" / f"p{block.point:03d}"
        images_dir.mkdir(parents=True, exist_ok=True)
        for row in result.rows:
            item = by_key[(prompts[row.prompt_index], row.seed)]
            if self.done.get(item.id, {}).get("status") == "done":
                continue
            png = images_dir / f"{item.id}.png"
            save_png(
                shown[row.index],
                png,
                {
                    "prompt": row.label,
                    "seed": str(row.seed),
                    "spec_hash": result.spec_hash,
                    "sweep_point": json.dumps(point.settings),
                },
            )
            record = {
                "id": item.id,
                "point": item.point,
                "point_hash": point.hash,
                "settings": point.settings,
                "prompt": item.prompt,
                "label": row.label,
                "seed": item.seed,
                "status": "done",
                "png": str(png.relative_to(self.folder)),
                "similarity": final.get("similarity", [math.nan] * len(result.rows))[row.index],
                "loss": final.get("loss", [math.nan] * len(result.rows))[row.index],
                "steps": result.steps_done,
                "seconds": round(result.seconds / len(result.rows), 4),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            if self.sweep.spec.snapshots is not None:
                record["snapshots"] = snapshots.saved.get(item.id, [])
            append_record(self.index, record)


def block_spec(
    point: GridPoint,
    prompts: list[Any],
    goals: dict[int, list[ResolvedComponent]],
    seeds: list[int],
    chunk_copies: int | None,
    numbers: list[int] | None = None,
) -> ResolvedSpec:
    """The run spec of one block: the grid point's, resolved once, with the block's prompts (``goals``:
    their own objectives, resolved when the sweep was read) and seeds, no callbacks (the sweep writes
    the images), the copies in chunks when asked, and under torchrun the device of this process;
    ``numbers``: the block's prompts' indices in the sweep, so that errors name them there."""
    spec, update = point.spec, {"seeds": seeds, "callbacks": []}
    if chunk_copies:
        update["performance"] = spec.performance.model_copy(update={"chunk_copies": chunk_copies})
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is not None and spec.device in ("auto", "cuda"):  # torchrun: one device per process
        update["device"] = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    resolved = ResolvedSpec(point.spec, {**point.resolved.components, "callbacks": []}, point.resolved.where)
    return with_prompts(resolved, [Prompt.model_validate(p) for p in prompts], goals, update, numbers=numbers)


class _Snapshots(Callback):
    """Each item's image every ``every`` steps (as a run's ``snapshots`` callback saves them with
    ``per_image``), under ``snapshots/<point>/`` in the sweep folder; ``saved`` lists each item's
    files (relative to the folder), in step order. Items already done are left alone."""

    name = "sweep_snapshots"

    def __init__(self, every: int | None, folder: Path, block: Block, prompts: list[int], by_key: dict, done: dict):
        super().__init__(Options())
        self.every, self.folder, self.prompts, self.by_key, self.done = every, folder, prompts, by_key, done
        self.where = Path("snapshots") / f"p{block.point:03d}"
        self.saved: dict[str, list[str]] = {}

    def on_step_end(self, run: RunInfo, state: StepState) -> None:
        if self.every is None or state.step % self.every:
            return
        (self.folder / self.where).mkdir(parents=True, exist_ok=True)
        images = to_display(state.images(), run.spec.output.rescale)
        for row in run.rows:
            item = self.by_key[(self.prompts[row.prompt_index], row.seed)]
            if self.done.get(item.id, {}).get("status") == "done":
                continue
            path = self.where / f"{item.id}_step_{state.step:06d}.png"
            save_png(images[row.index], self.folder / path)
            self.saved.setdefault(item.id, []).append(path.as_posix())


def shard_from_environment(env: dict[str, str] | None = None) -> tuple[int, int]:
    """(rank, world size) under torchrun (``RANK``, ``WORLD_SIZE``), else under Slurm's ``srun``
    (``SLURM_PROCID`` of ``SLURM_STEP_NUM_TASKS``, else of ``SLURM_NTASKS``), else (0, 1)."""
    env = os.environ if env is None else env
    if "RANK" in env or "WORLD_SIZE" in env:
        return int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1"))
    if "SLURM_PROCID" in env:
        tasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or "1"
        try:
            return int(env["SLURM_PROCID"]), int(tasks)
        except ValueError:
            raise SpecError(
                [("SLURM_PROCID", f"expected whole numbers from Slurm, not {env['SLURM_PROCID']!r} of {tasks!r}")]
            ) from None
    return 0, 1


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` (0-based shard I of N), for a Slurm array task or any scheduler without torchrun."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not int(match.group(1)) < int(match.group(2)):
        raise SpecError([("--shard", f"expected I/N with 0 <= I < N (e.g. 0/4), not {text!r}")])
    return int(match.group(1)), int(match.group(2))


@contextmanager
def process_group(shard: tuple[int, int]) -> Iterator[bool]:
    """Under torchrun, join the process group (gloo on the CPU, nccl on GPUs) while the block runs,
    and at its end wait for every rank, so that every rank's summary counts the whole sweep. Yields
    whether it joined one."""
    import torch.distributed as dist

    started = shard[1] > 1 and "MASTER_ADDR" in os.environ and dist.is_available()
    if started:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield started
    finally:
        if started:
            dist.barrier()
            dist.destroy_process_group()
