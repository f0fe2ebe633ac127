"""Snapshots in sweeps, when asked for (issue 24): each item's image every N steps under the sweep
folder, listed in its index record in step order."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import tiny_sweep_base
from PIL import Image

from clipforge import SpecError
from clipforge.sweep import load_sweep, read_index, run_sweep

SWEEP = {
    "base": {**tiny_sweep_base(), "steps": 5},
    "prompts": ["a red circle", "a blue square"],
    "seeds": 2,
    "grid": {"optimizer.lr": [0.1, 0.2]},
    "batch_size": 2,
    "snapshots": 2,
}


def run(tmp_path, sweep):
    counts = run_sweep(load_sweep(sweep), tmp_path / "out", show_progress=False)
    return counts, read_index(tmp_path / "out")


def test_every_item_lists_its_snapshots_in_step_order(tmp_path):
    counts, records = run(tmp_path, SWEEP)
    assert counts["done"] == 8 and len(records) == 8
    for record in records.values():
        point = f"p{record['point']:03d}"
        expected = [f"snapshots/{point}/{record['id']}_step_{step:06d}.png" for step in (2, 4)]
        assert record["snapshots"] == expected
        for path in record["snapshots"]:
            with Image.open(tmp_path / "out" / path) as image:
                assert image.size == (16, 16)


def test_the_last_snapshot_is_the_image_at_that_step(tmp_path):
    """A snapshot at the last step is the item's final image, the same PNG bytes' worth."""
    _, records = run(tmp_path, {**SWEEP, "base": {**SWEEP["base"], "steps": 4}})
    for record in records.values():
        with (
            Image.open(tmp_path / "out" / record["snapshots"][-1]) as last,
            Image.open(tmp_path / "out" / record["png"]) as final,
        ):
            assert (np.asarray(last) == np.asarray(final)).all()


def test_without_the_option_there_are_no_snapshots(tmp_path):
    sweep = {key: value for key, value in SWEEP.items() if key != "snapshots"}
    _, records = run(tmp_path, sweep)
    assert all("snapshots" not in record for record in records.values())
    assert not (tmp_path / "out" / "snapshots").exists()
    assert "snapshots" not in json.loads((tmp_path / "out" / "sweep.json").read_text())["spec"]


def test_the_option_is_recorded_and_a_finished_sweep_is_not_run_again(tmp_path, monkeypatch):
    _, before = run(tmp_path, SWEEP)
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["spec"]["snapshots"] == 2
    counts, after = run(tmp_path, SWEEP)
    assert counts["done"] == 8 and after == before


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "every"])
def test_a_snapshot_interval_that_is_no_whole_number_of_steps_is_refused(value):
    with pytest.raises(SpecError, match="^snapshots: "):
        load_sweep({**SWEEP, "snapshots": value})
