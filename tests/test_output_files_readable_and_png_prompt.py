"""Point 5 of issue 24: every file of a run readable like its neighbours (safetensors writes its
files 0600), and a PNG's ``prompt`` metadata holding the prompt's text, its label in ``label``."""

from __future__ import annotations

import json
import os
import stat

import pytest
from helpers import tiny_spec_dict
from PIL import Image

from clipforge.cli import main


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_safetensors_files_get_the_permissions_of_the_other_files(tmp_path, umask):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(tiny_spec_dict(steps=4, seeds=[0], checkpoint_every=2)))
    old = os.umask(umask)
    try:
        assert main(["invert", str(spec), "--out", str(tmp_path / "out"), "--threads", "1"]) == 0
    finally:
        os.umask(old)
    out = tmp_path / "out"
    mode = lambda path: stat.S_IMODE(path.stat().st_mode)  # noqa: E731
    assert mode(out / "images.safetensors") == 0o666 & ~umask
    assert mode(out / "checkpoint.safetensors") == 0o666 & ~umask
    assert mode(out / "images.safetensors") == mode(out / "run.json")


def test_a_pngs_prompt_is_the_prompt_text_and_its_label_is_apart(tmp_path):
    prompts = [
        {"text": "a red circle on grey", "label": "red"},
        {"terms": [{"text": "a blue square"}, {"text": "a red circle", "weight": -0.5}], "label": "blue-not-red"},
        "a green cross",
    ]
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(tiny_spec_dict(steps=2, seeds=[0], prompts=prompts)))
    assert main(["invert", str(spec), "--out", str(tmp_path / "out"), "--threads", "1"]) == 0
    rows = json.loads((tmp_path / "out" / "run.json").read_text())["rows"]
    texts = {}
    for row in rows:
        png = Image.open(tmp_path / "out" / "images" / f"{row['slug']}.png")
        texts[png.text["label"]] = png.text["prompt"]
    assert texts == {
        "red": "a red circle on grey",
        "blue-not-red": "1*a blue square + -0.5*a red circle",
        "a green cross": "a green cross",
    }
