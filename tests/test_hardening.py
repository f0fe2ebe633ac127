"""What a kill, a second process or a careless option cannot do (issue 15): lose every image, leave a
run that looks alive, share an output folder, write outside it, or finish "successfully" on NaN.

The kill tests send real signals to a real ``clipforge invert`` process."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import capture_parts, default_signals, resolved, start_cli, tiny_spec_dict
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

import clipforge
from clipforge import Callback, Options, SpecError, invert
from clipforge.cli import main
from clipforge.outputs import LOCK, describe_folder
from clipforge.step import RunParts

LONG = tiny_spec_dict(
    steps=100_000, checkpoint_every=3, resolution=[{"step": 0, "size": 32}], callbacks=["metrics"], copies=2
)


def start(tmp_path: Path, spec: dict, out: str = "out") -> subprocess.Popen:
    path = tmp_path / f"{out}.json"
    path.write_text(json.dumps(spec))
    return start_cli("invert", str(path), "--out", str(tmp_path / out), preexec_fn=default_signals)


def wait_for_steps(run_dir: Path, steps: int, process: subprocess.Popen, timeout: float = 120) -> dict:
    """run.json once it says at least ``steps`` steps were checkpointed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            run = json.loads((run_dir / "run.json").read_text())
            if run.get("steps_done", 0) >= steps:
                return run
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of {steps} steps in {timeout} s")


def assert_whole_results(run_dir: Path, rows: int) -> None:
    """Every result file there is whole: PNGs decode, tensors load, JSON parses."""
    pngs = sorted((run_dir / "images").glob("*.png"))
    assert len(pngs) == rows
    for png in pngs:
        with Image.open(png) as image:
            image.load()
    assert load_file(run_dir / "images.safetensors")["images"].shape[0] == rows
    json.loads((run_dir / "run.json").read_text())
    json.loads((run_dir / "spec.json").read_text())


