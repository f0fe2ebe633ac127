"""Checkpoints by wall time as well as by steps (issue 23): a killed run loses at most
``checkpoint_seconds`` of work, whatever its length, and a checkpoint never changes the images."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import torch
from helpers import resolved, start_cli, tiny_spec_dict
from safetensors.torch import load_file

import clipforge
from clipforge import Callback, Options, SpecError
from clipforge import outputs as outputs_module
from clipforge.cli import main

SPEC = tiny_spec_dict(
    steps=6,
    seeds=[0, 1],
    resolution=[{"step": 0, "size": 16}, {"step": 3, "size": 32}],
    callbacks=["metrics"],
    checkpoint_every=10**6,  # never by steps: every checkpoint below is one by time
)


class Slow(Callback):
    """Sleeps after every step (so that time passes between steps); Ctrl-C after ``stop``."""

    name = "slow"

    def __init__(self, seconds: float, stop: int | None = None):
        super().__init__(Options())
        self.seconds, self.stop = seconds, stop

    def on_step_end(self, run, state):
        time.sleep(self.seconds)
        if state.step == self.stop:
            raise KeyboardInterrupt


def test_checkpoint_seconds_defaults_to_five_minutes_and_is_validated():
    assert clipforge.load_spec(tiny_spec_dict()).checkpoint_seconds == 300
    assert clipforge.load_spec(tiny_spec_dict(checkpoint_seconds=None)).checkpoint_seconds is None
    assert clipforge.load_spec(tiny_spec_dict(checkpoint_seconds=0.5)).checkpoint_seconds == 0.5
    for bad in (0, -1, True, False, float("nan"), float("inf"), "soon"):
        with pytest.raises(SpecError, match=r"checkpoint_seconds"):
            clipforge.load_spec(tiny_spec_dict(checkpoint_seconds=bad))
    # how often a run checkpoints does not change what it computes
    often = clipforge.load_spec(tiny_spec_dict(checkpoint_seconds=1))
    assert often.hash() == clipforge.load_spec(tiny_spec_dict()).hash()


def test_checkpoints_by_time_do_not_change_the_images(tmp_path, monkeypatch):
    written = []
    real = outputs_module.write_checkpoint

    def spy(out_dir, tensors, meta):
        written.append(meta["step"])
        real(out_dir, tensors, meta)

    monkeypatch.setattr(outputs_module, "write_checkpoint", spy)
    plain = clipforge.invert({**SPEC, "checkpoint_seconds": None}, tmp_path / "plain")
    assert written == []  # neither by steps nor by time
    timed = clipforge.Engine(
        resolved({**SPEC, "checkpoint_seconds": 0.01}), out_dir=tmp_path / "timed", callbacks=[Slow(0.02)]
    )
    result = timed.run()
    assert written == [1, 2, 3, 4, 5]  # every step took longer than 0.01 s; none at the end (the results are)
    assert torch.equal(result.images, plain.images)


@pytest.mark.parametrize("stop", [4, 5])  # the last checkpoint before the resize at step 3, or after it
def test_a_run_resumed_from_a_checkpoint_by_time_is_bit_identical(tmp_path, stop):
    spec = {**SPEC, "checkpoint_seconds": 0.01}
    whole = clipforge.invert({**spec, "checkpoint_seconds": None}, tmp_path / "whole")
    stopped = clipforge.Engine(resolved(spec), out_dir=tmp_path / "b", callbacks=[Slow(0.02, stop=stop)]).run()
    assert stopped.interrupted and stopped.steps_done == stop
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run["status"] == "interrupted"
    resumed = clipforge.Engine(resolved(spec), out_dir=tmp_path / "b", resume=True).run()
    assert resumed.metrics[0]["step"] == stop  # from the checkpoint of the step before the Ctrl-C
    assert resumed.metrics[0]["size"] == 32
    assert torch.equal(resumed.images, whole.images) and resumed.steps_done == 6


def test_the_checkpoint_seconds_flag(tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**SPEC, "callbacks": []}))
    assert main(["invert", str(path), "--out", str(tmp_path / "a"), "--checkpoint-seconds", "0.5"]) == 0
    assert json.loads((tmp_path / "a" / "spec.json").read_text())["checkpoint_seconds"] == 0.5
    for bad in ("0", "-2", "nan", "inf", "true", "soon"):
        assert main(["invert", str(path), "--out", str(tmp_path / "b"), "--checkpoint-seconds", bad]) == 2, bad
        assert "checkpoint_seconds" in capsys.readouterr().err, bad
        assert not (tmp_path / "b").exists()
    assert main(["invert", str(path), "--out", str(tmp_path / "b"), "--checkpoint-every", "0"]) == 2
    assert "checkpoint_every" in capsys.readouterr().err  # 0 is refused, not taken for "not given"
    assert main(["invert", "--resume", str(tmp_path / "a"), "--checkpoint-seconds", "5"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_a_sigkill_loses_at_most_checkpoint_seconds_of_a_long_run(tmp_path):
    """A real process with a step count whose first checkpoint by steps lies far away, killed once a
    checkpoint by time is there; ``--resume`` finishes it with the images of an unbroken run."""
    spec = {
        **SPEC,
        "steps": 300,
        "prompts": ["a red circle"],
        "seeds": [0],
        "copies": 2,
        "resolution": [{"step": 0, "size": 16}],
        "checkpoint_seconds": 0.2,
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    killed = start_cli("invert", str(path), "--out", str(tmp_path / "b"), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    steps = 0
    while not steps:  # until the first checkpoint (by time: by steps there is none before the end)
        assert killed.poll() is None, killed.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no checkpoint by time came"
        try:
            steps = json.loads((tmp_path / "b" / "run.json").read_text()).get("steps_done", 0)
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    killed.kill()
    killed.wait()
    assert 0 < steps < 300, "the run finished before the kill"
    assert (tmp_path / "b" / "checkpoint.safetensors").is_file()
    assert json.loads((tmp_path / "b" / "run.json").read_text())["status"] == "running"  # as the kill left it
    done = start_cli("invert", "--resume", str(tmp_path / "b"))
    err = done.communicate()[1]
    assert done.returncode == 0, err[-2000:]
    whole = start_cli("invert", str(path), "--out", str(tmp_path / "whole"))
    err = whole.communicate()[1]
    assert whole.returncode == 0, err[-2000:]
    whole = load_file(tmp_path / "whole" / "images.safetensors")["images"]
    assert torch.equal(load_file(tmp_path / "b" / "images.safetensors")["images"], whole)
    assert json.loads((tmp_path / "b" / "run.json").read_text())["resumed"][0]["from_step"] == steps
