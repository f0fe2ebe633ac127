"""Guards that a broken variant of the code slipped past (issue 23's 29 survivors): each test here
fails if its guard is loosened or dropped. Limits at exactly their bounds (a tenfold loosening
fails), ``true`` for optional numbers, an infinite loss, resuming after a resize, where files are
written (a temporary name and a rename), which processes hold a lock, paths by path not by prefix."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
from helpers import StopAt, registry_with, resolved, tiny_spec_dict

import clipforge
from clipforge import SpecError, outputs
from clipforge.components import RunInfo
from clipforge.spec import LIMITS, parse_spec


def refused(data: dict, where: str) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec({"prompts": ["a"], **data})
    assert any(path == where for path, _ in caught.value.problems), caught.value.problems
    return str(caught.value)


@pytest.mark.parametrize(
    "key, bound",
    [("copies", 1024), ("steps", 1_000_000)],
)
def test_a_limit_holds_at_exactly_its_bound(key, bound):
    assert LIMITS[key] == bound  # the README documents these numbers
    parse_spec({"prompts": ["a"], key: bound})
    refused({key: bound + 1}, key)


def test_the_size_limit_holds_at_exactly_its_bound():
    assert LIMITS["size"] == 4096
    parse_spec({"prompts": ["a"], "resolution": [{"step": 0, "size": 4096}]})
    refused({"resolution": [{"step": 0, "size": 4097}]}, "resolution[0].size")


def test_prompts_times_seeds_holds_at_exactly_its_bound():
    assert LIMITS["images"] == 100_000
    parse_spec({"prompts": ["a"] * 100, "seeds": list(range(1000))})
    message = refused({"prompts": ["a"] * 100, "seeds": list(range(1001))}, "")
    assert "100 prompts x 1001 seeds = 100100 images in one run; at most 100000" in message


@pytest.mark.parametrize(
    "data, where",
    [
        ({"checkpoint_every": True}, "checkpoint_every"),
        ({"checkpoint_every": False}, "checkpoint_every"),
        ({"checkpoint_seconds": True}, "checkpoint_seconds"),
        ({"optimizer": {"grad_clip": True}}, "optimizer.grad_clip"),
        ({"performance": {"chunk_copies": True}}, "performance.chunk_copies"),
    ],
)
def test_true_is_refused_for_optional_numbers(data, where):
    """``true`` would mean 1 (a checkpoint every step, a clip at 1): an optional number is still a number."""
    assert "not true or false" in refused(data, where)


class InfiniteFromStep3(clipforge.Regularizer):
    name = "infinite_from_step_3"

    def __init__(self, options):
        super().__init__(options)
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        values = images.mean(dim=(1, 2, 3)) * 0
        if self.calls >= 3:
            values = values + torch.tensor([float("inf")] + [0.0] * (images.shape[0] - 1))
        return values


def test_an_infinite_loss_stops_the_run_as_nan_does(tmp_path):
    registry = registry_with(InfiniteFromStep3)
    spec = tiny_spec_dict(steps=6, callbacks=["metrics"], regularizers=["infinite_from_step_3"])
    with pytest.raises(FloatingPointError, match=r"loss became inf at step 3 \(image 00-a-red-circle-seed0\)"):
        clipforge.Engine(resolved(spec, registry), out_dir=tmp_path / "out").run()
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["status"] == "failed" and run["steps_done"] == 3


@pytest.mark.parametrize("reset_on_resize", [True, False])
def test_a_resume_from_a_checkpoint_after_a_resize_is_bit_identical(tmp_path, reset_on_resize):
    """The checkpoint at step 4 is after the resize at step 2 (the other resume tests checkpoint
    before it): the resumed run must grow its image to the checkpoint's size and go on counting
    resizes from there (the jitter doubles its range at each resize)."""
    spec = tiny_spec_dict(
        steps=8,
        checkpoint_every=4,
        callbacks=[],
        resolution=[{"step": 0, "size": 16}, {"step": 2, "size": 24}, {"step": 6, "size": 32}],
        augmentations=[{"name": "jitter", "options": {"limit": 1, "double_on_resize": True}}, "color_shift"],
        optimizer={"reset_on_resize": reset_on_resize},
    )
    whole = clipforge.invert(spec, tmp_path / "whole")
    stopped = clipforge.Engine(resolved(spec), out_dir=tmp_path / "b", callbacks=[StopAt(5)]).run()
    assert stopped.interrupted and stopped.steps_done == 5
    from safetensors import safe_open

    with safe_open(str(tmp_path / "b" / "checkpoint.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["clipforge"])
    assert (meta["step"], meta["size"], meta["resize_count"]) == (4, 24, 1)
    resumed = clipforge.Engine(resolved(spec), out_dir=tmp_path / "b", resume=True).run()
    assert torch.equal(resumed.images, whole.images)


def test_a_lock_whose_process_cannot_be_signalled_is_alive(monkeypatch):
    """``kill(pid, 0)`` raises PermissionError for another user's live process: not a dead one."""

    def no_permission(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", no_permission)
    assert outputs.process_alive({"pid": 12345, "host": socket.gethostname()}) is True


def test_a_lock_from_another_host_is_never_taken_over(tmp_path):
    from helpers import dead_pid

    lock = tmp_path / outputs.LOCK
    lock.write_text(json.dumps({"pid": dead_pid(), "host": "another-host"}))  # its pid is dead here, not there
    with pytest.raises(outputs.OutputExistsError, match="is in use by process .* on another-host"):
        outputs.take_lock(lock)
    assert json.loads(lock.read_text())["host"] == "another-host"


def test_a_running_run_from_another_host_is_not_resumed(tmp_path, capsys):
    from helpers import dead_pid

    out = tmp_path / "out"
    spec = tiny_spec_dict(steps=8, checkpoint_every=4, callbacks=[])
    clipforge.Engine(resolved(spec), out_dir=out, callbacks=[StopAt(5)]).run()
    run = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**run, "status": "running", "pid": dead_pid(), "host": "another-host"}))
    from clipforge.cli import main

    assert main(["invert", "--resume", str(out)]) == 2
    assert "may still be in progress" in capsys.readouterr().err


