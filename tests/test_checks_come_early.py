"""Checks that come at the earliest point that can know: what ``invert`` refuses when it builds its
objectives against the backbone (a wrong layer, a channel out of range, a neuron outside the map, a
direction of the wrong length, a backbone index beyond the list) is refused by ``clipforge validate``
too, naming the JSON path and the reason; ``sweep --plan`` refuses a grid point that would fail so,
naming it; and ``clipforge layer`` with a bad backbone says so once, without a second error about the
judge that defaults to it."""

from __future__ import annotations

import json

import pytest
from helpers import tiny_backbone

from clipforge.cli import main
from clipforge.registry import ResolvedComponent

TOY = {"name": "open_clip", "options": {"model": "toyworld-rn"}}  # layer2: 128 channels of 8 x 8


def toy_spec(objectives: list, **fields) -> dict:
    return {
        "prompts": [{"label": "unit", "objectives": objectives}],
        "seeds": [0],
        "backbones": [TOY],
        "steps": 2,
        "copies": 1,
        "callbacks": [],
        "device": "cpu",
        **fields,
    }


def channel(**options) -> dict:
    return {"name": "channel", "options": {"layer": "layer2", "channel": 5, **options}}


# (id, the prompt's objectives, the JSON path named, words of the reason)
CASES = [
    ("wrong layer", [channel(layer="layer9")], "prompts[0].objectives[0]", "no layer 'layer9'"),
    ("channel out of range", [channel(channel=500)], "prompts[0].objectives[0]", "channel 500 is out of range"),
    (
        "neuron outside the map",
        [{"name": "neuron", "options": {"layer": "layer2", "channel": 5, "position": [40, 3]}}],
        "prompts[0].objectives[0]",
        "position [40, 3] is not in layer 'layer2'",
    ),
    (
        "direction of the wrong length",
        [channel(), {"name": "direction", "options": {"layer": "layer2", "vector": [1.0, 0.0, 0.0]}}],
        "prompts[0].objectives[1]",
        "the vector has 3 values, but layer 'layer2' of open_clip:toyworld-rn has 128 channels",
    ),
    (
        "embedding direction of the wrong length",
        [{"name": "direction", "options": {"vector": [1.0, 0.0, 0.0]}}],
        "prompts[0].objectives[0]",
        "the vector has 3 values, but open_clip:toyworld-rn embeds in",
    ),
    (
        "backbone index beyond the list",
        [channel(backbone=2)],
        "prompts[0].objectives[0].options.backbone",
        "asks for backbone 2, but the spec has 1",
    ),
]


def write(tmp_path, data, name="spec.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("objectives, place, reason", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validate_refuses_what_invert_would_refuse_at_its_start(tmp_path, capsys, objectives, place, reason):
    path = write(tmp_path, toy_spec(objectives))
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"error: {path}: {place}: "), lines[0]
    assert reason in lines[0], lines[0]
    assert "is valid" not in captured.out


def test_validate_names_the_spec_objectives_path_and_every_problem(tmp_path, capsys):
    spec = toy_spec([channel(layer="layer9")])
    spec["prompts"].append({"label": "shared"})  # no own objectives: the spec's
    spec["objectives"] = [channel(channel=128)]
    path = write(tmp_path, spec)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: prompts[0].objectives[0]: no layer 'layer9'" in err
    assert f"{path}: objectives[0]: channel 128 is out of range" in err and "[objective 'channel' from" in err


def test_validate_still_passes_a_good_spec(tmp_path, capsys):
    path = write(tmp_path, toy_spec([channel(), {"name": "neuron", "options": {"layer": "layer2", "channel": 1}}]))
    assert main(["validate", str(path)]) == 0
    captured = capsys.readouterr()
    assert "is valid" in captured.out and "not checked" not in captured.out and captured.err == ""


def test_validate_checks_what_it_can_and_says_what_it_could_not(tmp_path, capsys, monkeypatch):
    """Weights that are not on this machine are not fetched to validate a spec: the objectives on
    that backbone are not checked, and the output says so; the rest are checked."""
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    far = {"name": "open_clip", "options": {"model": "ViT-B-32", "pretrained": "openai", "cache_dir": str(empty)}}
    built: list[str] = []
    real = ResolvedComponent.build

    def counting(self, *args, **kwargs):
        if self.entry.kind == "backbone":
            built.append(self.options.model)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ResolvedComponent, "build", counting)
    good = toy_spec([channel(), {"name": "channel", "options": {"layer": "transformer", "channel": 0, "backbone": 1}}])
    good["backbones"] = [TOY, far]
    path = write(tmp_path, good)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "is valid" in out
    assert "not checked" in out and "backbones[1]" in out and "not on this machine" in out
    assert built == ["toyworld-rn"]  # the far one is not built (nor downloaded)
    bad = {**good, "prompts": [{"label": "unit", "objectives": [channel(layer="layer9")]}]}
    path = write(tmp_path, bad)
    assert main(["validate", str(path)]) == 2
    assert "prompts[0].objectives[0]: no layer 'layer9'" in capsys.readouterr().err


