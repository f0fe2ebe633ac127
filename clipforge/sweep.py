"""Sweeps: a whole study (grid points x prompts x seeds) that resumes after a crash and splits over
processes.

A sweep spec names a base run spec, prompts (inline or a file), seeds and a grid of overrides in the
``--set`` syntax. It expands to *items*, one image each, grouped in *blocks*: one grid point, up to
``batch_size`` items (a few prompts with all their seeds), optimised together in one engine run. A
block is the unit of work, of resuming and of sharding, so a block's images are the same whichever
process runs it.

The sweep folder holds ``sweep.json`` (the sweep as resolved: every grid point's run spec), the
images (``items/<point>/<item>.png``) and the index: append-only JSON-lines files ``index*.jsonl``,
one line per finished or failed item, written after the item's PNG is in place. The index is the
single source of truth: an item is done when a line says so. JSON lines rather than SQLite because
each process (rank or Slurm shard) appends to its own file, so no locking is needed, on a shared
filesystem too, where SQLite's locks are unreliable; a line cut short by a kill is ignored on reading.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, ValidationError, field_validator

from clipforge.components import Callback, Options, RunInfo, StepState
from clipforge.engine import Engine
from clipforge.outputs import (
    FolderInUseError,
    OutputExistsError,
    _finite,
    _lock_holder,
    make_folder,
    process_alive,
    progress_bar,
    remove_temporary_files,
    save_png,
    take_lock,
    to_display,
    write_json,
)
from clipforge.registry import Registry, ResolvedSpec, default_registry
from clipforge.spec import (
    LIMITS,
    Prompt,
    Seed,
    SpecError,
    StrictModel,
    _problems,
    apply_overrides,
    check_seed_values,
    json_type,
    parse_spec,
    printable,
    read_spec_file,
)

#: run-spec fields a grid may not vary: the sweep sets them for every block, so a grid over them
#: would be silently ignored
NOT_GRIDDED = {
    "prompts": "the sweep's 'prompts' set the prompts of every grid point; list them there",
    "seeds": "the sweep's 'seeds' set the seeds of every grid point; list them there",
    "callbacks": "a sweep's blocks run without callbacks (the sweep writes their images and index lines)",
    "output_dir": "a sweep writes into its own folder (--out)",
    "checkpoint_every": "a sweep's blocks run in memory and write no checkpoints (a block is the unit of resuming)",
    "checkpoint_seconds": "a sweep's blocks run in memory and write no checkpoints (a block is the unit of resuming)",
}


class SweepSpec(StrictModel):
    """What ``clipforge sweep SWEEP.json`` runs."""

    base: dict[str, Any] | str = Field(
        default_factory=dict,
        description="The run settings every item shares: a run spec (without prompts and seeds), inline or a path.",
    )
    prompts: list[Any] | str = Field(
        description="Prompts: a list (as in a run spec), or a .txt (one per line), .csv or .jsonl file "
        "(columns or keys text, label, weight).",
    )
    seeds: int | list[Seed] = Field(1, description="Seeds per prompt: a count (0..N-1) or a list.")
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Run-spec paths (the --set syntax) and the values each takes; every combination is a grid point.",
    )
    batch_size: int = Field(16, ge=1, le=LIMITS["images"], description="Items optimised together in one engine run.")

    @field_validator("grid")
    @classmethod
    def _values(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in value.items():
            if not values:
                raise ValueError(f"grid {key!r} has no values")
            top = re.split(r"[.\[]", key, maxsplit=1)[0]
            if top in NOT_GRIDDED:
                raise ValueError(f"grid {key!r}: {NOT_GRIDDED[top]}")
        return value

    @field_validator("seeds")
    @classmethod
    def _seed_count(cls, value: int | list[int]) -> int | list[int]:
        count = value if isinstance(value, int) else len(value)
        if not 1 <= count <= LIMITS["seeds"]:
            what = "a count of" if isinstance(value, int) else "a list of"
            raise ValueError(f"between 1 and {LIMITS['seeds']} seeds per prompt, not {what} {count}")
        if isinstance(value, list) and len(set(value)) != len(value):
            twice = sorted({seed for seed in value if value.count(seed) > 1})
            raise ValueError(f"each seed once: {', '.join(map(str, twice))} given more than once")
        return value

    _seed_values = field_validator("seeds", mode="before")(classmethod(lambda cls, value: check_seed_values(value)))

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


@dataclass(frozen=True)
class Item:
    """One image of the sweep."""

    id: str
    point: int
    prompt_index: int
    prompt: Any
    seed: int


@dataclass(frozen=True)
class Block:
    """Items of one grid point optimised together: ``prompts`` x ``seeds``."""

    index: int
    point: int
    items: list[Item]


@dataclass
class Sweep:
    """A sweep spec expanded: its grid points (each a resolved run spec, without prompts) and items."""

    spec: SweepSpec
    points: list[dict[str, Any]]  # {"settings": {path: value}, "run": resolved run spec (JSON), "hash": ...}
    blocks: list[Block]
    source: str | None = None

    @property
    def items(self) -> list[Item]:
        return [item for block in self.blocks for item in block.items]


# --------------------------------------------------------------------------- reading and expanding


def read_prompts(value: list[Any] | str, base_dir: Path | None) -> list[Any]:
    """Prompts from a list or a file: .txt (one a line), .csv (text, label, weight), .jsonl. A
    problem in a file is named with the file and its line; a UTF-8 byte order mark (Excel's) is
    ignored."""
    if isinstance(value, list):
        return value
    path = Path(value)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([("prompts", f"cannot read {str(path)!r}: {exc}")]) from None
    if path.suffix == ".txt":
        return [line.strip() for line in text.splitlines() if line.strip()]

    def row(data: Any, where: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise SpecError(
                [(where, f"a prompt is an object with 'text' (and 'label', 'weight'), not {json_type(data)}")]
            )
        unknown = set(data) - {"text", "label", "weight"}
        if unknown or not data.get("text"):
            raise SpecError([(where, f"a prompt needs 'text' (and may have 'label', 'weight'), not {sorted(data)}")])
        for key in ("text", "label"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise SpecError([(where, f"'{key}' must be a string, not {json_type(data[key])}")])
        out = {"text": data["text"]}
        if data.get("label"):
            out["label"] = data["label"]
        weight = data.get("weight")
        if weight not in (None, ""):
            try:
                if isinstance(weight, bool):
                    raise ValueError
                out["weight"] = float(weight)
                if not math.isfinite(out["weight"]):
                    raise ValueError
            except (TypeError, ValueError):
                raise SpecError([(where, f"'weight' must be a finite number, not {weight!r}")]) from None
        return out

    if path.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""), restkey=_EXTRA, restval=_MISSING)
        rows = []
        for record in reader:
            where = f"prompts: {str(path)!r} line {reader.line_num}"
            if _EXTRA in record:
                raise SpecError([(where, f"more fields than the header's {len(reader.fieldnames or [])}")])
            if _MISSING in record.values():
                raise SpecError([(where, f"fewer fields than the header's {len(reader.fieldnames or [])}")])
            rows.append(row(record, where))
        return rows
    if path.suffix == ".jsonl":
        rows = []
        for i, line in enumerate(text.splitlines()):
            if line.strip():
                where = f"prompts: {str(path)!r} line {i + 1}"
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SpecError([(where, f"invalid JSON: {exc.msg}")]) from None
                rows.append(row(data, where))
        return rows
    raise SpecError([("prompts", f"{path.name}: a prompts file ends in .txt, .csv or .jsonl")])


_EXTRA, _MISSING = "\x00extra", "\x00missing"  # markers of a ragged CSV row


def check_prompts(prompts: list[Any], where: str) -> None:
    """Each prompt as a run spec takes it (a string, or an object with 'text', 'image' or 'terms'),
    refused with its place (``prompts[3]``, or the file and line it came from)."""
    for i, prompt in enumerate(prompts):
        try:
            Prompt.model_validate(prompt)
        except ValidationError as exc:
            problems = _problems(exc, f"prompts[{i}]")
            raise SpecError([(f"{where} ({path})" if where else path, msg) for path, msg in problems]) from None


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


def _slug(prompt: Any) -> str:
    text = prompt if isinstance(prompt, str) else prompt.get("label") or prompt.get("text") or "prompt"
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:40] or "prompt"


def load_sweep(source: str | Path | dict[str, Any], registry: Registry | None = None) -> Sweep:
    """Read, validate and expand a sweep spec; every problem is raised with its JSON path and file."""
    registry = registry or default_registry()
    name = None if isinstance(source, dict) else str(source)
    base_dir = None if isinstance(source, dict) else Path(source).parent
    data = source if isinstance(source, dict) else read_spec_file(source)
    try:
        try:
            spec = SweepSpec.model_validate(data)
        except Exception as exc:
            if hasattr(exc, "errors"):
                raise SpecError(_problems(exc)) from None
            raise
        base = spec.base
        if isinstance(base, str):
            base_path = Path(base) if Path(base).is_absolute() or base_dir is None else base_dir / base
            base = read_spec_file(base_path)
        for key in ("prompts", "seeds"):
            if key in base:
                raise SpecError([(f"base.{key}", "the sweep sets it; leave it out of the base")])
        prompts = read_prompts(spec.prompts, base_dir)
        if not prompts:
            raise SpecError([("prompts", "no prompts")])
        check_prompts(prompts, "" if isinstance(spec.prompts, list) else f"prompts: {spec.prompts!r}")
        seeds = spec.seed_list()
        keys = list(spec.grid)
        points = []
        for values in itertools.product(*(spec.grid[k] for k in keys)) if keys else [()]:
            settings = dict(zip(keys, values))
            overrides = [f"{k}={json.dumps(v)}" for k, v in settings.items()]
            where = "grid point " + ", ".join(f"{k}={json.dumps(v)}" for k, v in settings.items()) if keys else "base"
            try:
                run_data = apply_overrides({**base, "prompts": ["x"], "seeds": [0]}, overrides)
                resolved = registry.resolve(parse_spec(run_data, None))
            except SpecError as exc:
                raise SpecError([(f"{where}: {path}" if path else where, msg) for path, msg in exc.problems]) from None
            # a block writes no checkpoints (it runs in memory): its settings of them are left out, and
            # so a point's hash stays what it was before runs had ``checkpoint_seconds``
            run = resolved.spec.model_dump(
                mode="json", exclude={"prompts", "seeds", "output_dir", "checkpoint_seconds"}
            )
            points.append({"settings": settings, "run": run, "hash": _digest(run)})
        items = len(points) * len(prompts) * len(seeds)
        if items > LIMITS["images"] * 100:  # before the items are made: a huge sweep must not fill the memory
            raise SpecError(
                [
                    (
                        "",
                        f"{len(points)} grid points x {len(prompts)} prompts x {len(seeds)} seeds = {items} items in "
                        f"one sweep; at most {LIMITS['images'] * 100}",
                    )
                ]
            )
        per_block = max(1, spec.batch_size // len(seeds))
        blocks = []
        for p in range(len(points)):
            for start in range(0, len(prompts), per_block):
                block_items = [
                    Item(f"p{p:03d}-{i:06d}-{_slug(prompt)}-s{seed}", p, i, prompt, seed)
                    for i, prompt in enumerate(prompts[start : start + per_block], start)
                    for seed in seeds
                ]
                blocks.append(Block(len(blocks), p, block_items))
    except SpecError as exc:
        raise SpecError(exc.problems, name) from None
    return Sweep(spec, points, blocks, name)


# --------------------------------------------------------------------------- the folder and its index


def read_index(folder: Path) -> dict[str, dict[str, Any]]:
    """Every item's last record, from all index files (a torn last line is ignored)."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("index*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "id" in record:
                records[record["id"]] = record
    return records


def check_unchanged(sweep: Sweep, folder: Path, done: dict[str, dict[str, Any]]) -> None:
    """Refuse a sweep that would give a finished item's place to other settings, another prompt or
    another seed: grid values edited, reordered or replaced, a changed base, prompts reordered or
    edited. Items are named by their place (grid point, prompt and seed numbers), so such a sweep
    would count the old images as done and label them with the new settings."""
    try:
        before = json.loads((folder / "sweep.json").read_text(encoding="utf-8"))
        old_runs = {p["hash"]: p["run"] for p in before.get("points", [])}
    except (OSError, ValueError, TypeError, KeyError):
        old_runs = {}
    for item in sweep.items:
        record = done.get(item.id)
        if not record or record.get("status") != "done":
            continue
        point = sweep.points[item.point]
        if record.get("prompt") != item.prompt or record.get("seed") != item.seed:
            made = f"prompt {json.dumps(record.get('prompt'))}, seed {record.get('seed')}"
            now = f"prompt {json.dumps(item.prompt)}, seed {item.seed}"
            _refuse(folder, f"finished item {item.id} was made for {made}; the sweep now puts {now} there")
        if record.get("settings", point["settings"]) != point["settings"]:  # even where they come to the same
            _refuse(
                folder,
                f"finished item {item.id} was made with {_settings(record['settings'])}; the sweep now puts "
                f"{_settings(point['settings'])} there (grid values edited, reordered or replaced)",
            )
        if record.get("point_hash") == point["hash"]:
            continue
        previous = old_runs.get(record.get("point_hash"), {})
        changed = sorted(k for k in set(previous) | set(point["run"]) if previous.get(k) != point["run"].get(k))
        _refuse(
            folder,
            f"finished items of {_settings(point['settings'])} were made with other settings"
            + (f": {', '.join(changed)} differ" if previous else ""),
        )


def _settings(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in settings.items()) or "the base"


def _refuse(folder: Path, why: str) -> None:
    raise SpecError(
        [
            (
                "",
                f"the sweep changed in a way that alters finished items: {why} in {str(folder)!r}; "
                "use another --out, or undo the change (new prompts, seeds and grid values go at the end)",
            )
        ]
    )


class _Watcher:
    """Calls ``update`` every ``every`` seconds in a background thread while the block runs."""

    def __init__(self, update, every: float, active: bool = True):
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


class _DoneCounter:
    """How many of ``ids`` the index files say are done, reading only the lines added since the
    last call (the files only grow), so that watching a long sweep costs nothing per poll."""

    def __init__(self, folder: Path, ids: set[str]):
        self.folder, self.ids = folder, ids
        self.offsets: dict[Path, int] = {}
        self.done: set[str] = set()

    def __call__(self) -> int:
        for path in sorted(self.folder.glob("index*.jsonl")):
            with path.open("rb") as f:
                f.seek(self.offsets.get(path, 0))
                data = f.read()
            whole = data[: data.rfind(b"\n") + 1]  # a line still being written is read next time
            self.offsets[path] = self.offsets.get(path, 0) + len(whole)
            for line in whole.splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if record.get("id") in self.ids:
                    (self.done.add if record.get("status") == "done" else self.done.discard)(record["id"])
        return len(self.done)


class _Advance(Callback):
    name = "sweep_progress"

    def __init__(self, advance):
        super().__init__(Options())
        self.advance = advance

    def on_step_end(self, run: RunInfo, state: StepState) -> None:
        self.advance()


def run_sweep(
    sweep: Sweep,
    out_dir: str | Path,
    registry: Registry | None = None,
    *,
    shard: tuple[int, int] = (0, 1),
    show_progress: bool = True,
) -> dict[str, int]:
    """Run every block of ``sweep`` this shard owns that is not done yet; return counts of items
    done, failed and left (over the whole sweep, as the index says afterwards)."""
    registry = registry or default_registry()
    folder = Path(out_dir)
    rank, world = shard
    if not 0 <= rank < world:
        raise SpecError([("--shard", f"expected I/N with 0 <= I < N, not {rank}/{world}")])
    refuse_other_outputs(folder)
    make_folder(folder)
    lock = folder / f".lock.shard-{rank}-of-{world}"
    try:
        take_lock(lock)  # two processes never run one shard
    except FolderInUseError as exc:
        raise ShardRunningError(folder, shard, exc.holder) from None
    try:
        refuse_other_shardings(folder, world)
        remove_temporary_files(folder, only_dead=True)  # what killed writes of this host left
        done = read_index(folder)
        check_unchanged(sweep, folder, done)
        if rank == 0:
            write_json(
                folder / "sweep.json",
                {
                    "spec": sweep.spec.model_dump(mode="json"),
                    "points": sweep.points,
                    "items": len(sweep.items),
                    "blocks": len(sweep.blocks),
                },
            )
        mine = [b for b in sweep.blocks if b.index % world == rank]
        pending = [b for b in mine if any(done.get(i.id, {}).get("status") != "done" for i in b.items)]
        steps = sum(sweep.points[b.point]["run"]["steps"] for b in pending)
        index_path = folder / (f"index.shard-{rank}-of-{world}.jsonl" if world > 1 else "index.jsonl")
        # one bar on rank 0 for the whole sweep (every rank's items, read from the index files), and
        # under it this process's steps
        shown = show_progress and rank == 0
        bar = progress_bar(disable=not shown)
        finished = _DoneCounter(folder, {item.id for item in sweep.items})
        items_task = bar.add_task(
            f"sweep: items done (all {world} process(es))", total=len(sweep.items), completed=finished()
        )
        task = bar.add_task(f"this process: {len(pending)} block(s) of {len(mine)}", total=steps)
        watcher = _Watcher(lambda: bar.update(items_task, completed=finished()), every=2.0, active=shown)
        with bar, watcher, index_path.open("a", encoding="utf-8") as index:
            runner = _BlockRunner(sweep, folder, registry, index, done, lambda: bar.advance(task))
            for block in pending:
                runner.run(block)
                bar.update(items_task, completed=finished())
    finally:
        lock.unlink(missing_ok=True)
    return status_counts(sweep, read_index(folder))


#: what a run, an analysis or a gallery leaves in its folder: a sweep does not go there
FOREIGN_OUTPUTS = ("run.json", "spec.json", "checkpoint.safetensors", "report.json", "report.md", ".clipforge.lock")


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
        holder = _lock_holder(lock)
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
    registry: Registry
    index: Any  # the open index file
    done: dict[str, dict[str, Any]]
    advance: Any  # called after every optimisation step
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
            copies = self.sweep.points[block.point]["run"]["copies"]
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
        run = {**point["run"], "prompts": [text[p] for p in prompts], "seeds": seeds, "callbacks": []}
        if chunk_copies:
            run["performance"] = {**run["performance"], "chunk_copies": chunk_copies}
        local_rank = os.environ.get("LOCAL_RANK")
        if local_rank is not None and run["device"] in ("auto", "cuda"):  # torchrun: one device per process
            run["device"] = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
        by_key = {(i.prompt_index, i.seed): i for i in block.items}
        try:
            resolved: ResolvedSpec = self.registry.resolve(parse_spec(run))
            result = Engine(resolved, registry=self.registry, callbacks=[_Advance(self.advance)]).run()
        except (KeyboardInterrupt, torch.OutOfMemoryError):
            raise
        except Exception as exc:  # the block's items fail; the sweep goes on
            error = printable(f"{type(exc).__name__}: {exc}", 500)
            for item in block.items:
                if self.done.get(item.id, {}).get("status") != "done":
                    _append(
                        self.index,
                        {
                            "id": item.id,
                            "point": item.point,
                            "point_hash": point["hash"],
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
        shown = to_display(result.images, self.sweep.points[block.point]["run"]["output"]["rescale"])
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
                    "sweep_point": json.dumps(point["settings"]),
                },
            )
            _append(
                self.index,
                {
                    "id": item.id,
                    "point": item.point,
                    "point_hash": point["hash"],
                    "settings": point["settings"],
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
                },
            )


def _append(index: Any, record: dict[str, Any]) -> None:
    """One index line, written in one call and flushed to the disk (a kill cuts at most this line)."""
    index.write(json.dumps(_finite(record)) + "\n")
    index.flush()
    os.fsync(index.fileno())


def status_counts(sweep: Sweep, records: dict[str, dict[str, Any]]) -> dict[str, int]:
    counts = {"items": len(sweep.items), "done": 0, "failed": 0, "left": 0}
    for item in sweep.items:
        status = records.get(item.id, {}).get("status")
        counts["done" if status == "done" else "failed" if status == "failed" else "left"] += 1
    return counts


def estimate_memory(
    run: dict[str, Any],
    images: int,
    registry: Registry | None = None,
    measured: dict[str, tuple[int, int]] | None = None,
) -> dict[str, int]:
    """Bytes one block of ``images`` images needs at the run's largest size, before anything runs:
    the backbones' weights; the activations one augmented copy keeps for the backward pass, measured
    by passing one copy through each backbone on the CPU (saved-tensor hooks count what autograd
    keeps), times the copies that go through at once (``chunk_copies``, or all of them); and the
    images with their gradients and Adam's two moments. An estimate, on the high side for the
    activations (a tensor autograd keeps twice, as views, is counted twice; bf16 halves them); the
    device's own overheads (kernels' workspaces, the allocator's rounding) come on top.

    ``measured`` (a dict kept across calls, e.g. over a plan's grid points) remembers each distinct
    backbone's weights and activations, so that each is built once, not once per grid point."""
    registry = registry or default_registry()
    resolved = registry.resolve(parse_spec({**run, "prompts": ["x"], "seeds": [0], "device": "cpu"}))
    weights = per_copy = 0
    measured = {} if measured is None else measured
    for component in resolved.components["backbones"]:
        key = json.dumps(component.ref().model_dump(mode="json"), sort_keys=True)
        if key not in measured:
            measured[key] = _measure_backbone(component)
        weights += measured[key][0]
        per_copy += measured[key][1]
    copies = images * run["copies"]
    at_once = min(copies, run["performance"].get("chunk_copies") or copies)
    size = max(step["size"] for step in run["resolution"])
    image_bytes = images * 3 * size * size * 4 * 4  # the images, their gradients, Adam's two moments
    activations = per_copy * at_once
    return {
        "weights": weights,
        "activations": activations,
        "images": image_bytes,
        "total": weights + activations + image_bytes,
    }


def _measure_backbone(component: Any) -> tuple[int, int]:
    """A backbone's weights, and the activations one copy keeps for the backward pass, in bytes:
    built on the CPU, one copy passed through it with saved-tensor hooks counting what autograd keeps."""
    backbone = component.build(torch.device("cpu"))
    model = getattr(backbone, "model", None)
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) if isinstance(model, torch.nn.Module) else 0
    saved = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved[0] += tensor.numel() * tensor.element_size()
        return tensor

    pixels = torch.rand(1, 3, *backbone.input_size, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        backbone.encode_image(pixels)
    return weights, saved[0]


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


def sweep_status(folder: Path) -> dict[str, Any]:
    """What a sweep folder says: items in all, done, failed (with their errors) and left."""
    try:
        info = json.loads((folder / "sweep.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SpecError([("", "no sweep here (no readable sweep.json)")], str(folder)) from None
    items = info.get("items") if isinstance(info, dict) else None
    if not isinstance(items, int) or isinstance(items, bool) or items < 0:
        raise SpecError(
            [("", f"{str(folder / 'sweep.json')!r} is not a sweep's record (no count of 'items'): edited or damaged?")],
            str(folder),
        )
    records = read_index(folder)
    done = sum(r.get("status") == "done" for r in records.values())
    failed = [r for r in records.values() if r.get("status") == "failed"]
    return {
        "items": info["items"],
        "done": done,
        "failed": len(failed),
        "left": info["items"] - done - len(failed),
        "errors": [(r["id"], r.get("error", "")) for r in failed],
    }
