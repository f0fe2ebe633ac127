"""Per-step metrics as JSON lines in the run directory (``metrics.jsonl``).

Each line: ``{"step", "size", "loss": [...], "data": [...], "similarity": [...],
"regularizers": {"tv": [...], ...}}``, each list holding one value per image, in the order of the
rows in ``run.json``.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from pydantic import Field

from clipforge import API_VERSION, Callback, Options, OutputName, RunInfo, hookimpl

CLIPFORGE_API = API_VERSION  # a built-in is written against the API of the clipforge it comes with


class MetricsOptions(Options):
    filename: OutputName = Field("metrics.jsonl", description="File name inside the run directory.")


class MetricsLog(Callback):
    name = "metrics"
    Options = MetricsOptions

    def __init__(self, options: MetricsOptions) -> None:
        super().__init__(options)
        self.file = None

    def on_run_start(self, run: RunInfo) -> None:
        if run.out_dir is None:
            return
        path = run.output_path(self.options.filename)
        if run.start_step and path.exists():  # a resumed run: drop the lines after its checkpoint
            kept = [line for line in _records(path) if _step(line) <= run.start_step]
            # whole or not at all; the temporary name says which process wrote it (as clipforge's own do),
            # so that a resume after a kill here removes it
            tmp = path.with_name(f".{path.name}.{os.getpid()}@{socket.gethostname()}.tmp")
            try:
                tmp.write_text("".join(kept), encoding="utf-8")
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        self.file = open(path, "a", encoding="utf-8")

    def on_metrics(self, run: RunInfo, records: list[dict[str, Any]]) -> None:
        if self.file is not None:
            self.file.write("".join(json.dumps(r) + "\n" for r in records))
            self.file.flush()

    def on_run_end(self, run: RunInfo, result: Any) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _records(path) -> list[str]:
    """The whole lines of a metrics file (a last line cut short by a kill is dropped); a line that is
    not a metrics record is refused, naming the file and the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as exc:
        raise MetricsFileError(f"metrics file {str(path)!r} cannot be read: {exc}") from None
    whole = [line for line in lines if line.endswith("\n")]
    for number, line in enumerate(whole, 1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        step = record.get("step") if isinstance(record, dict) else None
        if not isinstance(step, int) or isinstance(step, bool):
            raise MetricsFileError(
                f"metrics file {str(path)!r}, line {number}: not a metrics record (a JSON object with its "
                "'step'); was it edited? Move it away to resume without the metrics before the checkpoint"
            )
    return whole


def _step(line: str) -> int:
    return json.loads(line)["step"]


class MetricsFileError(ValueError):
    """A run's metrics file that is not what the ``metrics`` callback wrote."""


@hookimpl
def register_callbacks(register):
    register(MetricsLog)
