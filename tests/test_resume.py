"""Resuming a stopped run from its checkpoint: on the CPU the result is bit-identical to a run that
was never stopped (issue 16, for single runs)."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
from helpers import StopAt, resolved, start_cli, tiny_spec_dict
from safetensors.torch import load_file

import clipforge
from clipforge.cli import main

SPEC = tiny_spec_dict(
    steps=12,
    seeds=[0, 1],
    resolution=[{"step": 0, "size": 16}, {"step": 6, "size": 32}],
    callbacks=["metrics"],
)


@pytest.mark.parametrize("every, stop", [(4, 7), (3, 8), (6, 7)])
@pytest.mark.parametrize("reset_on_resize", [True, False])
def test_a_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, every, stop, reset_on_resize):
    spec = {**SPEC, "checkpoint_every": every, "optimizer": {"reset_on_resize": reset_on_resize}}
    whole = clipforge.invert(spec, tmp_path / "whole")
    stopped = clipforge.Engine(resolved(spec), out_dir=tmp_path / "b", callbacks=[StopAt(stop)]).run()
    assert stopped.interrupted and stopped.steps_done == stop
    resumed = clipforge.Engine(resolved(spec), out_dir=tmp_path / "b", resume=True).run()
    assert torch.equal(resumed.images, whole.images) and resumed.steps_done == 12
    checkpoint = stop // every * every
    assert resumed.metrics[0]["step"] == checkpoint + 1
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))  # the lines after the checkpoint were written once, again
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run["status"] == "finished" and run["resumed"][0]["from_step"] == checkpoint
    assert torch.equal(load_file(tmp_path / "b" / "images.safetensors")["images"], whole.images)


def test_resume_after_sigkill_from_the_command_line(tmp_path):
    """A real process killed mid-run, then ``clipforge invert --resume``: the same images as one run."""
    spec = {**SPEC, "steps": 400, "checkpoint_every": 5, "resolution": [{"step": 0, "size": 32}]}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    whole = start_cli("invert", str(path), "--out", str(tmp_path / "whole"))
    err = whole.communicate()[1]
    assert whole.returncode == 0, err
    killed = start_cli("invert", str(path), "--out", str(tmp_path / "b"), stdout=subprocess.DEVNULL)
    while True:  # until a checkpoint past step 10 is there
        try:
            if json.loads((tmp_path / "b" / "run.json").read_text()).get("steps_done", 0) >= 10:
                break
        except (OSError, ValueError):
            pass
        assert killed.poll() is None
    killed.kill()
    killed.wait()
    done = start_cli("invert", "--resume", str(tmp_path / "b"))
    err = done.communicate()[1]
    assert done.returncode == 0, err
    whole = load_file(tmp_path / "whole" / "images.safetensors")["images"]
    assert torch.equal(load_file(tmp_path / "b" / "images.safetensors")["images"], whole)


def test_what_cannot_be_resumed_is_refused(tmp_path, capsys):
    spec = {**SPEC, "checkpoint_every": 4}
    clipforge.invert(spec, tmp_path / "done")
    assert main(["invert", "--resume", str(tmp_path / "done")]) == 2
    assert "has finished: there is nothing to resume" in capsys.readouterr().err
    assert main(["invert", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "holds no run to resume" in capsys.readouterr().err

    clipforge.Engine(resolved(spec), out_dir=tmp_path / "early", callbacks=[StopAt(2)]).run()  # before any checkpoint
    assert main(["invert", "--resume", str(tmp_path / "early")]) == 2
    assert "stopped before its first checkpoint" in capsys.readouterr().err

    clipforge.Engine(resolved(spec), out_dir=tmp_path / "edited", callbacks=[StopAt(5)]).run()
    saved = json.loads((tmp_path / "edited" / "spec.json").read_text())
    (tmp_path / "edited" / "spec.json").write_text(json.dumps({**saved, "steps": 13}))
    assert main(["invert", "--resume", str(tmp_path / "edited")]) == 2
    assert "was written by a run of another spec" in capsys.readouterr().err
    assert json.loads((tmp_path / "edited" / "run.json").read_text())["status"] == "interrupted"  # untouched

    assert main(["invert", "spec.json", "--resume", str(tmp_path / "edited")]) == 2
    assert "--resume: continues the run" in capsys.readouterr().err


def test_the_pixel_parameterisation_can_start_from_an_image(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "red.png")
    spec = {
        **SPEC,
        "steps": 1,
        "parameterization": {"name": "pixel", "options": {"init_image": str(tmp_path / "red.png")}},
    }
    start = clipforge.Engine(resolved(spec)).build().param.image()
    assert start.shape == (4, 3, 16, 16)
    assert torch.allclose(start[:, 0], torch.ones(4, 16, 16)) and torch.allclose(
        start[:, 1:], torch.zeros(4, 2, 16, 16)
    )
    (tmp_path / "broken.png").write_text("not an image")
    path = tmp_path / "spec.json"
    path.write_text(
        json.dumps({**spec, "parameterization": {"name": "pixel", "options": {"init_image": "broken.png"}}})
    )
    assert main(["validate", str(path)]) == 2
    assert "parameterization.options.init_image" in capsys.readouterr().err


def test_init_image_and_prompt_images_resolve_against_the_spec_files_folder(tmp_path, monkeypatch):
    """One rule for every image a spec names: relative to the spec file's folder, whatever the
    working directory (before, ``init_image`` was read relative to the working directory)."""
    from PIL import Image

    folder = tmp_path / "study"
    folder.mkdir()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(folder / "red.png")
    spec = {
        **SPEC,
        "prompts": [{"image": "red.png"}],
        "parameterization": {"name": "pixel", "options": {"init_image": "red.png"}},
    }
    (folder / "spec.json").write_text(json.dumps(spec))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    resolved = clipforge.default_registry().resolve(clipforge.load_spec(folder / "spec.json"))
    expected = str((folder / "red.png").resolve())
    assert resolved.spec.prompts[0].image == expected
    assert resolved.components["parameterization"][0].options.init_image == expected
    # a spec given as a dict has no folder: the working directory, as before
    with pytest.raises(clipforge.SpecError, match="init_image"):
        clipforge.default_registry().resolve(clipforge.load_spec({**spec, "prompts": ["a cat"]}))
