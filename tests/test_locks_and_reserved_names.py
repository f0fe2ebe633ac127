"""What a hostile user's tries found (issue 23): two processes taking over one dead lock, a
component's file named like the run's own files, an empty or dangling ``--out``."""

from __future__ import annotations

import json
import os
import threading

import pytest
from helpers import dead_pid, tiny_spec_dict

import clipforge
from clipforge import files, outputs
from clipforge.cli import main


def test_only_one_of_several_takes_over_a_dead_lock(tmp_path, monkeypatch):
    """Six claimants that all find the lock of a dead process at the same moment: one takes it over,
    the others are refused (they see it held by the one that did). Every claimant must report back:
    one that died of another error (two writing one temporary file, without the folder's lock) is a
    failure, not one fewer claimant."""
    lock = tmp_path / outputs.LOCK
    dead = {**files.this_process(), "pid": dead_pid()}
    lock.write_text(json.dumps(dead))
    claimants = 6
    together = threading.Barrier(claimants)
    real = files.process_alive

    def slow_alive(record):
        if record.get("pid") == dead["pid"]:
            try:  # every claimant has read the dead lock before any acts on it (where they can)
                together.wait(timeout=1)
            except threading.BrokenBarrierError:
                pass
        return real(record)

    monkeypatch.setattr(files, "process_alive", slow_alive)
    results: dict[int, str] = {}

    def claim(k: int) -> None:
        try:
            files.take_lock(lock)
            results[k] = "took it"
        except files.FolderInUseError as exc:
            results[k] = f"refused: {exc}"
        except BaseException as exc:  # any other end is reported, and fails below
            results[k] = f"{type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=claim, args=(k,)) for k in range(claimants)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a claimant never came back"
    assert sorted(results) == list(range(claimants)), results  # every claimant reported back
    outcomes = list(results.values())
    assert outcomes.count("took it") == 1, results
    refused = [r for r in outcomes if r != "took it"]
    held = f"{str(tmp_path)!r} already exists and is in use by process {os.getpid()} on {files.this_process()['host']}"
    assert len(refused) == claimants - 1 and all(r.startswith("refused: ") and held in r for r in refused), results
    assert json.loads(lock.read_text()) == files.this_process()
    assert not [p.name for p in tmp_path.iterdir() if p.name != outputs.LOCK]  # no temporary file left


def test_a_dead_lock_is_still_taken_over_and_a_live_one_is_not(tmp_path):
    lock = tmp_path / outputs.LOCK
    lock.write_text(json.dumps({**files.this_process(), "pid": dead_pid()}))
    files.take_lock(lock)
    assert json.loads(lock.read_text()) == files.this_process()
    with pytest.raises(files.OutputExistsError, match=f"is in use by process {os.getpid()}"):
        files.take_lock(lock)
    assert not [p for p in tmp_path.iterdir() if p.name != outputs.LOCK]  # no temporary file left


@pytest.mark.parametrize(
    "name",
    [
        "spec.json",
        "run.json",
        "images",
        "images/metrics.jsonl",
        "IMAGES/x",
        "./checkpoint.safetensors",
        "images.safetensors",
        "snapshots/m.jsonl",
        ".clipforge.lock",
        "index.html",
        ".run.json.123.tmp",
        ".",
    ],
)
@pytest.mark.parametrize("callback, field", [("metrics", "filename"), ("safety_screen", "report")])
def test_a_components_file_may_not_be_one_of_the_runs_own(tmp_path, capsys, name, callback, field):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(tiny_spec_dict(callbacks=[{"name": callback, "options": {field: name}}])))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"callbacks[0].options.{field}" in err
    assert "one of the run's own files" in err or "must name a file inside" in err


def test_a_metrics_file_in_a_subfolder_of_its_own_is_fine(tmp_path):
    spec = tiny_spec_dict(steps=2, callbacks=[{"name": "metrics", "options": {"filename": "logs/spec.json"}}])
    clipforge.invert(spec, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "spec.json").read_text())["steps"] == 2  # the run's spec is whole
    assert len((tmp_path / "out" / "logs" / "spec.json").read_text().splitlines()) == 2


def _spec(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(tiny_spec_dict(steps=1, callbacks=[])))
    return path


@pytest.mark.parametrize("out", ["", "  "])
def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep.json"
    base = {k: v for k, v in tiny_spec_dict(steps=1, callbacks=[]).items() if k not in ("prompts", "seeds")}
    sweep.write_text(json.dumps({"base": base, "prompts": ["x"]}))
    for argv in (["invert", str(_spec(tmp_path))], ["sweep", str(sweep)]):
        assert main([*argv, "--out", out]) == 2
        assert "error: --out: is empty: give a folder" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # the default folder was not used
    spec = tiny_spec_dict(steps=1, callbacks=[], output_dir=out)
    with pytest.raises(clipforge.SpecError, match="output_dir: is empty"):
        clipforge.load_spec(spec)


def test_a_dangling_symlink_as_out_is_named(tmp_path, capsys):
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    assert main(["invert", str(_spec(tmp_path)), "--out", str(tmp_path / "link")]) == 2
    err = capsys.readouterr().err
    assert "is a symbolic link to" in err and "nowhere" in err and "which does not exist" in err
    assert "Errno" not in err
    assert main(["invert", str(_spec(tmp_path)), "--out", str(tmp_path / "link" / "run")]) == 2
    assert "is a symbolic link to" in capsys.readouterr().err  # a dangling link above the folder too
    (tmp_path / "file").write_text("x")
    assert main(["invert", str(_spec(tmp_path)), "--out", str(tmp_path / "file" / "run")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()
