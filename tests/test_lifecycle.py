"""One owner per lifecycle (issue 34, point 4): a run without an output folder ends its callbacks
after a failed start as a folder run does; the checkpoint's format, ``run.json`` and the goals'
paths each have one home; ``Engine`` takes a resolved spec (a dict goes through a shim that warns)."""

from __future__ import annotations

import json
import warnings

import pytest
from helpers import StopAt, tiny_backbone, tiny_spec_dict

import clipforge
from clipforge.analysis import run_analysis
from clipforge.components import Callback, Options
from clipforge_plugins.analysis_probe import Probe, ProbeSpec

RUN = {"backbones": [tiny_backbone(0)], "steps": 3, "copies": 2, "resolution": [{"step": 0, "size": 16}]}


class FailsToStart(Callback):
    """Fails in ``on_run_start``; records every ``on_run_end`` it gets."""

    name = "fails_to_start"

    def __init__(self, ended: list):
        super().__init__(Options())
        self.ended = ended

    def on_run_start(self, run) -> None:
        raise RuntimeError("this callback cannot start")

    def on_run_end(self, run, result) -> None:
        self.ended.append(result)


def quiet_spec(**overrides) -> dict:
    return tiny_spec_dict(callbacks=[{"name": "progress", "options": {"disable": True}}], **overrides)


@pytest.mark.parametrize("out", [False, True])
def test_a_failed_start_ends_the_callbacks_with_or_without_a_folder(tmp_path, out):
    ended: list = []
    with pytest.raises(Exception, match="cannot start"):
        clipforge.invert(quiet_spec(), tmp_path / "out" if out else None, callbacks=[FailsToStart(ended)])
    assert ended == [None]  # closed once, with no result, as a folder run's are
    assert not (tmp_path / "out").exists()


def test_a_failed_start_of_an_analysis_run_tells_its_callbacks(tmp_path, monkeypatch):
    ended: list = []
    spec = ProbeSpec(
        run=RUN,
        seeds=1,
        judge=tiny_backbone(1),
        prompts=["a nurse"],
        attribute="colour",
        values={"red": "a red thing", "blue": "a blue thing"},
    )
    probe = Probe(spec)
    monkeypatch.setattr(probe, "callbacks", lambda registry: [FailsToStart(ended)])
    with pytest.raises(Exception, match="cannot start"):
        run_analysis(probe, tmp_path / "probe", show_progress=False)
    assert ended == [None]
    assert not (tmp_path / "probe").exists()  # the analysis's folder is undone, as before


def test_engine_given_a_dict_warns_and_says_when_it_goes():
    with pytest.warns(DeprecationWarning, match=r"goes in 0\.3"):
        engine = clipforge.Engine(quiet_spec(steps=2))
    assert engine.spec.steps == 2


def test_engine_given_a_resolved_spec_does_not_warn():
    resolved = clipforge.default_registry().resolve(clipforge.load_spec(quiet_spec(steps=2)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        clipforge.Engine(resolved)


def test_one_run_record_reads_and_writes_run_json(tmp_path):
    from clipforge.runrecord import RunRecord

    out = tmp_path / "run"
    spec = clipforge.default_registry().resolve(clipforge.load_spec(quiet_spec(steps=6)))
    clipforge.Engine(spec, out_dir=out, callbacks=[StopAt(5)]).run()
    raw = json.loads((out / "run.json").read_text())
    raw["added_by_a_newer_version"] = {"kept": True}
    (out / "run.json").write_text(json.dumps(raw))
    record = RunRecord.read(out)
    assert record.status == "interrupted" and record.steps_done == raw["steps_done"]
    record.write(out)
    assert json.loads((out / "run.json").read_text())["added_by_a_newer_version"] == {"kept": True}


def test_the_checkpoint_format_lives_in_one_module(tmp_path):
    from clipforge import checkpoint

    out = tmp_path / "run"
    spec = clipforge.default_registry().resolve(clipforge.load_spec(quiet_spec(steps=6)))
    clipforge.Engine(spec, out_dir=out, callbacks=[StopAt(5)]).run()
    tensors, facts = checkpoint.read_checkpoint(out, spec.spec.hash())
    assert facts["step"] == 4 and any(k.startswith("param.") for k in tensors)
    with pytest.raises(checkpoint.NothingToResumeError, match="another spec"):
        checkpoint.read_checkpoint(out, "0" * 16)


def test_goal_paths_are_typed():
    from clipforge.resolved import GoalPath

    spec = quiet_spec(prompts=["a red circle", {"text": "a blue square", "objectives": ["prompt"]}])
    resolved = clipforge.default_registry().resolve(clipforge.load_spec(spec))
    own, shared = GoalPath(1), GoalPath(None)
    assert str(own) == "prompts[1].objectives" and str(shared) == "objectives"
    assert resolved.goal(1)[0] == own and resolved.goal(0)[0] == shared
    assert not any(isinstance(k, str) and k.startswith("prompts[") for k in resolved.components)
