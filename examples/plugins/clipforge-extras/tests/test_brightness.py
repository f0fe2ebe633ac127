"""The ``brightness`` analysis: its measures, and a run through ``clipforge brightness``."""

import json
from pathlib import Path

import pytest
import torch
from clipforge_extras.brightness import brightness, chroma

from clipforge.cli import main

PACKAGE = Path(__file__).resolve().parent.parent


def test_brightness_and_chroma_of_known_images():
    black, white = torch.zeros(3, 4, 4), torch.ones(3, 4, 4)
    red = torch.zeros(3, 4, 4)
    red[0] = 1.0
    images = torch.stack([black, white, red])
    assert brightness(images).tolist() == pytest.approx([0.0, 1.0, 1 / 3])
    assert chroma(images).tolist() == pytest.approx([0.0, 0.0, 1.0])


def test_runs_as_a_clipforge_verb(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["brightness", str(PACKAGE / "examples" / "brightness.json"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "a red circle: brightness" in printed and str(out / "report.md") in printed
    report = json.loads((out / "report.json").read_text())
    assert report["analysis"] == "brightness" and report["seeds"] == [0, 1]
    for prompt in ("a red circle", "a blue square"):
        entry = report["prompts"][prompt]
        assert entry["images"] == 2 and 0 <= entry["brightness"][0] <= 1 and 0 <= entry["chroma"][0] <= 1
    assert (out / "grid_01.png").exists() and "# Brightness of inversions" in (out / "report.md").read_text()


def test_spec_errors_name_the_place(tmp_path, capsys):
    spec = json.loads((PACKAGE / "examples" / "brightness.json").read_text())
    spec["run"]["augmentations"][2]["options"]["std"] = -1
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    assert main(["brightness", str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert "run.augmentations[2].options.std" in err and str(path) in err
