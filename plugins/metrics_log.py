"""Per-step metrics as JSON lines in the run directory (``metrics.jsonl``).

Each line: ``{"step", "size", "loss": [...], "data": [...], "similarity": [...],
"regularizers": {"tv": [...], ...}}``, each list holding one value per image, in the order of the
rows in ``run.json``.
"""

from __future__ import annotations

import json
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
        if run.out_dir is not None:
            self.file = open(run.output_path(self.options.filename), "a", encoding="utf-8")

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
