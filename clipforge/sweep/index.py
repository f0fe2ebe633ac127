"""A sweep folder's index: append-only JSON-lines files ``index*.jsonl``, one line per finished or
failed item, written after the item's PNG is in place. The index is the single source of truth: an
item is done when a line says so. JSON lines rather than SQLite because each process (rank or Slurm
shard) appends to its own file, so no locking is needed, on a shared filesystem too, where SQLite's
locks are unreliable; a line cut short by a kill is ignored on reading."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO

from clipforge.errors import SpecError
from clipforge.files import json_safe
from clipforge.sweep.spec import Sweep, describe_settings


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
    for item in sweep.items:
        record = done.get(item.id)
        if not record or record.get("status") != "done":
            continue
        point = sweep.points[item.point]
        settings, run = point.settings, point.run
        if record.get("prompt") != item.prompt or record.get("seed") != item.seed:
            made = f"prompt {json.dumps(record.get('prompt'))}, seed {record.get('seed')}"
            now = f"prompt {json.dumps(item.prompt)}, seed {item.seed}"
            _refuse(folder, f"finished item {item.id} was made for {made}; the sweep now puts {now} there")
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