def test_checkpoints_json_and_pngs_are_written_under_a_temporary_name_and_renamed(tmp_path, monkeypatch):
    renamed: list[tuple[str, str]] = []
    real = os.replace

    def recording(src, dst):
        renamed.append((os.path.basename(src), os.path.basename(dst)))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", recording)
    outputs.write_checkpoint(tmp_path, {"x": torch.zeros(2)}, {"step": 1})
    outputs.write_json(tmp_path / "run.json", {"a": 1})
    outputs.save_png(torch.zeros(3, 4, 4), tmp_path / "x.png")
    host = socket.gethostname()
    assert renamed == [
        (f".checkpoint.safetensors.{os.getpid()}@{host}.tmp", "checkpoint.safetensors"),
        (f".run.json.{os.getpid()}@{host}.tmp", "run.json"),
        (f".x.png.{os.getpid()}@{host}.tmp", "x.png"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.safetensors", "run.json", "x.png"]


@pytest.mark.parametrize("name", ["../out-evil/x", "../out/../out-evil/x", "/tmp/x", ".."])
def test_output_path_is_checked_by_path_not_by_its_string(tmp_path, name):
    """A sibling whose name starts like the folder's (``out-evil`` beside ``out``) is outside it."""
    out = tmp_path / "out"
    out.mkdir()
    info = RunInfo(
        spec=parse_spec({"prompts": ["a"]}),
        rows=[],
        device=torch.device("cpu"),
        out_dir=out,
        spec_hash="x",
        total_steps=1,
    )
    with pytest.raises(ValueError, match="is not a file name inside the output folder"):
        info.output_path(name)
    assert not (tmp_path / "out-evil").exists()
    assert info.output_path("sub/ok.txt") == (out / "sub" / "ok.txt").resolve()