# --------------------------------------------------------------------------- sweep --plan


def test_the_plan_refuses_a_grid_point_that_would_fail_naming_it(tmp_path, capsys, backbones_built):
    built = backbones_built
    sweep = {
        "base": {
            "backbones": [TOY],
            "objectives": [channel()],
            "steps": 2,
            "copies": 1,
            "device": "cpu",
            "resolution": [{"step": 0, "size": 32}],
        },
        "prompts": [{"label": "a"}, {"label": "b", "objectives": [channel(layer="layer9")]}],
        "seeds": 1,
        "grid": {"objectives[0].options.channel": [5, 999], "optimizer.lr": [0.05, 0.1]},
    }
    path = write(tmp_path, sweep, "sweep.json")
    assert main(["sweep", str(path), "--plan"]) == 2
    captured = capsys.readouterr()
    assert len(set(built)) == 1 and len(built) == 1  # the backbone built once, for every point
    # every point's own problem, named by its settings; the prompt's own goal fails at every point
    err = captured.err.strip().splitlines()
    point = "grid point objectives[0].options.channel=999, optimizer.lr=0.1"
    assert any(line.startswith(f"error: {path}: {point}: objectives[0]: channel 999 is out of range") for line in err)
    assert any("prompts[1].objectives[0]: no layer 'layer9'" in line for line in err), err
    # the plan is still shown, each failing point marked
    out = captured.out
    assert "point 3 (" in out and "8 items, 4 blocks; 4 of 4 grid point(s) would fail" in out
    assert "would fail at its start" in out


def test_a_plan_of_good_points_is_unchanged(tmp_path, capsys):
    sweep = {
        "base": {"backbones": [TOY], "objectives": [channel()], "steps": 2, "copies": 1, "device": "cpu"},
        "prompts": [{"label": "a"}],
        "seeds": 1,
        "grid": {"objectives[0].options.channel": [5, 127]},
    }
    assert main(["sweep", str(write(tmp_path, sweep, "sweep.json")), "--plan"]) == 0
    captured = capsys.readouterr()
    assert "would fail" not in captured.out and captured.err == ""


# --------------------------------------------------------------------------- clipforge layer


def layer_spec(**fields) -> dict:
    run = {"backbones": [tiny_backbone()], "steps": 2, "copies": 1, "resolution": [{"step": 0, "size": 16}]}
    return {"layer": "conv1", "run": {**run, "device": "cpu"}, **fields}


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"backbone": 3}, "backbone: is 3, but the run has 1 backbone(s)"),
        (
            {"run": {"backbones": [{"name": "open_clip", "options": {"model": "toyworld-nope"}}]}},
            "run.backbones[0].options.model: unknown open_clip model 'toyworld-nope'",
        ),
        ({"run": {"backbones": [{"name": "open_clipx"}]}}, "run.backbones[0].name: unknown backbone 'open_clipx'"),
    ],
    ids=["index beyond the list", "bad model", "unknown backbone"],
)
def test_a_bad_backbone_of_the_layer_analysis_is_one_error(tmp_path, capsys, fields, expected):
    path = write(tmp_path, layer_spec(**fields), "layer.json")
    for argv in (["layer", str(path), "--check"], ["layer", str(path), "--out", str(tmp_path / "never")]):
        assert main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines == [f"error: {path}: {expected}" + lines[0].split(expected, 1)[-1]], lines
        assert f"{path}: judge" not in lines[0]
    assert not (tmp_path / "never").exists()


def test_a_bad_judge_given_by_the_spec_is_still_named(tmp_path, capsys):
    path = write(tmp_path, layer_spec(judge={"name": "open_clipx"}), "layer.json")
    assert main(["layer", str(path), "--check"]) == 2
    assert "judge.name: unknown backbone 'open_clipx'" in capsys.readouterr().err
