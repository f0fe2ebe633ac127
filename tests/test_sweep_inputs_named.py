"""A sweep's bad inputs, refused with the file, the line or the JSON path (never a bare ValueError,
TypeError or KeyError), and nothing silently ignored: prompt files with a non-numeric weight, ragged
CSV rows or a JSONL line that is no object; inline prompts that are no prompts; a grid over what the
sweep itself sets; seeds no generator takes; a damaged sweep.json; a run's folder; two ways of
splitting one folder at once."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from helpers import tiny_sweep_base

from clipforge.cli import main
from clipforge.sweep import load_sweep, read_index, read_prompts

BASE = tiny_sweep_base()
SWEEP = {"base": BASE, "prompts": ["a red circle", "a blue square"], "seeds": 1}


def write(tmp_path: Path, data: dict, files: dict[str, bytes] | None = None) -> Path:
    for name, content in (files or {}).items():
        (tmp_path / name).write_bytes(content)
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(data))
    return path


def refused(tmp_path: Path, capsys, data: dict, files: dict[str, bytes] | None = None, *args: str) -> str:
    path = write(tmp_path, data, files)
    code = main(["sweep", str(path), "--out", str(tmp_path / "out"), *args])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2, err
    assert "Traceback" not in err and "error:" in err
    return err


@pytest.mark.parametrize(
    "name, content, where, why",
    [
        ("p.csv", b"text,weight\na cat,1\na dog,heavy\n", "line 3", "'weight' must be a finite number, not 'heavy'"),
        ("p.csv", b"text,weight\na cat,1,7\n", "line 2", "more fields than the header's 2"),
        ("p.csv", b"text,label,weight\na cat\n", "line 2", "fewer fields than the header's 3"),
        ("p.csv", b"text,weight\na cat,nan\n", "line 2", "'weight' must be a finite number"),
        ("p.jsonl", b'{"text": "a cat"}\n42\n', "line 2", "not a number"),
        ("p.jsonl", b'{"text": "a cat"}\n["a dog"]\n', "line 2", "not an array"),
        ("p.jsonl", b'{"text": "a cat", "weight": "x"}\n', "line 1", "'weight' must be a finite number, not 'x'"),
        ("p.jsonl", b'{"text": "a cat", "weight": true}\n', "line 1", "'weight' must be a finite number"),
        ("p.jsonl", b'{"text": 5}\n', "line 1", "'text' must be a string"),
    ],
)
def test_a_bad_prompts_file_is_named_with_its_line(tmp_path, capsys, name, content, where, why):
    err = refused(tmp_path, capsys, {**SWEEP, "prompts": name}, {name: content})
    assert f"{str(tmp_path / name)!r} {where}" in err and why in err, err


@pytest.mark.parametrize("name", ["p.csv", "p.txt", "p.jsonl"])
def test_an_excel_byte_order_mark_is_accepted(tmp_path, name):
    bom = "\ufeff".encode()
    content = {
        "p.csv": b"text,label,weight\na cat,cat,2\n",
        "p.txt": b"a cat\n",
        "p.jsonl": b'{"text": "a cat", "label": "cat", "weight": 2}\n',
    }[name]
    (tmp_path / name).write_bytes(bom + content)
    prompts = read_prompts(name, tmp_path)
    expected = "a cat" if name == "p.txt" else {"text": "a cat", "label": "cat", "weight": 2.0}
    assert prompts == [expected]


def test_a_prompts_files_weight_and_label_columns_are_kept(tmp_path):
    """Dropping either column would change the images (weight) or their names (label) silently."""
    (tmp_path / "p.csv").write_text("text,label,weight\na cat,kitty,0.5\na dog,,\n")
    sweep = load_sweep(write(tmp_path, {**SWEEP, "prompts": "p.csv"}))
    assert [item.prompt for item in sweep.items] == [
        {"text": "a cat", "label": "kitty", "weight": 0.5},
        {"text": "a dog"},
    ]
    assert "kitty" in sweep.items[0].id


@pytest.mark.parametrize(
    "prompts, where",
    [([123], "prompts[0]"), (["a cat", None], "prompts[1]"), (["a cat", {"txt": "a dog"}], "prompts[1]")]
    + [([["a cat"]], "prompts[0]"), ([{"text": "a", "weight": "x"}], "prompts[0].weight")],
)
def test_inline_prompts_that_are_no_prompts_are_refused_with_their_path(tmp_path, capsys, prompts, where):
    err = refused(tmp_path, capsys, {**SWEEP, "prompts": prompts})
    assert f"{tmp_path / 'sweep.json'}: {where}" in err, err


@pytest.mark.parametrize(
    "key", ["prompts", "seeds", "callbacks", "callbacks[0].options.every", "output_dir", "checkpoint_every"]
)
def test_a_grid_over_what_the_sweep_sets_is_refused(tmp_path, capsys, key):
    """A grid over the prompts, seeds or callbacks was silently ignored: every point the same."""
    err = refused(tmp_path, capsys, {**SWEEP, "grid": {key: [[1], [2]]}})
    assert f"grid {key!r}" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "seeds, where",
    [([2**64], "seeds[0]"), ([0, -(2**63) - 1], "seeds[1]"), ([0, 2**32], "seeds[1]"), ([-1], "seeds[0]")],
)
def test_a_seed_no_generator_takes_is_refused_at_validation_with_its_place(tmp_path, capsys, seeds, where):
    err = refused(tmp_path, capsys, {**SWEEP, "seeds": seeds})
    assert where in err, err
    # and in a run spec
    (tmp_path / "run.json").write_text(json.dumps({**BASE, "prompts": ["a cat"], "seeds": seeds}))
    assert main(["validate", str(tmp_path / "run.json")]) == 2
    assert where in capsys.readouterr().err


def test_the_largest_seed_runs(tmp_path):
    path = write(tmp_path, {**SWEEP, "prompts": ["a cat"], "seeds": [2**32 - 1]})
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 0


def test_seeds_equal_modulo_2_to_the_32_are_not_accepted_as_different_images(tmp_path, capsys):
    """Issue 33, point 5: 0 and 2**32 (and -1 and 2**64 - 1) gave the same image under two labels,
    since the generator keeps 32 bits of a seed; only the seeds that give their own stream are taken."""
    import torch

    assert torch.equal(
        torch.rand(4, generator=torch.Generator().manual_seed(0)),
        torch.rand(4, generator=torch.Generator().manual_seed(2**32)),
    )  # why: the generator's own behaviour
    for seeds in ([0, 2**32], [-1], [2**64 - 1]):
        (tmp_path / "run.json").write_text(json.dumps({**BASE, "prompts": ["a cat"], "seeds": seeds}))
        assert main(["validate", str(tmp_path / "run.json")]) == 2
        assert "a seed is a whole number from 0 to 2**32 - 1" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["[]", "{}", '{"items": "many"}', '{"items": null}', "7"])
def test_status_of_a_damaged_sweep_json_names_it(tmp_path, capsys, content):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "sweep.json").write_text(content)
    assert main(["sweep", "--status", str(folder)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert str(folder / "sweep.json") in err and "Traceback" not in err, err


def test_a_sweep_into_a_runs_folder_is_refused(tmp_path, capsys):
    run = tmp_path / "out"
    (tmp_path / "run.json").write_text(json.dumps({**BASE, "prompts": ["a cat"]}))
    assert main(["invert", str(tmp_path / "run.json"), "--out", str(run)]) == 0
    before = sorted(p.name for p in run.iterdir())
    err = refused(tmp_path, capsys, SWEEP)
    assert "holds a run's or an analysis's results" in err and "run.json" in err, err
    assert sorted(p.name for p in run.iterdir()) == before


@pytest.mark.parametrize("shard", ["2/2", "3/2", "0/0", "-1/2"])
def test_a_shard_outside_its_count_is_refused(tmp_path, capsys, shard):
    err = refused(tmp_path, capsys, SWEEP, None, f"--shard={shard}")
    assert "--shard" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("running, args", [(".lock.shard-1-of-2", ()), (".lock.shard-0-of-1", ("--shard", "0/2"))])
def test_a_folder_run_with_and_without_shards_at_once_is_refused(tmp_path, capsys, running, args):
    """Blocks go to shards by block % N: a second split of the same folder would compute the items
    the first has not finished a second time."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / running).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    err = refused(tmp_path, capsys, SWEEP, None, *args)
    assert "would compute the same items twice" in err, err
    assert read_index(folder) == {}


def test_one_split_after_another_shares_the_index(tmp_path):
    """Shards first, then the whole without --shard: nothing is computed twice."""
    path = write(tmp_path, {**SWEEP, "batch_size": 1})
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--shard", "0/2"]) == 0
    first = read_index(tmp_path / "out")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 0
    after = read_index(tmp_path / "out")
    assert len(first) == 1 and len(after) == 2
    lines = [line for p in (tmp_path / "out").glob("index*.jsonl") for line in p.read_text().splitlines()]
    assert len(lines) == 2  # each item once
