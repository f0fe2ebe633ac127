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


@pytest.mark.parametrize("existed", [False, True])
def test_an_analysis_interrupted_while_writing_its_report_leaves_the_folder_as_it_was_found(
    tmp_path, monkeypatch, capsys, existed
):
    """Issue 33, point 6: Ctrl-C during ``write_report`` left ``report.json`` and part of the images,
    which the gallery showed as a report, while the message said nothing was written."""
    from clipforge_plugins.analysis_probe import Probe

    real = Probe.write_report

    def half_then_interrupted(self, report, run, out):
        real(self, report, run, out)  # report.md and the grids are written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(Probe, "write_report", half_then_interrupted)
    quick = {**PROBE, "run": {**RUN, "steps": 2}}
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(quick))
    out = tmp_path / "out"
    if existed:
        out.mkdir()
    assert main(["probe", str(path), "--out", str(out)]) == 130
    assert "no report written" in capsys.readouterr().err
    assert (list(out.iterdir()) == []) if existed else not out.exists()
    assert main(["probe", str(path), "--out", str(out)]) == 130  # the folder takes a rerun (cut short again)
