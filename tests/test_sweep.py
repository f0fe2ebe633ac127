"""Sweeps (issue 16): expansion, resume, changed specs, failures, kills, shards and torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import SWEEP, start_cli, write
from PIL import Image

import clipforge
from clipforge.cli import main
from clipforge.sweep import load_sweep, read_index, run_sweep

BASE = SWEEP["base"]


def pixels(path: Path) -> bytes:
    with Image.open(path) as image:
        return image.tobytes()


def test_a_sweep_expands_to_grid_points_prompts_and_seeds(tmp_path):
    sweep = load_sweep(write(tmp_path, SWEEP))
    assert len(sweep.points) == 2 and len(sweep.items) == 2 * 3 * 2
    assert [p.run["parameterization"]["name"] for p in sweep.points] == ["pixel", "fourier"]
    assert len({i.id for i in sweep.items}) == 12
    assert [len(b.items) for b in sweep.blocks] == [4, 2, 4, 2]  # two prompts x two seeds per block
    assert all(len({i.point for i in b.items}) == 1 for b in sweep.blocks)


@pytest.mark.parametrize(
    "name, text",
    [
        ("p.txt", "a red circle\n\na blue square\n"),
        ("p.csv", "text,label,weight\na red circle,red,\na blue square,,2\n"),
        ("p.jsonl", '{"text": "a red circle", "label": "red"}\n{"text": "a blue square", "weight": 2}\n'),
    ],
)
def test_prompts_come_from_a_file(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    sweep = load_sweep(write(tmp_path, {**SWEEP, "prompts": name, "grid": {}}))
    texts = [i.prompt if isinstance(i.prompt, str) else i.prompt["text"] for i in sweep.items]
    assert texts == ["a red circle"] * 2 + ["a blue square"] * 2


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"grid": {"parameterization.name": ["pixle"]}},
            'grid point parameterization.name="pixle": parameterization.name',
        ),
        ({"grid": {"optimizer.lr": [0.1, -1]}}, "grid point optimizer.lr=-1: optimizer.lr"),
        ({"base": {**BASE, "prompts": ["x"]}}, "base.prompts: the sweep sets it"),
        ({"prompts": "missing.txt"}, "prompts: cannot read"),
        ({"grid": {"steps": []}}, "grid: grid 'steps' has no values"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_sweep_spec_errors_name_their_place(tmp_path, capsys, change, message):
    path = write(tmp_path, {**SWEEP, **change})
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err
    assert not (tmp_path / "out").exists()


def test_a_sweep_runs_once_and_then_resumes_nothing(tmp_path, monkeypatch):
    sweep = load_sweep(write(tmp_path, SWEEP))
    counts = run_sweep(sweep, tmp_path / "out", show_progress=False)
    assert counts == {"items": 12, "done": 12, "failed": 0, "left": 0}
    records = read_index(tmp_path / "out")
    assert {r["status"] for r in records.values()} == {"done"} and len(records) == 12
    for record in records.values():
        with Image.open(tmp_path / "out" / record["png"]) as image:
            assert image.size == (32, 32) and image.text["seed"] == str(record["seed"])
    runs = []
    monkeypatch.setattr(clipforge.Engine, "run", lambda self: runs.append(1))
    assert run_sweep(load_sweep(write(tmp_path, SWEEP)), tmp_path / "out", show_progress=False)["done"] == 12
    assert runs == []  # nothing ran again


def test_new_prompts_run_alone_and_a_changed_point_is_refused(tmp_path, capsys):
    path = write(tmp_path, SWEEP)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 0
    before = {k: v["finished"] for k, v in read_index(tmp_path / "out").items()}
    grown = write(tmp_path, {**SWEEP, "prompts": [*SWEEP["prompts"], "a cyan ring"]})
    assert main(["sweep", str(grown), "--out", str(tmp_path / "out")]) == 0
    after = read_index(tmp_path / "out")
    assert len(after) == 16 and all(after[k]["finished"] == t for k, t in before.items())  # old items untouched
    changed = write(tmp_path, {**SWEEP, "base": {**BASE, "steps": 4}})
    assert main(["sweep", str(changed), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "the sweep changed in a way that alters finished items" in err and "steps" in err


def test_a_failing_block_is_recorded_and_the_others_go_on(tmp_path, monkeypatch, capsys):
    real = clipforge.Engine.run

    def fail_fourier(self):
        if self.spec.parameterization.name == "fourier":
            raise RuntimeError("out of luck")
        return real(self)

    monkeypatch.setattr(clipforge.Engine, "run", fail_fourier)
    path = write(tmp_path, SWEEP)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 1
    assert main(["sweep", str(tmp_path / "out"), "--status"]) == 0
    out = capsys.readouterr().out
    assert "6 done, 6 failed, 0 left of 12 items" in out and "RuntimeError: out of luck" in out
    monkeypatch.setattr(clipforge.Engine, "run", real)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 0  # the failed ones are retried
    assert "12 done, 0 failed" in capsys.readouterr().out


def test_a_killed_sweep_loses_at_most_its_block_in_flight(tmp_path):
    spec = {**SWEEP, "base": {**BASE, "steps": 40}, "batch_size": 2, "grid": {}}
    path = write(tmp_path, spec)
    process = start_cli("sweep", str(path), "--out", str(tmp_path / "out"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (tmp_path / "out" / "index.jsonl").exists():
        time.sleep(0.05)
    while time.monotonic() < deadline and len(read_index(tmp_path / "out")) < 2:
        time.sleep(0.05)
    process.kill()
    process.wait()
    records = read_index(tmp_path / "out")
    assert 2 <= len(records) < 6, "killed too late to test anything"
    for record in records.values():  # everything the index counts is whole
        pixels(tmp_path / "out" / record["png"])
    finished = {k: v["finished"] for k, v in records.items()}
    rerun = start_cli("sweep", str(path), "--out", str(tmp_path / "out"))
    assert rerun.wait(timeout=300) == 0, rerun.communicate()
    after = read_index(tmp_path / "out")
    assert len(after) == 6 and all(after[k]["finished"] == t for k, t in finished.items())


def test_shards_together_make_the_one_process_sweep(tmp_path):
    path = write(tmp_path, SWEEP)
    one = start_cli("sweep", str(path), "--out", str(tmp_path / "one"))
    shards = [start_cli("sweep", str(path), "--out", str(tmp_path / "split"), "--shard", f"{i}/2") for i in (0, 1)]
    for process in (one, *shards):
        assert process.wait(timeout=300) == 0, process.communicate()
    whole, split = read_index(tmp_path / "one"), read_index(tmp_path / "split")
    assert set(whole) == set(split) and len(whole) == 12
    assert len(list((tmp_path / "split").glob("index.shard-*-of-2.jsonl"))) == 2
    for item, record in whole.items():
        assert pixels(tmp_path / "one" / record["png"]) == pixels(tmp_path / "split" / split[item]["png"])


def test_torchrun_spreads_a_sweep_over_ranks(tmp_path):
    pytest.importorskip("torch.distributed.run")
    path = write(tmp_path, SWEEP)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            "29531",
            "-m",
            "clipforge",
            "sweep",
            str(path),
            "--out",
            str(tmp_path / "ranks"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("12 done, 0 failed, 0 left of 12 items") == 2  # each rank, after the barrier
    one = subprocess.run(
        [sys.executable, "-m", "clipforge", "sweep", str(path), "--out", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0
    whole, ranks = read_index(tmp_path / "one"), read_index(tmp_path / "ranks")
    assert set(whole) == set(ranks)
    for item, record in whole.items():
        assert pixels(tmp_path / "one" / record["png"]) == pixels(tmp_path / "ranks" / ranks[item]["png"])


def test_out_of_memory_halves_the_block_then_chunks_the_copies(tmp_path, monkeypatch):
    """A device that holds two images, and then only a copy at a time: the sweep fits itself."""
    real, sizes = clipforge.Engine.run, []

    def small_device(self):
        images, chunk = len(self.spec.prompts) * len(self.spec.seeds), self.spec.performance.chunk_copies
        sizes.append((images, chunk))
        if images > 2 or (self.spec.parameterization.name == "fourier" and chunk is None):
            raise torch.OutOfMemoryError("CUDA out of memory (pretend)")
        return real(self)

    monkeypatch.setattr(clipforge.Engine, "run", small_device)
    counts = run_sweep(load_sweep(write(tmp_path, SWEEP)), tmp_path / "out", show_progress=False)
    assert counts == {"items": 12, "done": 12, "failed": 0, "left": 0}
    assert sizes[:2] == [(4, None), (2, None)]  # halved once, then kept at two images
    assert (2, 1) in sizes  # fourier: one prompt, then its copies one chunk at a time
    fits = json.loads(next((tmp_path / "out").glob("fit.*.json")).read_text())
    assert fits["0"] == {"prompts": 1, "chunk_copies": None}


def test_the_size_that_fitted_is_kept_for_the_grid_points_later_blocks(tmp_path, monkeypatch):
    """Five prompts in blocks of two: once a grid point's first block ran out of memory at four images, its
    second block starts at the size that fitted instead of running out of memory again."""
    real, sizes = clipforge.Engine.run, []

    def small_device(self):
        images = len(self.spec.prompts) * len(self.spec.seeds)
        sizes.append((self.spec.parameterization.name, images))
        if images > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (pretend)")
        return real(self)

    monkeypatch.setattr(clipforge.Engine, "run", small_device)
    prompts = ["a red circle", "a blue square", "a green cross", "a cyan ring", "a red square"]
    counts = run_sweep(
        load_sweep(write(tmp_path, {**SWEEP, "prompts": prompts})), tmp_path / "out", show_progress=False
    )
    assert counts == {"items": 20, "done": 20, "failed": 0, "left": 0}
    # blocks [0, 1], [2, 3], [4] per point: only the first block of each point is tried at four images
    assert sizes.count(("pixel", 4)) == 1 and sizes.count(("fourier", 4)) == 1


def test_one_progress_bar_counts_the_items_of_every_process(tmp_path, capsys):
    sweep = load_sweep(write(tmp_path, SWEEP))
    run_sweep(sweep, tmp_path / "out", shard=(0, 2), show_progress=True)
    err = capsys.readouterr().err
    assert "items done (all 2 process(es))" in err and "8/12" in err  # blocks 0 and 2: 4 + 4 items
    run_sweep(sweep, tmp_path / "out", shard=(1, 2), show_progress=True)
    assert "items done" not in capsys.readouterr().err  # only rank 0 shows the bar
    run_sweep(sweep, tmp_path / "out", shard=(0, 2), show_progress=True)
    assert "12/12" in capsys.readouterr().err  # the other process's items count too


def test_plan_estimates_memory_that_grows_with_the_block_and_shrinks_with_chunks(tmp_path, capsys):
    from clipforge.sweep import estimate_memory
    from clipforge.sweep.runner import block_spec

    point = load_sweep(write(tmp_path, SWEEP)).points[0]
    one, four = estimate_memory(point.resolved, 1), estimate_memory(point.resolved, 4)
    assert one["activations"] > 0 and four["activations"] == 4 * one["activations"]
    assert four["weights"] == one["weights"] > 0
    chunked = estimate_memory(block_spec(point, ["x"], {}, [0], chunk_copies=1), 4)
    assert chunked["activations"] == one["activations"] // point.spec.copies
    assert main(["sweep", str(write(tmp_path, SWEEP)), "--plan"]) == 0
    assert "memory per block about" in capsys.readouterr().out


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of a torchrun worker of the given rank (read from its environment)."""
    children = subprocess.run(["ps", "--ppid", str(launcher), "-o", "pid="], capture_output=True, text=True).stdout
    for pid in children.split():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return int(pid)
    return None


def test_killing_one_torchrun_rank_then_rerunning_finishes_the_rest(tmp_path):
    spec = {
        **SWEEP,
        "base": {**BASE, "steps": 60},
        "prompts": [f"a red circle number {i}" for i in range(6)],
        "seeds": 1,
        "batch_size": 1,
        "grid": {},
    }
    path = write(tmp_path, spec)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29533",
        "-m",
        "clipforge",
        "sweep",
        str(path),
        "--out",
        str(tmp_path / "out"),
    ]
    launcher = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (tmp_path / "out").exists() or not read_index(tmp_path / "out"):  # until an item is done
        assert time.monotonic() < deadline and launcher.poll() is None, "no item finished"
        time.sleep(0.05)
    victim = _rank_pid(launcher.pid, 1)
    assert victim is not None
    os.kill(victim, 9)
    launcher.wait(timeout=120)
    before = {k: v["finished"] for k, v in read_index(tmp_path / "out").items() if v["status"] == "done"}
    assert len(before) < 6, "the sweep finished before the kill"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    after = read_index(tmp_path / "out")
    assert sorted(r["status"] for r in after.values()) == ["done"] * 6
    assert all(after[k]["finished"] == t for k, t in before.items())  # what was done stays done
