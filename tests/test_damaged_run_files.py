"""A run folder whose files were damaged or edited: ``--resume`` refuses it with an error that names
the file (never a bare SafetensorError, KeyError or AttributeError), and never resumes a tampered
checkpoint into other images or a run marked finished. Temporary files of killed writes go at the
next resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from helpers import StopAt, resolved, tiny_spec_dict
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import clipforge
from clipforge import outputs
from clipforge.cli import main

SPEC = tiny_spec_dict(
    steps=8,
    seeds=[0],
    prompts=["a red circle"],
    checkpoint_every=4,
    resolution=[{"step": 0, "size": 16}, {"step": 6, "size": 32}],
    callbacks=["metrics"],
)


def stopped_run(tmp_path: Path) -> Path:
    """A run interrupted at step 5, with its checkpoint of step 4."""
    out = tmp_path / "run"
    assert clipforge.Engine(resolved(SPEC), out_dir=out, callbacks=[StopAt(5)]).run().interrupted
    return out


def checkpoint_of(out: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = out / "checkpoint.safetensors"
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    return load_file(str(path)), metadata


def resume(out: Path, capsys) -> tuple[int, str]:
    code = main(["invert", "--resume", str(out)])
    return code, " ".join(capsys.readouterr().err.split())


def refused(out: Path, capsys, *expected: str) -> str:
    before = (out / "run.json").read_text()
    code, err = resume(out, capsys)
    assert code == 2, err
    assert "Traceback" not in err and "error:" in err
    for text in expected:
        assert text in err, err
    assert (out / "run.json").read_text() == before  # nothing changed
    assert not (out / outputs.LOCK).exists()  # and the folder is released
    return err


def damage(out: Path, how: str) -> None:
    path = out / "checkpoint.safetensors"
    tensors, metadata = checkpoint_of(out)
    meta = json.loads(metadata["clipforge"])
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00\x01 this is not a checkpoint " * 10)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "wrong shape":
        tensors["param.0"] = torch.zeros(1, 3, 8, 8)
        save_file(tensors, str(path), metadata=metadata)
    elif how == "no metadata":
        save_file(tensors, str(path))
    elif how == "metadata not JSON":
        save_file(tensors, str(path), metadata={"clipforge": "{step: 4"})
    elif how == "step not a number":
        save_file(tensors, str(path), metadata={"clipforge": json.dumps({**meta, "step": "4"})})
    elif how == "no generator":
        del tensors["generator.0"]
        save_file(tensors, str(path), metadata=metadata)
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    ["truncated", "garbage", "empty", "wrong shape", "no metadata", "metadata not JSON", "step not a number"]
    + ["no generator"],
)
def test_a_damaged_checkpoint_is_refused_naming_the_file(tmp_path, capsys, how):
    out = stopped_run(tmp_path)
    damage(out, how)
    refused(out, capsys, str(out / "checkpoint.safetensors"))


@pytest.mark.parametrize("step", [999, 8, 0, -1])
def test_a_checkpoint_whose_step_was_edited_out_of_the_run_is_refused(tmp_path, capsys, step):
    """Step 999 of an 8-step run would mark the run finished without running it."""
    out = stopped_run(tmp_path)
    tensors, metadata = checkpoint_of(out)
    meta = {**json.loads(metadata["clipforge"]), "step": step}
    save_file(tensors, str(out / "checkpoint.safetensors"), metadata={"clipforge": json.dumps(meta)})
    refused(out, capsys, str(out / "checkpoint.safetensors"), f"step {step}")
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"


def test_a_checkpoint_whose_step_was_edited_within_the_run_is_refused(tmp_path, capsys):
    """Step 2 instead of 4: Adam's own step count (4) says otherwise; resuming would give other images."""
    out = stopped_run(tmp_path)
    tensors, metadata = checkpoint_of(out)
    meta = {**json.loads(metadata["clipforge"]), "step": 2}
    save_file(tensors, str(out / "checkpoint.safetensors"), metadata={"clipforge": json.dumps(meta)})
    refused(out, capsys, str(out / "checkpoint.safetensors"), "step count")


