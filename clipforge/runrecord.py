"""``run.json``, read and written one way: :class:`RunRecord`.

What a run's ``run.json`` says of it: where and how it runs, and how far it got. Written at the
start, at every checkpoint and at the end (:class:`clipforge.outputs.RunFolder`); read by the
folder's claim (who holds it, whether a killed run left it), by ``--resume`` (:meth:`RunRecord.for_resume`,
which refuses a file that is not a run's record) and by the gallery. A key this version does not
know is kept as it is.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from clipforge.checkpoint import NothingToResumeError
from clipforge.components import InversionResult, RunInfo
from clipforge.files import this_process, write_json

RUN_JSON = "run.json"
RUN_STATUSES = ("running", "finished", "interrupted", "failed")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("clipforge", "torch", "open_clip_torch", "timm", "pydantic", "pluggy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass  # not installed: the record lists what is
    return versions


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class NotARecordError(ValueError):
    """A ``run.json`` that is JSON, but not an object."""


@dataclass
class RunRecord:
    """What ``run.json`` says of a run. Its fields are as the file holds them (a damaged file's
    may be of any JSON type: :meth:`for_resume` checks the ones resuming relies on)."""

    spec_hash: str | None = None
    device: str | None = None
    threads: int | None = None  # CPU threads (the CLI's --threads, CLIPFORGE_THREADS, ...)
    versions: dict[str, str] | None = None
    backbones: list[str] | None = None
    python_objects: list[str] | None = None  # components made from Python objects: a spec file cannot name them
    rows: list[dict[str, Any]] | None = None
    started: str | None = None
    status: str | None = "running"  # one of RUN_STATUSES (None: a run.json that says none)
    pid: int | None = None
    host: str | None = None
    steps_done: int = 0
    withheld: list[str] | None = None
    flat: list[str] | None = None  # rows whose image came out flat (clipforge.result.FLAT_STD)
    seconds: float | None = None
    final: dict[str, Any] | None = None
    finished: str | None = None
    checkpoint: str | None = None  # why a finished run's checkpoint is gone, when it is
    error: str | None = None
    resumed: list[dict[str, Any]] | None = None
    other: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def starting(cls, run: RunInfo) -> RunRecord:
        return cls(
            spec_hash=run.spec_hash,
            device=_device_name(run.device),
            threads=torch.get_num_threads(),
            versions=library_versions(),
            backbones=run.extra.get("backbones", []),
            python_objects=run.extra.get("python_objects") or None,
            rows=[row.as_dict() for row in run.rows],
            started=now(),
            **this_process(),
        )

    @classmethod
    def read(cls, folder: Path) -> RunRecord:
        """``folder``'s ``run.json``: :class:`FileNotFoundError` when there is none, another
        :class:`OSError` when it cannot be read, :class:`ValueError` when it is not JSON
        (:class:`NotARecordError` when it is JSON but not an object)."""
        data = json.loads((folder / RUN_JSON).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise NotARecordError(f"{str(folder / RUN_JSON)!r} holds a JSON {type(data).__name__}, not an object")
        known = {f.name for f in fields(cls)} - {"other"}
        other = {k: v for k, v in data.items() if k not in known}
        given = {"status": None, **{k: v for k, v in data.items() if k in known}}  # no status: none, not running
        return cls(**given, other=other)

    @classmethod
    def for_resume(cls, folder: Path) -> RunRecord:
        """``folder``'s record, refused (naming it, :class:`NothingToResumeError`) when it is not a run's."""
        try:
            record = cls.read(folder)
        except NotARecordError:
            record = None
        except (OSError, ValueError):
            raise NothingToResumeError(f"{str(folder)!r} holds no run to resume (no readable run.json)") from None
        if record is None or record.status not in RUN_STATUSES or not isinstance(record.rows, list):
            raise NothingToResumeError(
                f"{str(folder / RUN_JSON)!r} is not a run's record (a JSON object with a 'status' of "
                f"{', '.join(RUN_STATUSES)} and its 'rows'): it was edited or damaged; clipforge does not resume "
                "from it"
            )
        return record

    def process(self) -> dict[str, Any]:
        """The process it names, as :func:`clipforge.files.process_alive` takes it."""
        return {"pid": self.pid, "host": self.host}

    def as_dict(self) -> dict[str, Any]:
        """What ``run.json`` holds: the fields that are set, and the keys this version does not know."""
        data = {k: v for k, v in asdict(self).items() if v is not None and k != "other"}
        return {**data, **self.other}

    def write(self, folder: Path) -> None:
        write_json(folder / RUN_JSON, self.as_dict())

    def resumed_at(self, step: int) -> None:
        """Running again, in this process, from ``step``."""
        self.error = None
        self.status, self.steps_done = "running", step
        self.pid, self.host = this_process()["pid"], this_process()["host"]
        self.resumed = [*(self.resumed or []), {"from_step": step, "at": now()}]

    def failed(self, error: str) -> None:
        self.status, self.error, self.finished = "failed", error, now()

    def ended(self, result: InversionResult, status: str, error: str | None) -> None:
        """Take a result's facts: ``status`` ``running`` at a checkpoint, else how the run ended."""
        final = result.metrics[-1] if result.metrics else {}
        withheld = result.withheld or [False] * len(result.rows)
        self.status, self.steps_done = status, result.steps_done
        self.withheld = [row.slug for row in result.rows if withheld[row.index]]
        flat = result.flat or [False] * len(result.rows)
        self.flat = [row.slug for row in result.rows if flat[row.index]]
        self.seconds = round(result.seconds, 3)
        self.final = {"loss": final.get("loss"), "similarity": final.get("similarity")}
        if status != "running":
            self.finished = now()
        if error is not None:
            self.error = error
