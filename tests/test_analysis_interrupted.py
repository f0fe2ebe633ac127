"""An analysis interrupted during its inversions (issue 23) writes no report as if it were complete
and exits non-zero. Needs ``run_analysis`` (clipforge/analysis.py) to stop when an inversion comes
back interrupted."""

from __future__ import annotations

import json
import os
import signal

import pytest
from helpers import tiny_backbone

from clipforge.cli import main
from clipforge.step import RunParts

RUN = {"backbones": [tiny_backbone(0)], "steps": 50, "copies": 2, "resolution": [{"step": 0, "size": 16}]}
PROBE = {
    "run": RUN,
    "seeds": 1,
    "judge": tiny_backbone(1),
    "prompts": ["a nurse"],
    "attribute": "colour",
    "values": {"red": "a red thing", "blue": "a blue thing"},
}


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interrupted_analysis_writes_no_report_and_exits_130(tmp_path, monkeypatch, capsys, how):
    real, calls = RunParts.step, []

    def step(self, optimizer, ctx):
        calls.append(1)
        if len(calls) == 3:
            if how == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)  # the engine turns it into an interruption
        return real(self, optimizer, ctx)

    monkeypatch.setattr(RunParts, "step", step)
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(PROBE))
    assert main(["probe", str(path), "--out", str(tmp_path / "out")]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert len(calls) <= 4  # it stopped there, and did not go on with the images of step 3
    assert not (tmp_path / "out" / "report.json").exists() and not (tmp_path / "out" / "report.md").exists()
