"""Per-step metrics as JSON lines in the run directory (``metrics.jsonl``).

Each line: ``{"step", "size", "loss": [...], "data": [...], "similarity": [...],
"regularizers": {"tv": [...], ...}}``, each list holding one value per image, in the order of the
rows in ``run.json``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pydantic import Field

from clipforge import Callback, Options, OutputName, RunInfo, hookimpl

CLIPFORGE_API = "1.1"  # the public API this plugin was written against (checked at load)


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
            kept = [
                line
                for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
                if line.endswith("\n") and json.loads(line)["step"] <= run.start_step
            ]
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text("".join(kept), encoding="utf-8")
            os.replace(tmp, path)
        self.file = open(path, "a", encoding="utf-8")

    def on_metrics(self, run: RunInfo, records: list[dict[str, Any]]) -> None:
        if self.file is not None:
            self.file.write("".join(json.dumps(r) + "\n" for r in records))
            self.file.flush()

    def on_run_end(self, run: RunInfo, result: Any) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


@hookimpl
def register_callbacks(register):
    register(MetricsLog)
