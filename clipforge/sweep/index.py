"""A sweep folder's index: append-only JSON-lines files ``index*.jsonl``, one line per finished or
failed item, written after the item's PNG is in place. The index is the single source of truth: an
item is done when a line says so. JSON lines rather than SQLite because each process (rank or Slurm
shard) appends to its own file, so no locking is needed, on a shared filesystem too, where SQLite's
locks are unreliable; a line cut short by a kill is ignored on reading."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, TextIO

from clipforge.errors import SpecError, printable
from clipforge.files import json_safe
from clipforge.sweep.spec import Sweep, describe_settings

#: an item's id: ``p<point>-<prompt index>-<the prompt's slug>-s<seed>`` (the slug comes from the
#: prompt's label or text, so the same place with another prompt is another id)
ITEM_ID = re.compile(r"p(\d+)-(\d+)(?:-.*)?-s(\d+)", re.DOTALL)


def read_index(folder: Path) -> dict[str, dict[str, Any]]:
    """Every item's last record, from all index files (a torn or garbled line is ignored)."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("index*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "id" in record:
                records[str(record["id"])] = record
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
    # the finished records at each place (grid point, prompt number, seed): an item's id names its
    # prompt too, so a prompt reordered or replaced gives its place another id, not the same one
    by_place: dict[tuple[int, int, int], list[dict[str, Any]]] = {}
    for record in done.values():
        place = place_of(record)
        if place is not None and record.get("status") == "done":
            by_place.setdefault(place, []).append(record)
    for item in sweep.items:
        record = done.get(item.id)
        if not record or record.get("status") != "done":
            for other in by_place.get((item.point, item.prompt_index, item.seed), []):
                _refuse_prompt(folder, other, item)
            continue
        if record.get("prompt") != item.prompt or record.get("seed") != item.seed:
            _refuse_prompt(folder, record, item)
        point = sweep.points[item.point]
        settings, run = point.settings, point.run
        if record.get("settings", settings) != settings:  # even where they come to the same
            _refuse(
                folder,
                f"finished item {item.id} was made with {describe_settings(record['settings'])}; the sweep now puts "
                f"{point.describe()} there (grid values edited, reordered or replaced)",
            )
        if record.get("point_hash") == point.hash:
            continue
        previous = old_runs.get(record.get("point_hash"), {})
        changed = sorted(k for k in set(previous) | set(run) if previous.get(k) != run.get(k))
        _refuse(
            folder,
            f"finished items of {point.describe()} were made with other settings"
            + (f": {', '.join(changed)} differ" if previous else ""),
        )


def place_of(record: dict[str, Any]) -> tuple[int, int, int] | None:
    """An index record's place in its sweep: (grid point, prompt number, seed), from its id; None
    for a record whose id is not an item's."""
    match = ITEM_ID.fullmatch(str(record.get("id", "")))
    return None if match is None else (int(match.group(1)), int(match.group(2)), int(match.group(3)))


def _refuse_prompt(folder: Path, record: dict[str, Any], item: Any) -> None:
    """Refuse a sweep that puts another prompt (or seed) where a finished item was made."""
    made = f"prompt {printable(json.dumps(record.get('prompt')), 120)}, seed {record.get('seed')}"
    now = f"prompt {printable(json.dumps(item.prompt), 120)}, seed {item.seed}"
    _refuse(
        folder,
        f"finished item {record.get('id')} was made for {made}; the sweep now puts {now} there "
        "(prompts reordered, edited, replaced or removed before it)",
        f"prompts[{item.prompt_index}]",
    )


def _refuse(folder: Path, why: str, where: str = "") -> None:
    """The change named on one line and what to do on the next, so that a long one does not cut it."""
    raise SpecError(
        [
            (where, f"the sweep changed in a way that alters finished items: {why}"),
            ("", "use another --out, or undo the change (new prompts, seeds and grid values go at the end)"),
        ],
        str(folder),
    )


class DoneCounter:
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


def append_record(index: TextIO, record: dict[str, Any]) -> None:
    """One index line, written in one call and flushed to the disk (a kill cuts at most this line)."""
    index.write(json.dumps(json_safe(record)) + "\n")
    index.flush()
    os.fsync(index.fileno())


def status_counts(sweep: Sweep, records: dict[str, dict[str, Any]]) -> dict[str, int]:
    counts = {"items": len(sweep.items), "done": 0, "failed": 0, "left": 0}
    for item in sweep.items:
        status = records.get(item.id, {}).get("status")
        counts["done" if status == "done" else "failed" if status == "failed" else "left"] += 1
    return counts


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
    done, failed = count_records(folder, info)
    return {
        "items": items,
        "done": len(done),
        "failed": len(failed),
        "left": max(0, items - len(done) - len(failed)),
        "errors": [(r["id"], r.get("error", "")) for r in failed],
    }


def count_records(folder: Path, info: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The index's records of the sweep's own items (``info``: its ``sweep.json``), done and failed:
    one for each place (grid point, prompt number, seed), and none of an item the sweep no longer
    has, so that no count says more than the sweep has, or less than none left."""
    latest = _latest_by_place(folder, _places(info))
    done = [r for r in latest.values() if r.get("status") == "done"]
    failed = [r for r in latest.values() if r.get("status") == "failed"]
    return done, failed


def _places(info: dict[str, Any]) -> tuple[int, int, range | set[int]] | None:
    """The sweep's places from its ``sweep.json``: (grid points, prompts, seeds), or None where it
    does not say them (every record then counts, once)."""
    try:
        seeds = info["spec"]["seeds"]
        seeds = range(seeds) if isinstance(seeds, int) and not isinstance(seeds, bool) else set(seeds)
        points = len(info["points"])
        prompts, rest = divmod(info["items"], points * len(seeds))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return None if rest else (points, prompts, seeds)


def _latest_by_place(folder: Path, places: tuple[int, int, range | set[int]] | None) -> dict[Any, dict[str, Any]]:
    """One record of each of the sweep's places (grid point, prompt number, seed), a finished one
    where there is one; a record of an item the sweep no longer has (a prompt, seed or grid value
    dropped from the end, or a prompt an older version ran as a new item when the prompts were
    reordered or replaced) is left out, so that no count is of items the sweep does not have."""
    latest: dict[Any, dict[str, Any]] = {}
    for record in read_index(folder).values():
        place = place_of(record)
        if places is not None:
            points, prompts, seeds = places
            if place is None or not (place[0] < points and place[1] < prompts and place[2] in seeds):
                continue
        key = place if place is not None else record["id"]
        if key not in latest or record.get("status") == "done":
            latest[key] = record
    return latest
