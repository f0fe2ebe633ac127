"""What a hostile user's tries found in sweeps (issue 23): an edited grid relabelling finished
images, a prompt given twice never finishing, unbounded seeds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import tiny_sweep_base

from clipforge.cli import main
from clipforge.sweep import read_index

BASE = tiny_sweep_base()
SWEEP = {"base": BASE, "prompts": ["a red circle"], "seeds": 1, "grid": {"optimizer.lr": [0.1, 0.2]}}


def sweep(tmp_path: Path, data: dict, *extra: str) -> int:
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(data))
    return main(["sweep", str(path), "--out", str(tmp_path / "out"), *extra])


@pytest.mark.parametrize(
    "grid, why",
    [
        ({"optimizer.lr": [0.1, 0.3]}, "made with optimizer.lr=0.2; the sweep now puts optimizer.lr=0.3 there"),
        ({"optimizer.lr": [0.2, 0.1]}, "made with optimizer.lr=0.1; the sweep now puts optimizer.lr=0.2 there"),
        ({"optimizer.eps": [1e-8, 1e-6]}, "made with optimizer.lr=0.1; the sweep now puts optimizer.eps=1e-08 there"),
        ({}, "made with optimizer.lr=0.1; the sweep now puts the base there"),
    ],
)
def test_grid_values_edited_reordered_or_replaced_are_refused(tmp_path, capsys, grid, why):
    assert sweep(tmp_path, SWEEP) == 0
    capsys.readouterr()
    index = (tmp_path / "out" / "index.jsonl").read_text()
    saved = (tmp_path / "out" / "sweep.json").read_text()
    assert sweep(tmp_path, {**SWEEP, "grid": grid}) == 2
    err = capsys.readouterr().err
    assert "the sweep changed in a way that alters finished items" in err and why in err
    # nothing was relabelled: the index and the saved sweep are as they were
    assert (tmp_path / "out" / "index.jsonl").read_text() == index
    assert (tmp_path / "out" / "sweep.json").read_text() == saved


def test_grid_values_added_at_the_end_run_only_the_new_point(tmp_path, capsys):
    assert sweep(tmp_path, SWEEP) == 0
    before = {k: v["finished"] for k, v in read_index(tmp_path / "out").items()}
    assert sweep(tmp_path, {**SWEEP, "grid": {"optimizer.lr": [0.1, 0.2, 0.3]}}) == 0
    after = read_index(tmp_path / "out")
    assert len(after) == 3 and all(after[k]["finished"] == t for k, t in before.items())
    assert sorted(r["settings"]["optimizer.lr"] for r in after.values()) == [0.1, 0.2, 0.3]


def test_a_prompt_edited_in_place_is_refused(tmp_path, capsys):
    assert sweep(tmp_path, {**SWEEP, "prompts": [{"text": "a red circle", "label": "red"}]}) == 0
    capsys.readouterr()
    assert sweep(tmp_path, {**SWEEP, "prompts": [{"text": "a blue square", "label": "red"}]}) == 2
    err = capsys.readouterr().err
    assert 'was made for prompt {"text": "a red circle", "label": "red"}, seed 0' in err


def test_the_same_prompt_twice_in_one_block_finishes(tmp_path, capsys):
    (tmp_path / "prompts.txt").write_text("a red circle\na red circle\n")
    spec = {**SWEEP, "prompts": "prompts.txt", "grid": {}, "batch_size": 4}
    assert sweep(tmp_path, spec) == 0
    assert "2 done, 0 failed, 0 left of 2 items" in capsys.readouterr().out
    records = read_index(tmp_path / "out")
    assert len(records) == 2 and all((tmp_path / "out" / r["png"]).is_file() for r in records.values())
    assert sweep(tmp_path, spec) == 0  # and a rerun has nothing left
    assert "2 done, 0 failed, 0 left of 2 items" in capsys.readouterr().out


@pytest.mark.parametrize(
    "seeds, message",
    [
        (0, "between 1 and 10000 seeds per prompt, not a count of 0"),
        (-3, "between 1 and 10000 seeds per prompt, not a count of -3"),
        (10**9, "between 1 and 10000 seeds per prompt, not a count of 1000000000"),
        ([], "between 1 and 10000 seeds per prompt, not a list of 0"),
        ([1, 2, 1], "each seed once: 1 given more than once"),
    ],
)
@pytest.mark.parametrize("plan", [False, True])
def test_seeds_are_bounded(tmp_path, capsys, seeds, message, plan):
    assert sweep(tmp_path, {**SWEEP, "seeds": seeds}, *(["--plan"] if plan else [])) == 2
    err = capsys.readouterr().err
    assert "seeds" in err and message in err
    assert not (tmp_path / "out").exists()


def test_too_many_items_are_refused_before_they_are_made(tmp_path, capsys):
    prompts = [f"prompt {i}" for i in range(1001)]
    assert sweep(tmp_path, {**SWEEP, "prompts": prompts, "seeds": 10_000, "grid": {}}, "--plan") == 2
    assert "1 grid points x 1001 prompts x 10000 seeds = 10010000 items in one sweep" in capsys.readouterr().err


def test_a_huge_grid_is_counted_and_refused_before_its_points_are_resolved(tmp_path, capsys, monkeypatch):
    """Issue 33, point 8: a grid of 1e8 points exhausted the memory resolving its points before the
    10-million-item limit was checked."""
    import clipforge.sweep.spec as sweep_spec

    def never(*args, **kwargs):
        raise AssertionError("the grid's points were resolved before its size was checked")

    monkeypatch.setattr(sweep_spec, "grid_points", never)
    grid = {"optimizer.lr": [0.1 * (i + 1) for i in range(100)], "copies": list(range(1, 101))}
    grid |= {"steps": list(range(1, 101)), "optimizer.eps": [1e-8 * (i + 1) for i in range(100)]}
    assert sweep(tmp_path, {**SWEEP, "grid": grid}, "--plan") == 2
    assert re.search(
        r"100000000 grid points x \d+ prompts x \d+ seeds = \d+ items in one sweep", capsys.readouterr().err
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "callbacks",
    [
        [{"name": "safety_screen", "options": {"concepts": ["a red circle"], "action": "withhold"}}],
        ["metrics", {"name": "snapshots", "options": {"every": 1}}],
    ],
)
def test_a_base_with_callbacks_is_refused_naming_them_not_run_without_them(tmp_path, capsys, callbacks):
    """Issue 33, point 1: a sweep dropped its base's callbacks in silence, so the images a run's
    safety screen withholds were written raw, with rc 0."""
    assert sweep(tmp_path, {**SWEEP, "base": {**SWEEP["base"], "callbacks": callbacks}}) == 2
    err = capsys.readouterr().err
    names = [c if isinstance(c, str) else c["name"] for c in callbacks]
    assert "base.callbacks" in err and all(repr(n) in err for n in names)
    assert not (tmp_path / "out").exists()


def test_a_grid_over_objectives_that_every_prompt_overrides_is_refused(tmp_path, capsys):
    """Issue 33, point 4: items labelled with different objectives were pixel-identical when every
    prompt carried its own objectives."""
    own = [{"objectives": [{"name": "channel", "options": {"layer": "conv1", "channel": c}}]} for c in (1, 2)]
    grid = {"objectives": [["prompt"], [{"name": "prompt", "options": {"weight": 2.0}}]]}
    assert sweep(tmp_path, {**SWEEP, "prompts": own, "grid": grid}, "--plan") == 2
    err = capsys.readouterr().err
    assert "grid.objectives" in err and "every prompt names its own objectives" in err
    assert not (tmp_path / "out").exists()
    # with a prompt that uses the spec's objectives, the grid reaches an item: accepted
    assert sweep(tmp_path, {**SWEEP, "prompts": [*own, "a red circle"], "grid": grid}, "--plan") == 0
