"""Point 2 of issue 24: progress that reaches a log file (plain lines when stderr is no terminal),
for runs and sweeps; sweeps sharded by Slurm's process variables; and the advice a shard that is
already running gets (point 5)."""

from __future__ import annotations

import json
import os
import re
import socket

import pytest
from helpers import tiny_backbone, tiny_spec_dict

from clipforge.cli import main
from clipforge.progressbar import progress_bar
from clipforge.spec import SpecError
from clipforge.sweep import load_sweep, run_sweep, shard_from_environment

LINE = re.compile(r"^(?P<what>.+): (?P<done>\d+)/(?P<total>\d+) \((?P<percent>\d+)%\)(?P<rest>.*)$")


def log_lines(text: str) -> list[re.Match]:
    return [m for m in map(LINE.match, text.splitlines()) if m]


def test_a_bar_writes_a_plain_line_every_tenth_when_stderr_is_no_terminal(capsys):
    bar = progress_bar()
    task = bar.add_task("working", total=200)
    with bar:
        for _ in range(200):
            bar.advance(task)
    lines = log_lines(capsys.readouterr().err)
    assert [int(m["done"]) for m in lines] == list(range(20, 201, 20))
    assert all("/s" in m["rest"] and "ETA" in m["rest"] and "elapsed" in m["rest"] for m in lines)


def test_a_bar_writes_a_line_after_its_interval_even_between_tenths(capsys):
    now = [0.0]
    bar = progress_bar()
    bar.get_time = lambda: now[0]
    bar.seconds = 30
    task = bar.add_task("slow", total=1000)
    with bar:
        for step in range(1, 41):
            now[0] = step * 10.0  # ten seconds a step: a line every three steps, long before 10 %
            bar.update(task, completed=step)
    done = [int(m["done"]) for m in log_lines(capsys.readouterr().err)]
    assert done[:3] == [3, 6, 9] and 39 in done


def test_slow_items_still_get_a_rate_and_an_eta(capsys):
    """Items 40 s apart (a sweep's blocks) fall outside rich's 30 s window of speed samples: the line then
    gives the average rate since the start, and the ETA that follows from it, not "-"."""
    now = [0.0]
    bar = progress_bar()
    bar.get_time = lambda: now[0]
    task = bar.add_task("items", total=10)
    with bar:
        for item in range(1, 4):
            now[0] = item * 40.0
            bar.update(task, completed=item)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "0.025/s" in last and "ETA 4m40s" in last, last  # 3 items in 120 s; 7 left at 40 s each


def test_a_run_logs_step_loss_similarity_rate_and_eta(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(tiny_spec_dict(steps=10, seeds=[0], callbacks=["progress"])))
    assert main(["invert", str(spec), "--out", str(tmp_path / "out"), "--threads", "1"]) == 0
    lines = log_lines(capsys.readouterr().err)
    assert [int(m["done"]) for m in lines] == list(range(1, 11))  # 10 steps: a line each tenth
    last = lines[-1]
    assert last["what"].startswith("inverting") and last["total"] == "10" and last["percent"] == "100"
    assert re.search(r"loss \d+\.\d+, sim -?\d+\.\d+, .*/s, elapsed \S+, ETA 0m00s$", last["rest"])


SWEEP = {
    "base": {
        "backbones": [tiny_backbone()],
        "steps": 2,
        "copies": 1,
        "resolution": [{"step": 0, "size": 16}],
        "device": "cpu",
    },
    "prompts": ["a red circle", "a blue square"],
    "seeds": 2,
    "batch_size": 1,
}


def test_a_sweep_logs_items_done_of_all(tmp_path, capsys):
    spec = tmp_path / "sweep.json"
    spec.write_text(json.dumps(SWEEP))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "s"), "--threads", "1"]) == 0
    items = [m for m in log_lines(capsys.readouterr().err) if m["what"].startswith("sweep")]
    assert [int(m["done"]) for m in items][-1] == 4 and all(m["total"] == "4" for m in items)
    assert "ETA" in items[-1]["rest"]


@pytest.mark.parametrize(
    "env, shard",
    [
        ({}, (0, 1)),
        ({"RANK": "2", "WORLD_SIZE": "4", "SLURM_PROCID": "0", "SLURM_NTASKS": "9"}, (2, 4)),  # torchrun first
        ({"SLURM_PROCID": "3", "SLURM_NTASKS": "4"}, (3, 4)),
        ({"SLURM_PROCID": "1", "SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "2"}, (1, 2)),  # srun's step
        ({"SLURM_NTASKS": "4"}, (0, 1)),  # a batch script's own process, not an srun task
    ],
)
def test_sweeps_read_slurms_process_variables_like_torchruns(env, shard):
    assert shard_from_environment(env) == shard


def test_a_slurm_task_runs_its_own_shard(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "sweep.json"
    spec.write_text(json.dumps(SWEEP))
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "s"), "--threads", "1"]) == 0
    assert "(shard 1/2)" in capsys.readouterr().out
    assert (tmp_path / "s" / "index.shard-1-of-2.jsonl").is_file()
    assert not (tmp_path / "s" / "index.shard-0-of-2.jsonl").exists()
    with pytest.raises(SpecError):
        shard_from_environment({"SLURM_PROCID": "x", "SLURM_NTASKS": "2"})


def test_a_shard_already_running_is_told_so_not_to_choose_another_folder(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / ".lock.shard-1-of-2").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    sweep = load_sweep(SWEEP)
    with pytest.raises(FileExistsError) as refused:
        run_sweep(sweep, folder, shard=(1, 2), show_progress=False)
    message = str(refused.value)
    assert "shard 1/2 of this sweep is already running" in message and f"process {os.getpid()}" in message
    assert "--status" in message and "choose another" not in message
