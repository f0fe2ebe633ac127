"""What was accepted in silence, or left a folder nothing could use (issue: a weights tag for a
bundled model, a blank prompt, a prompt cut to the model's context, a seed given twice; a folder
killed between ``run.json`` and the first checkpoint; an empty or garbled lock file; a folder of
subfolders only; a sweep's refusal cut before its advice)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import warnings

import pydantic
import pytest
from helpers import dead_pid, start_cli, tiny_spec_dict, tiny_sweep_base

import clipforge
from clipforge import files, outputs
from clipforge.cli import main
from clipforge.errors import SpecError

TOY = {"name": "open_clip", "options": {"model": "toyworld-rn"}}


def problems(spec: dict) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as caught:
        clipforge.default_registry().resolve(clipforge.load_spec(spec))
    return caught.value.problems


# --------------------------------------------------------------------------- accepted silently


@pytest.mark.parametrize("tag", ["openai", "random", "laion2b_s34b_b88k"])
def test_pretrained_for_a_bundled_model_is_refused_naming_the_model(tmp_path, capsys, tag):
    out = tmp_path / "out"
    flags = ["--model", "toyworld-rn", "--pretrained", tag, "--steps", "1", "--copies", "1"]
    code = main(
        [
            "invert",
            "--prompt",
            "a red circle",
            *flags,
            "--set",
            'resolution=[{"step": 0, "size": 16}]',
            "--out",
            str(out),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "backbones[0].options.pretrained" in err and "'toyworld-rn'" in err and "its own weights" in err
    assert not out.exists()
    spec = tiny_spec_dict(backbones=[{"name": "open_clip", "options": {"model": "toyworld-vit", "pretrained": tag}}])
    ((path, message),) = problems(spec)
    assert path == "backbones[0].options.pretrained" and "'toyworld-vit'" in message


@pytest.mark.parametrize(
    "prompt, path",
    [
        ("   ", "prompts[1].text"),
        ("\t\n ", "prompts[1].text"),
        ({"text": " ", "label": "blank"}, "prompts[1].text"),
        ({"terms": ["a red circle", {"text": "  ", "weight": -1}]}, "prompts[1].terms[1].text"),
    ],
)
def test_a_whitespace_only_prompt_text_is_refused_with_its_path(prompt, path):
    with pytest.raises(SpecError) as caught:
        clipforge.load_spec(tiny_spec_dict(prompts=["a red circle", prompt]))
    ((where, message),) = caught.value.problems
    assert where == path and "only white space" in message


def test_a_whitespace_only_prompt_is_refused_from_the_command_line(tmp_path, capsys):
    flags = ["--model", "toyworld-rn", "--steps", "1", "--copies", "1", "--out", str(tmp_path / "out")]
    assert main(["invert", "--prompt", "a red circle", "--prompt", "  ", *flags]) == 2
    err = capsys.readouterr().err
    assert "prompts[1].text" in err and "only white space" in err
    assert not (tmp_path / "out").exists()


def test_a_seed_given_twice_is_refused_naming_it(tmp_path, capsys):
    out = str(tmp_path / "out")
    flags = ["--model", "toyworld-rn", "--steps", "1", "--copies", "1", "--seeds", "1,1", "--out", out]
    assert main(["invert", "--prompt", "a red circle", *flags]) == 2
    err = capsys.readouterr().err
    assert "seeds" in err and "seed 1 is given twice" in err
    assert not (tmp_path / "out").exists()
    ((path, message),) = problems(tiny_spec_dict(seeds=[4, 7, 2, 7, 4]))
    assert path == "seeds" and "seed 4 is given twice (seeds[0] and seeds[4])" in message
    assert "seed 7 is given twice (seeds[1] and seeds[3])" in message


def test_a_prompt_longer_than_a_bundled_models_context_is_warned_once_naming_what_is_dropped():
    backbone = clipforge.backbone_of("toyworld-rn")
    context = backbone.tokenizer.context_length
    long = "a red circle on a white background " * 3  # 21 words: with start and end, 23 tokens
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backbone.encode_text(["a red circle", long])
        backbone.encode_text([long])  # again: said once
    said = [str(w.message) for w in caught if "context length" in str(w.message)]
    assert len(said) == 1, said
    dropped = 23 - context
    assert "23 tokens" in said[0] and f"context length of {context}" in said[0]
    assert f"its last {dropped} tokens are dropped" in said[0] and "a red circle on a white" in said[0]


def test_a_prompt_longer_than_the_context_is_warned_once_in_a_run(tmp_path):
    import open_clip

    long = "a red circle next to a blue square " * 4
    tokens = len(open_clip.SimpleTokenizer().encode(long)) + 2  # with the start and end tokens
    spec = tiny_spec_dict(steps=1, prompts=["a red circle", long, {"text": long, "label": "again"}], callbacks=[])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clipforge.invert(spec)
    said = [str(w.message) for w in caught if "context length" in str(w.message)]
    assert len(said) == 1, said
    assert f"{tokens} tokens" in said[0] and f"its last {tokens - 16} tokens are dropped" in said[0]


# --------------------------------------------------------------------------- killed before the first checkpoint


def test_a_run_killed_after_run_json_and_before_its_first_checkpoint_starts_again_in_its_folder(tmp_path, capsys):
    """A real process SIGKILLed while it runs with no checkpoint yet: ``--resume`` says to start
    again, and starting again (the same spec, the same --out) works, in that folder."""
    spec = tiny_spec_dict(steps=5000, checkpoint_every=5000, checkpoint_seconds=None, callbacks=["metrics"])
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "b"
    killed = start_cli("invert", str(path), "--out", str(out), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text().strip():
        assert killed.poll() is None, killed.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    killed.kill()
    killed.wait()
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "running" and run["steps_done"] == 0
    assert not (out / "checkpoint.safetensors").exists() and (out / outputs.LOCK).exists()

    assert main(["invert", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "stopped before its first checkpoint" in err and f"--out {out}" in err
    with pytest.warns(UserWarning, match="died before its first checkpoint"):
        assert main(["invert", str(path), "--out", str(out), "--set", "steps=3"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["steps_done"] == 3 and "resumed" not in run
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]  # the killed run's lines went
    assert not (out / outputs.LOCK).exists()


def _killed_start(folder, *, run: bool = True, lock: dict | None = None, pid: int | None = None) -> None:
    """What a run killed before its first checkpoint leaves (its spec.json, its run.json saying
    running at step 0, its lock), made by hand."""
    folder.mkdir()
    me = files.this_process()
    pid = dead_pid() if pid is None else pid
    (folder / "spec.json").write_text(json.dumps(tiny_spec_dict()))
    if run:
        (folder / "run.json").write_text(
            json.dumps({"status": "running", "rows": [], "steps_done": 0, **me, "pid": pid})
        )
    (folder / "metrics.jsonl").write_text('{"step": 1}\n')
    (folder / outputs.LOCK).write_text(json.dumps(lock or {**me, "pid": pid}))


def test_a_folder_killed_before_run_json_is_started_again_too(tmp_path):
    _killed_start(tmp_path / "out", run=False)
    (tmp_path / "out" / "metrics.jsonl").unlink()
    with pytest.warns(UserWarning, match="died before its first checkpoint"):
        result = clipforge.invert(tiny_spec_dict(steps=2), tmp_path / "out")
    assert result.steps_done == 2
    assert json.loads((tmp_path / "out" / "run.json").read_text())["status"] == "finished"


def test_what_is_not_a_killed_start_is_still_refused(tmp_path):
    spec = tiny_spec_dict(steps=2)
    # its process is alive (this one, say): in use
    _killed_start(tmp_path / "live", pid=os.getpid())
    with pytest.raises(files.OutputExistsError, match="in use|in progress"):
        clipforge.invert(spec, tmp_path / "live")
    # its process ran on another host: it may be running there
    _killed_start(tmp_path / "other", lock={"pid": dead_pid(), "host": "another-host"})
    run = json.loads((tmp_path / "other" / "run.json").read_text())
    (tmp_path / "other" / "run.json").write_text(json.dumps({**run, "host": "another-host"}))
    with pytest.raises(files.OutputExistsError):
        clipforge.invert(spec, tmp_path / "other")
    # it got past a checkpoint: results to resume, never thrown away
    _killed_start(tmp_path / "checkpointed")
    (tmp_path / "checkpointed" / "checkpoint.safetensors").write_bytes(b"x")
    with pytest.raises(files.OutputExistsError, match="died"):
        clipforge.invert(spec, tmp_path / "checkpointed")
    # a folder of one's own with a spec.json in it (no lock): not a run's
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "spec.json").write_text("{}")
    with pytest.raises(files.OutputExistsError):
        clipforge.invert(spec, tmp_path / "mine")
    for name in ("live", "other", "checkpointed"):
        assert (tmp_path / name / "metrics.jsonl").read_text() == '{"step": 1}\n'  # untouched
    assert (tmp_path / "mine" / "spec.json").read_text() == "{}"


# --------------------------------------------------------------------------- lock files that cannot be read


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b"\x00\x00\x00", b'{"pid": 12', b"{}"])
def test_an_old_empty_or_garbled_lock_is_taken_over(tmp_path, content):
    lock = tmp_path / outputs.LOCK
    lock.write_bytes(content)
    old = time.time() - 3600
    os.utime(lock, (old, old))
    start = time.monotonic()
    files.take_lock(lock)
    assert time.monotonic() - start < 1.0  # an old one at once
    assert json.loads(lock.read_text()) == files.this_process()


@pytest.mark.parametrize("content", [b"", b"garbled"])
def test_a_new_empty_or_garbled_lock_is_taken_over_after_a_short_grace(tmp_path, monkeypatch, content):
    monkeypatch.setattr(files, "UNREADABLE_LOCK_GRACE", 0.5)
    lock = tmp_path / outputs.LOCK
    lock.write_bytes(content)
    start = time.monotonic()
    files.take_lock(lock)
    assert 0.4 <= time.monotonic() - start < 5
    assert json.loads(lock.read_text()) == files.this_process()


def test_a_lock_being_written_is_waited_for_not_taken_over(tmp_path, monkeypatch):
    """An empty lock that its process fills meanwhile (created with O_EXCL, then written): its holder
    is alive, and the folder is refused, naming it."""
    monkeypatch.setattr(files, "UNREADABLE_LOCK_GRACE", 5.0)
    lock = tmp_path / outputs.LOCK
    lock.write_bytes(b"")
    holder = json.dumps(files.this_process())
    code = f"import time; time.sleep(0.5); open({str(lock)!r}, 'w').write({holder!r})"
    filler = subprocess.Popen([sys.executable, "-c", code])
    try:
        with pytest.raises(files.FolderInUseError, match=f"in use by process {os.getpid()}"):
            files.take_lock(lock)
    finally:
        filler.wait()


@pytest.mark.parametrize("content", [b"", b"{garbled"])
def test_a_run_into_a_folder_with_an_old_unreadable_lock_runs(tmp_path, content):
    out = tmp_path / "out"
    out.mkdir()
    (out / outputs.LOCK).write_bytes(content)
    old = time.time() - 60
    os.utime(out / outputs.LOCK, (old, old))
    result = clipforge.invert(tiny_spec_dict(steps=1, callbacks=[]), out)
    assert result.steps_done == 1 and not (out / outputs.LOCK).exists()


def test_an_unreadable_lock_is_named_while_it_is_new():
    holder = {"lock_unreadable": "/x/.clipforge.lock", "stale": False}
    message = str(files.FolderInUseError(files.Path("/x"), holder))
    assert "None" not in message and "'/x/.clipforge.lock'" in message and "cannot be read" in message


# --------------------------------------------------------------------------- a folder of subfolders


@pytest.mark.parametrize("inside", ["images/old.png", "snapshots/step_100.png", "snapshots", "a/b/c/d.txt"])
def test_a_folder_holding_only_subfolders_is_not_empty(tmp_path, monkeypatch, inside):
    out = tmp_path / "out"
    (out / inside).parent.mkdir(parents=True)
    if "." in inside:
        (out / inside).write_text("an earlier run's")
    else:
        (out / inside).mkdir()
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    with pytest.raises(files.OutputExistsError, match="already exists"):
        clipforge.invert(tiny_spec_dict(steps=1, callbacks=[]), out)

    # nor is it taken, and emptied again, by a start that fails at once (as a run that made nothing is undone)
    def fails(self, start_step=0):
        raise RuntimeError("a start that fails")

    monkeypatch.setattr(clipforge.Engine, "build", fails)
    with pytest.raises(files.OutputExistsError):
        clipforge.invert(tiny_spec_dict(steps=1, callbacks=[]), out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before


# --------------------------------------------------------------------------- refusals in full


def test_a_sweeps_refusal_is_shown_whole_with_its_advice(tmp_path, capsys):
    grid = {"optimizer.lr": [0.1, 0.2], "optimizer.eps": [1e-8], "optimizer.grad_clip": [1.0], "copies": [1]}
    sweep = {"base": tiny_sweep_base(), "prompts": ["a red circle"], "seeds": 1, "grid": grid}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(sweep))
    out = str(tmp_path / ("a-sweep-folder-with-a-long-descriptive-name-" + "x" * 80))
    assert main(["sweep", str(path), "--out", out]) == 0
    capsys.readouterr()
    path.write_text(json.dumps({**sweep, "grid": {**grid, "optimizer.lr": [0.1, 0.3]}}))
    assert main(["sweep", str(path), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "more characters" not in err and "characters cut" not in err
    assert "there (grid values edited, reordered or replaced)" in err
    assert "use another --out, or undo the change (new prompts, seeds and grid values go at the end)" in err


def test_a_sweeps_refusal_of_callbacks_is_shown_whole(tmp_path, capsys):
    callbacks = ["metrics", "snapshots", "progress", "my_progress_reporter", {"name": "safety_screen"}]
    sweep = {"base": {**tiny_sweep_base(), "callbacks": callbacks}, "prompts": ["a red circle"], "seeds": 1}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(sweep))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "more characters" not in err
    assert "'safety_screen'" in err and "screen a sweep's images with an analysis such as `clipforge screen`)" in err


def test_a_huge_value_in_a_refusal_is_cut_and_its_advice_kept():
    error = SpecError([("grid.x", "cannot take " + "y" * 100_000 + "; give a number instead")])
    text = error.format()
    assert len(text) < 3000 and "characters cut" in text and text.endswith("; give a number instead")
    with pytest.raises(SpecError) as caught:
        clipforge.load_spec(tiny_spec_dict(steps="z" * 100_000))
    text = caught.value.format()
    assert len(text) < 3000 and text.startswith("steps:")


@pytest.mark.parametrize(
    "grid, says",
    [
        ({"optimizer.lr": [0.1, 0.05, 0.1]}, "gives the value 0.1 twice ([0] and [2])"),
        ({"optimizer.lr": [1, 1.0]}, "gives the value 1.0 twice ([0] and [1])"),
        ({"parameterization": [{"name": "pixel"}, {"name": "pixel"}]}, 'gives the value {"name": "pixel"} twice'),
    ],
)
def test_a_grid_value_given_twice_is_refused_naming_it(tmp_path, grid, says):
    """A repeated grid value made two grid points of one run under two labels."""
    from clipforge.sweep.spec import SweepSpec

    with pytest.raises(pydantic.ValidationError, match=re.escape(says)):
        SweepSpec.model_validate({"base": tiny_sweep_base(), "prompts": ["a red circle"], "grid": grid})
    SweepSpec.model_validate(
        {"base": tiny_sweep_base(), "prompts": ["a red circle"], "grid": {"optimizer.lr": [0.1, 0.2]}}
    )
