"""Bad input, as a careless user or a careful attacker gives it: every case exits with status 2 and
one message naming what is wrong and where (the file, the JSON path, the plugin), and leaves nothing
behind: no file outside the output folder, and no output folder at all (nothing had run)."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import types

import numpy as np
import pytest
import torch
from helpers import TINY_CONFIG, tiny_spec_dict

import clipforge
from clipforge.cli import main

ESC = "\x1b"


def tiny(**change) -> dict:
    return tiny_spec_dict(**{"steps": 2, "callbacks": [], **change})


def with_checkpoint(name: str) -> dict:
    return tiny(
        backbones=[{"name": "open_clip", "options": {"config": copy.deepcopy(TINY_CONFIG), "pretrained": name}}]
    )


PROBE = {"judge": {"name": "open_clip", "options": {"config": TINY_CONFIG}}, "prompts": ["a cat"], "seeds": 1}

# (id, what the spec file holds: a dict (as JSON), a str (as it is) or bytes, extra argv, what the message says)
CASES = [
    ("missing file", None, [], "no such file"),
    ("invalid JSON", '{"prompts": [', [], "invalid JSON at line 1"),
    ("not UTF-8", b'{"prompts": ["caf\xe9"]}', [], "not UTF-8 text (byte 17"),
    ("an array", "[]", [], "a spec must be a JSON object, not an array"),
    ("null with --set", "null", ["--set", "steps=2"], "a spec must be a JSON object, not null"),
    ("unknown key", tiny(stpes=3), [], "stpes: unknown key"),
    ("steps a word", tiny(steps="many"), [], "steps: Input should be a valid integer"),
    ("steps 0", tiny(steps=0), [], "steps: Input should be greater than or equal to 1"),
    ("steps 1e12", tiny(steps=10**12), [], "steps: Input should be less than or equal to 1000000"),
    ("steps true", tiny(steps=True), [], "steps: a number is expected here, not true or false"),
    ("log_every true", tiny(log_every=True), [], "log_every: a number is expected here"),
    ("copies 1e6", tiny(copies=10**6), [], "copies: Input should be less than or equal to 1024"),
    ("size 100000", tiny(resolution=[{"step": 0, "size": 100_000}]), [], "resolution[0].size: Input should be less"),
    ("schedule late", tiny(resolution=[{"step": 1, "size": 32}]), [], "resolution: the first resolution entry"),
    ("schedule shrinks", tiny(resolution=[{"step": 0, "size": 32}, {"step": 1, "size": 16}]), [], "may only grow"),
    ("NaN weight", '{"prompts": [{"text": "a", "weight": NaN}]}', [], "prompts[0].weight: Input should be a finite"),
    ("infinite lr", tiny(optimizer={"lr": float("inf")}), [], "optimizer.lr: Input should be a finite number"),
    ("betas", tiny(optimizer={"betas": [2, 0]}), [], "optimizer.betas: betas[0] must be in [0, 1), not 2.0"),
    ("no seeds", tiny(seeds=[]), [], "seeds: List should have at least 1 item"),
    ("seed true", tiny(seeds=[True]), [], "seeds: a number is expected here"),
    ("no prompts", tiny(prompts=[]), [], "prompts: List should have at least 1 item"),
    ("text and image", tiny(prompts=[{"text": "a", "image": "x.png"}]), [], "prompts[0]"),
    ("missing image", tiny(prompts=[{"image": "nowhere.png"}]), [], "prompts[0].image: no such image file"),
    ("truncated image", tiny(prompts=[{"image": "truncated.png"}]), [], "truncated.png' is not a readable image"),
    ("not an image", tiny(prompts=[{"image": "text.png"}]), [], "text.png' is not a readable image"),
    ("device", tiny(device="gpu"), [], "device: device must be"),
    ("unknown backbone", tiny(backbones=["clip"]), [], "backbones[0].name: unknown backbone 'clip'"),
    ("unknown parameterisation", tiny(parameterization="pixels"), [], "parameterization.name: unknown"),
    ("misspelled option", tiny(regularizers=[{"name": "tv", "options": {"wieght": 1}}]), [], "options.wieght: unknown"),
    (
        "negative TV",
        tiny(regularizers=[{"name": "tv", "options": {"weight": -1}}]),
        [],
        "regularizers[0].options.weight",
    ),
    ("NaN TV", '{"prompts": ["a"], "regularizers": [{"name": "tv", "options": {"weight": NaN}}]}', [], "weight: Input"),
    (
        "metrics ../",
        tiny(callbacks=[{"name": "metrics", "options": {"filename": "../../victim.json"}}]),
        [],
        "filename",
    ),
    ("metrics /abs", tiny(callbacks=[{"name": "metrics", "options": {"filename": "/tmp/victim.json"}}]), [], "inside"),
    (
        "screen report ../",
        tiny(callbacks=[{"name": "safety_screen", "options": {"report": "../x.json"}}]),
        [],
        "report",
    ),
    (
        "screen NaN threshold",
        '{"prompts": ["a"], "callbacks": [{"name": "safety_screen", "options": {"threshold": NaN}}]}',
        [],
        "callbacks[0].options.threshold: Input should be a finite number",
    ),
    (
        "screen judge unknown",
        tiny(callbacks=[{"name": "safety_screen", "options": {"judge": {"name": "clip"}}}]),
        [],
        "callbacks[0].options.judge.name: unknown backbone 'clip'",
    ),
    (
        "screen judge option",
        tiny(
            callbacks=[{"name": "safety_screen", "options": {"judge": {"name": "open_clip", "options": {"modle": 1}}}}]
        ),
        [],
        "callbacks[0].options.judge.options.modle: unknown key",
    ),
    (
        "checkpoint_every 0",
        tiny(checkpoint_every=0),
        [],
        "checkpoint_every: Input should be greater than or equal to 1",
    ),
    ("--set no value", tiny(), ["--set", "steps"], "--set: expected KEY=VALUE, got 'steps'"),
    ("--set out of range", tiny(), ["--set", "prompts[5].text=x"], "prompts[5] does not exist"),
    ("--set NaN", tiny(), ["--set", "optimizer.lr=NaN"], "optimizer.lr: Input should be a finite number"),
    ("config without file", with_checkpoint("nowhere.pt"), [], "backbones[0].options.pretrained"),
    ("empty safetensors", with_checkpoint("{tmp}/empty.safetensors"), [], "empty.safetensors' is not a readable"),
    ("corrupt safetensors", with_checkpoint("{tmp}/corrupt.safetensors"), [], "corrupt.safetensors' is not a readable"),
    ("npz checkpoint", with_checkpoint("{tmp}/weights.npz"), [], "weights.npz': NumPy .npz checkpoints"),
    ("pickle checkpoint", with_checkpoint("{tmp}/pickled.pt"), [], "pickled.pt' holds pickled Python objects"),
    ("mismatched checkpoint", with_checkpoint("{tmp}/other.pt"), [], "other.pt' does not fit the model's 'config'"),
    ("escape in a key", {"prompts": ["a"], f"{ESC}[31mred": 1}, [], "\\x1b[31mred: unknown key"),
    ("probe seeds", {**PROBE, "seeds": 10**9}, ["probe"], "seeds: between 1 and 10000 seeds per prompt"),
    ("probe no judge", {"prompts": ["a"]}, ["probe"], "judge: Field required"),
    ("probe run prompts", {**PROBE, "run": {"prompts": ["b"]}}, ["probe"], "run: 'run' must not set 'prompts'"),
    ("probe bad run", {**PROBE, "run": {"copies": 0}}, ["probe"], "run.copies: Input should be greater"),
    ("out not empty", tiny(), ["--out", "{tmp}/taken"], "already exists and it is not empty"),
]


class Evil:
    """Stands for any pickled object: loading it would run code."""


@pytest.fixture
def inputs(tmp_path):
    """The files the cases refer to, in ``tmp_path``."""
    (tmp_path / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (tmp_path / "text.png").write_text("hello")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "corrupt.safetensors").write_bytes(b"garbage" * 10)
    np.savez(tmp_path / "weights.npz", a=np.zeros(3))
    torch.save({"state_dict": {"a": torch.zeros(1)}, "object": Evil()}, tmp_path / "pickled.pt")
    torch.save({"a": torch.zeros(3)}, tmp_path / "other.pt")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "precious.txt").write_text("results")
    return tmp_path


def test_the_table_is_long_enough():
    assert len(CASES) >= 40 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("content, argv, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_its_place_and_leaves_nothing(inputs, capsys, monkeypatch, content, argv, message):
    monkeypatch.chdir(inputs)
    spec = inputs / "spec.json"
    if isinstance(content, dict):
        spec.write_text(json.dumps(content).replace("{tmp}", str(inputs)))
    elif isinstance(content, str):
        spec.write_text(content)
    elif isinstance(content, bytes):
        spec.write_bytes(content)
    verb, extra = ("probe", argv[1:]) if argv[:1] == ["probe"] else ("invert", argv)
    extra = [a.replace("{tmp}", str(inputs)) for a in extra]
    out = [] if "--out" in extra else ["--out", str(inputs / "out")]
    before = sorted(p.relative_to(inputs) for p in inputs.rglob("*"))

    code = main([verb, str(spec), *out, *extra])

    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err, err
    assert ESC not in err  # control characters from the input are shown escaped
    assert str(spec) in err or "--set" in err or "output directory" in err  # the file (or folder) it is about
    after = sorted(p.relative_to(inputs) for p in inputs.rglob("*"))
    assert after == before, "files were left behind"  # no output folder, nothing elsewhere


@pytest.mark.parametrize(
    "argv, env, message",
    [
        (["--strict-plugins", "--block", "nonexistent", "plugins"], {}, "plugin 'nonexistent' is unknown"),
        (["--strict-plugins", "--plugins", "open_clp", "plugins"], {}, "did you mean 'open_clip'"),
        (["plugins"], {"CLIPFORGE_DISABLE_PLUGIN_AUTOLOAD": "maybe"}, "must be 1/true/yes/on or 0/false/no/off"),
        (["--strict-plugins", "plugins"], {"CLIPFORGE_BLOCK_PLUGINS": "pixle"}, "plugin 'pixle' is unknown"),
    ],
)
def test_bad_plugin_names_and_flags(argv, env, message, monkeypatch, capsys):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_an_unknown_plugin_name_is_a_warning_without_strict(capsys):
    assert main(["--block", "nonexistent", "plugins", "--json"]) == 0
    assert "warning: plugin 'nonexistent' is unknown" in capsys.readouterr().err


@pytest.mark.parametrize("value, loaded", [("0", True), ("false", True), ("", True), ("1", False), ("true", False)])
def test_the_autoload_switch_reads_yes_and_no(value, loaded, monkeypatch, capsys):
    """It switches third-party plugins off (a fake one here); the built-ins stay."""
    real = importlib.metadata.entry_points
    third = types.SimpleNamespace(name="third", dist=None, load=lambda: types.ModuleType("third"))
    monkeypatch.setattr("clipforge.registry.importlib.metadata.entry_points", lambda group: [*real(group=group), third])
    monkeypatch.setenv("CLIPFORGE_DISABLE_PLUGIN_AUTOLOAD", value)
    assert main(["plugins", "--json"]) == 0
    names = {p["name"] for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert ("third" in names) == loaded and "open_clip" in names


@pytest.mark.parametrize(
    "callbacks, place, other",
    [
        (
            ["metrics", {"name": "safety_screen", "options": {"concepts": ["a cat"], "report": "metrics.jsonl"}}],
            "callbacks[1].options.report",
            "callbacks[0].options.filename",
        ),
        (
            [
                {"name": "metrics", "options": {"filename": "safety.json"}},
                {"name": "safety_screen", "options": {"concepts": ["a cat"]}},
            ],
            "callbacks[1].options.report",
            "callbacks[0].options.filename",
        ),
        (
            ["metrics", {"name": "metrics", "options": {"filename": "./METRICS.jsonl"}}],
            "callbacks[1].options.filename",
            "callbacks[0]",
        ),
    ],
)
def test_two_components_writing_one_file_are_refused_at_the_start(tmp_path, callbacks, place, other):
    """Issue 33, point 3: a screen's report named metrics.jsonl (or metrics named safety.json) overwrote
    the other in silence, and two metrics on one file wrote every line twice."""
    spec = tiny(callbacks=callbacks)
    with pytest.raises(clipforge.SpecError) as caught:
        clipforge.invert(spec, tmp_path / "out")
    text = str(caught.value)
    assert place in text and other in text and "give each component's file its own name" in text
    assert not (tmp_path / "out").exists()
