"""A screen that withholds an image only late in a run (issue 23): what was written of it at earlier
checkpoints goes, and the command line does not count it as written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import registry_with, tiny_spec_dict
from PIL import Image

import clipforge
from clipforge import Callback, Options, Screened
from clipforge import cli as cli_module
from clipforge.cli import main


class LateScreen(Callback):
    """Withholds the first image from step 4 on (as a threshold crossed late would)."""

    name = "late_screen"

    def __init__(self, options=None):
        super().__init__(options or Options())

    def screen(self, run, images, step, final):
        withheld = torch.zeros(images.shape[0], dtype=torch.bool)
        withheld[0] = step >= 4
        return Screened(images, withheld)


SPEC = tiny_spec_dict(
    steps=6,
    checkpoint_every=2,
    resolution=[{"step": 0, "size": 16}],
    callbacks=[{"name": "snapshots", "options": {"every": 1, "per_image": True}}],
)


class SeenAt(Callback):
    """Which PNGs of images/ were there after step 3 (after the checkpoint of step 2)."""

    name = "seen_at"
    pngs: list[str] = []

    def on_step_end(self, run, state):
        if state.step == 3:
            SeenAt.pngs = sorted(p.stem for p in (run.out_dir / "images").glob("*.png"))


def test_an_image_withheld_after_a_checkpoint_is_removed_from_the_folder(tmp_path):
    result = clipforge.invert(SPEC, tmp_path / "out", callbacks=[LateScreen(), SeenAt(Options())])
    slugs = [row.slug for row in result.rows]
    assert SeenAt.pngs == sorted(slugs)  # the checkpoint of step 2 wrote every image
    assert result.withheld == [True, False, False, False]
    assert sorted(p.stem for p in (tmp_path / "out" / "images").glob("*.png")) == sorted(slugs[1:])
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["withheld"] == [slugs[0]]
    for step in range(1, 7):  # its snapshots are blank, those of the steps before it was withheld too
        for slug in slugs[:2]:
            with Image.open(tmp_path / "out" / "snapshots" / f"{slug}_step_{step:06d}.png") as image:
                assert (np.asarray(image).max() == 0) == (slug == slugs[0]), (slug, step)


def test_the_command_line_does_not_count_a_withheld_image_as_written(tmp_path, monkeypatch, capsys):
    registry = registry_with(LateScreen)
    monkeypatch.setattr(cli_module, "build_registry", lambda **kwargs: registry)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**SPEC, "callbacks": ["late_screen"]}))
    assert main(["invert", str(path), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "wrote 3 image(s) (1 withheld by a screen)" in out
    assert "00-a-red-circle-seed0: withheld" in out


GROWING = tiny_spec_dict(
    steps=6,
    checkpoint_every=2,
    resolution=[{"step": 0, "size": 16}, {"step": 3, "size": 32}],
    callbacks=[{"name": "snapshots", "options": {"every": 1}}],
)


def cell(path, index: int, columns: int = 2, pad: int = 2) -> np.ndarray:
    """Image ``index`` of a snapshot grid (laid out as image_grid lays it out)."""
    with Image.open(path) as image:
        grid = np.asarray(image.convert("RGB"))
    lines = -(-4 // columns)
    h, w = (grid.shape[0] - pad) // lines, (grid.shape[1] - pad) // columns
    line, column = divmod(index, columns)
    return grid[pad + line * h : pad + (line + 1) * h - pad, pad + column * w : pad + (column + 1) * w - pad]


def test_a_withheld_image_leaves_no_pixels_in_the_snapshot_grids(tmp_path):
    """Issue 33, bad finding 2: the grids of the steps before the image was withheld showed it raw
    (and the gallery's strips are cut from them). Its cell is black in every grid, at every size;
    the other images' cells are those of a run without the screen."""
    screened = clipforge.invert(GROWING, tmp_path / "screened", callbacks=[LateScreen()])
    assert screened.withheld == [True, False, False, False]
    clipforge.invert(GROWING, tmp_path / "plain")
    grids = sorted((tmp_path / "screened" / "snapshots").glob("step_*.png"))
    assert [p.name for p in grids] == [f"step_{s:06d}.png" for s in range(1, 7)]
    for path in grids:
        plain = tmp_path / "plain" / "snapshots" / path.name
        assert cell(path, 0).size and cell(path, 0).max() == 0, path.name
        for i in (1, 2, 3):
            assert np.array_equal(cell(path, i), cell(plain, i)), (path.name, i)
            assert cell(path, i).max() > 0


def test_a_finished_run_that_withheld_an_image_keeps_no_checkpoint(tmp_path):
    """Issue 33, bad finding 2: the checkpoint held the withheld image's parameters. A finished run is
    never resumed, so its checkpoint goes (run.json says why); a run without a withheld image keeps it."""
    clipforge.invert(GROWING, tmp_path / "screened", callbacks=[LateScreen()])
    clipforge.invert(GROWING, tmp_path / "plain")
    assert not (tmp_path / "screened" / "checkpoint.safetensors").exists()
    run = json.loads((tmp_path / "screened" / "run.json").read_text())
    assert run["status"] == "finished" and run["checkpoint"] == "removed: it held images a screen withheld"
    assert (tmp_path / "plain" / "checkpoint.safetensors").is_file()
    assert "checkpoint" not in json.loads((tmp_path / "plain" / "run.json").read_text())
    with pytest.raises(clipforge.outputs.NothingToResumeError, match="has finished"):
        clipforge.invert(GROWING, tmp_path / "screened", resume=True)


class StopAfter(Callback):
    """Stops the run (as Ctrl-C would) after step 5, once the screen has withheld the first image."""

    name = "stop_after"

    def __init__(self, options=None):
        super().__init__(options or Options())

    def on_step_end(self, run, state):
        if state.step == 5:
            raise KeyboardInterrupt


def test_an_interrupted_run_keeps_its_checkpoint_to_resume(tmp_path):
    """A run that may be resumed keeps the optimisation state of every image (the README says so):
    without it the withheld image could not go on; its grids and PNGs are blanked all the same."""
    result = clipforge.invert(GROWING, tmp_path / "out", callbacks=[LateScreen(), StopAfter()])
    assert result.interrupted and result.withheld[0]
    assert (tmp_path / "out" / "checkpoint.safetensors").is_file()
    for path in (tmp_path / "out" / "snapshots").glob("step_*.png"):
        assert cell(path, 0).max() == 0, path.name