def test_a_checkpoint_whose_size_was_edited_is_refused(tmp_path, capsys):
    out = stopped_run(tmp_path)
    tensors, metadata = checkpoint_of(out)
    meta = {**json.loads(metadata["clipforge"]), "size": 32, "resize_count": 1}
    save_file(tensors, str(out / "checkpoint.safetensors"), metadata={"clipforge": json.dumps(meta)})
    refused(out, capsys, str(out / "checkpoint.safetensors"), "size 32")


@pytest.mark.parametrize("dropped", ["adam.0.exp_avg", "adam.0.exp_avg_sq", "adam.0.step", "adam."])
def test_a_checkpoint_without_the_optimisers_state_is_refused(tmp_path, capsys, dropped):
    """Resuming without Adam's moments silently gives other images than the run would have."""
    out = stopped_run(tmp_path)
    tensors, metadata = checkpoint_of(out)
    tensors = {k: v for k, v in tensors.items() if not k.startswith(dropped)}
    save_file(tensors, str(out / "checkpoint.safetensors"), metadata=metadata)
    refused(out, capsys, str(out / "checkpoint.safetensors"), "optimiser")


def test_the_undamaged_checkpoint_still_resumes(tmp_path, capsys):
    out = stopped_run(tmp_path)
    code, err = resume(out, capsys)
    assert code == 0, err
    whole = clipforge.invert(SPEC, tmp_path / "whole")
    assert torch.equal(load_file(str(out / "images.safetensors"))["images"], whole.images)


@pytest.mark.parametrize(
    "content",
    ["[1, 2]", '"finished"', "{}", '{"status": 7, "rows": []}', '{"status": "interrupted"}', "null"],
)
def test_a_run_json_that_is_not_a_runs_record_is_named(tmp_path, capsys, content):
    out = stopped_run(tmp_path)
    (out / "run.json").write_text(content)
    refused(out, capsys, str(out / "run.json"))


@pytest.mark.parametrize("line", ["this is not json", "42", '{"loss": [1.0]}', '{"step": "3"}'])
def test_a_damaged_metrics_file_is_named_with_its_line(tmp_path, capsys, line):
    out = stopped_run(tmp_path)
    lines = (out / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines.insert(2, line + "\n")
    (out / "metrics.jsonl").write_text("".join(lines))
    code, err = resume(out, capsys)
    assert code != 0 and "Traceback" not in err
    assert str(out / "metrics.jsonl") in err and "line 3" in err, err
    assert "callbacks[0]: callback 'metrics'" in err, err  # and the component that read it
    assert not (out / outputs.LOCK).exists()
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"


def test_temporary_files_of_killed_writes_are_removed_at_the_next_resume(tmp_path, capsys):
    out = stopped_run(tmp_path)
    left = [
        out / f".checkpoint.safetensors.{os.getpid() + 100000}@host.tmp",
        out / ".run.json.123.tmp",
        out / "images" / ".00-a-red-circle-seed0.png.4567@elsewhere.tmp",
        out / ".metrics.jsonl.tmp",
    ]
    for path in left:
        path.write_bytes(b"half a file")
    kept = out / "notes.tmp"  # not a temporary name of clipforge's
    kept.write_text("mine")
    code, err = resume(out, capsys)
    assert code == 0, err
    assert not any(path.exists() for path in left)
    assert kept.read_text() == "mine"


def test_temporary_names_say_which_process_writes_them(tmp_path):
    seen = []
    with outputs.atomic_path(tmp_path / "x.json") as tmp:
        seen.append(tmp.name)
        tmp.write_text("{}")
    import socket

    assert seen == [f".x.json.{os.getpid()}@{socket.gethostname()}.tmp"]
    # a shared folder (a sweep's) keeps those of live processes and other hosts
    live = tmp_path / f".a.png.{os.getpid()}@{socket.gethostname()}.tmp"
    other_host = tmp_path / ".b.png.1@another-host.tmp"
    from helpers import dead_pid

    dead = tmp_path / f".c.png.{dead_pid()}@{socket.gethostname()}.tmp"
    for path in (live, other_host, dead):
        path.write_text("x")
    assert outputs.remove_temporary_files(tmp_path, only_dead=True) == [dead]
    assert live.exists() and other_host.exists()
