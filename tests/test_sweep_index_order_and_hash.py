"""A sweep's index line is written only once its PNG is in place (a kill between them must leave an
item to redo, never an item "done" without its image), and a grid point's hash covers every
setting that changes images, the optimiser's too."""

from __future__ import annotations

import json

from helpers import tiny_sweep_base

import clipforge.sweep.runner as sweeps
from clipforge.cli import main
from clipforge.sweep import load_sweep, read_index

BASE = tiny_sweep_base()
SWEEP = {"base": BASE, "prompts": ["a red circle", "a blue square"], "seeds": 2}


def test_the_index_line_comes_after_its_png(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    save_png, append = sweeps.save_png, sweeps.append_record

    def saving(image, path, text=None):
        save_png(image, path, text)
        events.append(("png", path.stem))

    def appending(index, record):
        png = tmp_path / "out" / record["png"]
        assert png.is_file() and png.stat().st_size > 0  # already whole on the disk
        events.append(("index", record["id"]))
        append(index, record)

    monkeypatch.setattr(sweeps, "save_png", saving)
    monkeypatch.setattr(sweeps, "append_record", appending)
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(SWEEP))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 0
    assert len(events) == 8
    for item in {name for _, name in events}:
        assert events.index(("png", item)) < events.index(("index", item))


def test_the_grid_points_hash_covers_the_optimiser(tmp_path, capsys):
    one = load_sweep({**SWEEP, "base": {**BASE, "optimizer": {"betas": [0.9, 0.999]}}})
    two = load_sweep({**SWEEP, "base": {**BASE, "optimizer": {"betas": [0.5, 0.999]}}})
    assert one.points[0].hash != two.points[0].hash
    # and so a sweep whose optimiser changed is refused, not counted done
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({**SWEEP, "base": {**BASE, "optimizer": {"betas": [0.9, 0.999]}}}))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 0
    index = read_index(tmp_path / "out")
    path.write_text(json.dumps({**SWEEP, "base": {**BASE, "optimizer": {"betas": [0.5, 0.999]}}}))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "were made with other settings: optimizer differ" in err, err
    assert read_index(tmp_path / "out") == index