def test_sigkill_loses_at_most_the_steps_since_the_last_checkpoint(tmp_path):
    process = start(tmp_path, LONG)
    run_dir = tmp_path / "out"
    wait_for_steps(run_dir, 6, process)
    process.kill()
    process.wait(timeout=30)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "running" and run["pid"] == process.pid and run["steps_done"] >= 6
    assert_whole_results(run_dir, 4)
    with safe_open(str(run_dir / "checkpoint.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["clipforge"])
        keys = set(f.keys())
    # the checkpoint is written just before the images and run.json: at most one interval ahead of them
    assert meta["step"] in (run["steps_done"], run["steps_done"] + 3) and meta["step"] % 3 == 0
    assert {"param.0", "adam.0.exp_avg", "adam.0.exp_avg_sq", "generator.0", "generator.3"} <= keys
    # the dead run is recognised as dead, and its folder is not reused
    assert "process died" in describe_folder(run_dir)
    code = main(["invert", str(tmp_path / "out.json"), "--out", str(run_dir)])
    assert code == 2


def test_sigterm_stops_and_saves_like_ctrl_c(tmp_path):
    process = start(tmp_path, LONG)
    run_dir = tmp_path / "out"
    wait_for_steps(run_dir, 3, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "interrupted" and run["steps_done"] >= 3
    assert_whole_results(run_dir, 4)
    assert not (run_dir / LOCK).exists() and "interrupted at step" in err


def test_a_second_ctrl_c_during_the_save_does_not_break_it(tmp_path):
    process = start(tmp_path, LONG)
    run_dir = tmp_path / "out"
    wait_for_steps(run_dir, 3, process)
    process.send_signal(signal.SIGINT)
    time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "interrupted"
    assert_whole_results(run_dir, 4)


def test_ctrl_c_reaches_the_run_when_the_tests_were_started_ignoring_it(tmp_path):
    """From a shell that ignores SIGINT (a background job), the child would inherit the ignoring and
    the Ctrl-C tests would wait for ever: the tests' children get SIGINT's default back."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        process = start(tmp_path, LONG)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        wait_for_steps(tmp_path / "out", 3, process)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert json.loads((tmp_path / "out" / "run.json").read_text())["status"] == "interrupted"


def test_two_processes_never_share_an_output_folder(tmp_path):
    spec = tiny_spec_dict(steps=30, callbacks=["metrics"])
    first, second = start(tmp_path, spec, "a"), None
    # the second one is given the first one's folder, started at once
    (tmp_path / "b.json").write_text(json.dumps(spec))
    second = start_cli("invert", str(tmp_path / "b.json"), "--out", str(tmp_path / "a"))
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in (first, second)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "already exists" in refused or "is in use by process" in refused
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 31))  # one run's lines only


def test_a_folder_claimed_by_another_process_is_refused(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / LOCK).write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    with pytest.raises(FileExistsError, match="is in use by process"):
        invert(tiny_spec_dict(steps=1), folder)
    assert sorted(p.name for p in folder.iterdir()) == [LOCK]


def test_default_folders_differ_for_runs_that_differ_in_any_setting(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(tiny_spec_dict(steps=1)))
    assert main(["invert", str(path)]) == 0
    assert main(["invert", str(path), "--set", "log_every=2"]) == 0  # not the same folder
    assert len(list((tmp_path / "runs").iterdir())) == 2
    assert main(["invert", str(path)]) == 2  # the very same run: its folder is never overwritten


# --------------------------------------------------------------------------- paths


@pytest.mark.parametrize("name", ["../victim.json", "/tmp/victim.json", "a/../../victim.json", "~/victim", ""])
@pytest.mark.parametrize("option", [("metrics", "filename"), ("safety_screen", "report")])
def test_file_name_options_cannot_leave_the_output_folder(tmp_path, capsys, name, option):
    callback, field = option
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(tiny_spec_dict(callbacks=[{"name": callback, "options": {field: name}}])))
    assert main(["validate", str(path)]) == 2
    assert f"callbacks[0].options.{field}" in capsys.readouterr().err


def test_output_path_resolves_inside_the_folder_only(tmp_path):
    run = clipforge.RunInfo(
        spec=None, rows=[], device=torch.device("cpu"), out_dir=tmp_path, spec_hash="", total_steps=1
    )
    assert run.output_path("sub/metrics.jsonl") == (tmp_path / "sub" / "metrics.jsonl").resolve()
    for bad in ("../x", "/etc/passwd", "."):
        with pytest.raises(ValueError, match="inside the output folder"):
            run.output_path(bad)


# --------------------------------------------------------------------------- numbers


def test_a_loss_that_becomes_nan_stops_the_run_naming_the_step(tmp_path, monkeypatch):
    built = capture_parts(monkeypatch)

    class Poison(Callback):
        name = "poison"

        def on_step_end(self, run, state):
            if state.step == 2:
                with torch.no_grad():
                    built[-1].param.parameters()[0].fill_(float("nan"))

    poison = Poison(Options())
    engine = clipforge.Engine(
        resolved(tiny_spec_dict(steps=6, callbacks=["metrics"])), out_dir=tmp_path / "out", callbacks=[poison]
    )
    with pytest.raises(FloatingPointError, match=r"loss became nan at step 3 \(image 00-a-red-circle-seed0"):
        engine.run()
    run = json.loads((tmp_path / "out" / "run.json").read_text())  # valid JSON: no bare NaN
    assert run["status"] == "failed" and "at step 3" in run["error"] and run["steps_done"] == 3
    assert run["final"]["loss"] == [None] * 4


@pytest.mark.parametrize(
    "change, where",
    [
        ({"steps": 10**12}, "steps"),
        ({"steps": True}, "steps"),
        ({"copies": 10**6}, "copies"),
        ({"resolution": [{"step": 0, "size": 100_000}]}, "resolution[0].size"),
        ({"prompts": [{"text": "a", "weight": float("nan")}]}, "prompts[0].weight"),
        ({"optimizer": {"lr": float("inf")}}, "optimizer.lr"),
        ({"optimizer": {"betas": [2, 0]}}, "optimizer.betas"),
        ({"regularizers": [{"name": "tv", "options": {"weight": float("nan")}}]}, "regularizers[0].options.weight"),
        ({"seeds": [True]}, "seeds"),
    ],
)
def test_nonsense_numbers_are_refused_before_anything_runs(tmp_path, change, where):
    with pytest.raises(SpecError) as info:
        invert(tiny_spec_dict(**change), tmp_path / "out")
    assert any(path == where for path, _ in info.value.problems), info.value.problems
    assert not (tmp_path / "out").exists()


def test_a_negative_tv_weight_is_refused():
    with pytest.raises(SpecError, match=r"regularizers\[0\]\.options\.weight"):
        clipforge.default_registry().resolve(
            clipforge.load_spec(tiny_spec_dict(regularizers=[{"name": "tv", "options": {"weight": -1}}]))
        )


# --------------------------------------------------------------------------- the safety screen fails closed


def test_the_screen_refuses_a_nan_threshold():
    with pytest.raises(SpecError, match=r"callbacks\[0\]\.options\.threshold"):
        clipforge.default_registry().resolve(
            clipforge.load_spec(
                tiny_spec_dict(callbacks=[{"name": "safety_screen", "options": {"threshold": float("nan")}}])
            )
        )


@pytest.mark.parametrize("action", ["blur", "withhold", "flag"])
def test_an_image_the_screen_cannot_score_is_withheld(action, monkeypatch):
    registry = clipforge.default_registry()
    screen = registry.build("callback", {"name": "safety_screen", "options": {"action": action, "threshold": 0.5}})
    scores = torch.tensor([0.0, float("nan"), 0.9, 0.1])
    monkeypatch.setattr(screen, "scores", lambda images: (scores, torch.zeros(4, dtype=torch.long)))
    screen.judge = object()  # "during a run"
    rows = [clipforge.Row(index=i, prompt_index=0, seed=i, label="p", slug=f"s{i}") for i in range(4)]
    run = clipforge.RunInfo(spec=None, rows=rows, device=torch.device("cpu"), out_dir=None, spec_hash="", total_steps=1)
    out = screen.screen(run, torch.rand(4, 3, 8, 8), 1, final=True)
    assert out is not None and bool(out.withheld[1])  # never shown, whatever the action
    assert [r["flagged"] for r in screen.records] == [False, True, True, False]
    assert screen.records[1]["score"] is None and screen.records[1]["unscored"] is True
    assert bool(out.withheld[2]) == (action == "withhold")


def test_a_full_disk_leaves_no_empty_or_half_file_and_says_failed(tmp_path, monkeypatch):
    """PNG writes start failing (ENOSPC) at the final save: what was written before stays whole."""
    import clipforge.images as images

    real_to_pil, calls = images.to_pil, {"n": 0}

    class FullDisk:
        def __init__(self, image):
            self.image = image

        def save(self, path, **kwargs):
            calls["n"] += 1
            if calls["n"] > 8:  # two checkpoints of four images went through; then the disk is full
                Path(path).write_bytes(b"\x89PNG")  # a few bytes made it, then the write failed
                raise OSError(28, "No space left on device")
            self.image.save(path, **kwargs)

    monkeypatch.setattr(images, "to_pil", lambda image: FullDisk(real_to_pil(image)))
    with pytest.raises(OSError, match="No space left"):
        invert(tiny_spec_dict(steps=6, checkpoint_every=2, callbacks=[]), tmp_path / "out")
    out = tmp_path / "out"
    assert not list(out.rglob("*.tmp")) and all(p.stat().st_size > 100 for p in (out / "images").glob("*.png"))
    assert_whole_results(out, 4)  # the last checkpoint's images
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed" and "No space left" in run["error"] and run["steps_done"] == 4


def test_a_run_failing_in_its_first_step_leaves_nothing(tmp_path, monkeypatch):
    def out_of_memory(self, optimizer, ctx):
        raise torch.OutOfMemoryError("CUDA out of memory (pretend)")

    monkeypatch.setattr(RunParts, "step", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        invert(tiny_spec_dict(steps=5), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()  # a folder that was there (empty) stays, empty
    with pytest.raises(torch.OutOfMemoryError):
        invert(tiny_spec_dict(steps=5), tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []


def test_warnings_quoting_user_input_are_escaped_and_cut(tmp_path, capsys):
    spec = tiny_spec_dict(
        steps=1,
        callbacks=[],
        backbones=[{"name": "open_clip", "options": {"model": "toyworld-rn"}}],
        prompts=["a \x1b[31mred " + " ".join("q" + "".join(w) for w in itertools.product("xyzw", repeat=6))],
    )
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    with pytest.warns(UserWarning, match="vocabulary") as caught:
        assert main(["invert", str(path), "--out", str(tmp_path / "out")]) == 0
    message = str(next(w.message for w in caught if "vocabulary" in str(w.message)))
    assert "\x1b" not in message and "and 4077 more" in message and len(message) < 1200


def test_printable_escapes_control_characters_and_cuts():
    assert clipforge.printable("a\x1b[31mred\x07") == "a\\x1b[31mred\\x07"
    assert clipforge.printable("x" * 500, 100) == "x" * 100 + "... (400 more characters)"
    assert clipforge.printable("line one\nline two") == "line one\nline two"  # newlines stay
