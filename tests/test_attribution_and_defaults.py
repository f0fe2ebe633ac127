"""Issue 32, points 2 and 4: attribution maps for any parameterisation, each parameterisation's own
optimiser defaults, NAdam, and flat (collapsed) images reported per image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import StopAt, registry_with, resolved, tiny_spec_dict
from PIL import Image
from safetensors.torch import load_file

import clipforge
from benchmarks.objective_truth import EdgeBackbone
from clipforge import Callback, Options, Screened
from clipforge.result import FLAT_STD
from clipforge.spec import load_spec

#: the tiny runs' images here are 32 px after the resize at step 3
QUIET = [{"name": "progress", "options": {"disable": True}}]


def attribution_spec(**overrides) -> dict:
    return tiny_spec_dict(output={"attribution": True}, callbacks=QUIET, **overrides)


# --------------------------------------------------------------------------- attribution maps


def test_a_neurons_attribution_lies_in_its_receptive_field():
    """The edge network's unit at (3, 9) of its 13 x 13 map sees pixels 3..6 (rows) x 9..12 (columns)
    of the 16 px image through its 4 x 4 filter: its map must hold at least 90 % of its mass there
    (without augmentations, all of it: nothing outside reaches the unit), in that orientation."""
    spec = {
        "prompts": [
            {"objectives": [{"name": "neuron", "options": {"layer": "act", "channel": 0, "position": [3, 9]}}]}
        ],
        "seeds": [0, 1],
        "backbones": ["edge_net"],
        "augmentations": [],
        "regularizers": [],
        "copies": 1,
        "steps": 20,
        "resolution": [{"step": 0, "size": 16}],
        "device": "cpu",
        "callbacks": [],
        "output": {"attribution": True},
    }
    result = clipforge.invert(spec, registry=registry_with(EdgeBackbone, plugin="edge_net"))
    maps = result.attribution
    assert maps.shape == (2, 16, 16) and (maps >= 0).all()
    for m in maps:
        inside = m[3:7, 9:13].sum() / m.sum()
        assert inside >= 0.9, f"{float(inside):.3f} of the map in the receptive field"
        assert m[3:7, 9:13].min() > 0  # every pixel of the field matters to the unit


def test_maps_are_saved_beside_the_images_and_leave_the_images_alone(tmp_path):
    spec = attribution_spec()
    with_maps = clipforge.invert(spec, tmp_path / "maps")
    plain = clipforge.invert(tiny_spec_dict(callbacks=QUIET), tmp_path / "plain")
    assert torch.equal(with_maps.images, plain.images)  # asking for the maps changes no image, bit for bit
    assert plain.attribution is None and not list((tmp_path / "plain" / "images").glob("*.attribution.png"))
    assert "attribution" not in load_file(tmp_path / "plain" / "images.safetensors")
    assert with_maps.attribution.shape == (4, 32, 32) and with_maps.attribution.dtype == torch.float32
    assert (with_maps.attribution >= 0).all() and (with_maps.attribution.flatten(1).sum(1) > 0).all()
    saved = load_file(tmp_path / "maps" / "images.safetensors")
    assert torch.equal(saved["attribution"], with_maps.attribution)
    for row in with_maps.rows:
        png = Image.open(tmp_path / "maps" / "images" / f"{row.slug}.attribution.png")
        assert png.size == (32, 32) and png.text["kind"] == "attribution" and png.text["seed"] == str(row.seed)
        assert png.convert("L").getextrema()[1] == 255  # scaled by its own largest value
    assert json.loads((tmp_path / "maps" / "spec.json").read_text())["output"]["attribution"] is True


def test_the_attribution_switch_keeps_old_digests_and_changes_new_ones():
    """A spec that does not ask for maps has the digest it had before the switch existed (the literal
    digest of ``tests/test_objectives.py``'s spec, as given and resolved)."""
    plain = load_spec(tiny_spec_dict())
    off = load_spec(tiny_spec_dict(output={"attribution": False}))
    on = load_spec(tiny_spec_dict(output={"attribution": True}))
    assert plain.hash() == off.hash() == "bc0df4674592"
    assert clipforge.default_registry().resolve(off).spec.hash() == "bf709c0ea519"
    assert on.hash() != plain.hash()


@pytest.mark.parametrize("optimizer", ["adam", "nadam"])
def test_a_resumed_run_gives_the_same_maps_bit_for_bit(tmp_path, optimizer):
    spec = {**attribution_spec(steps=12, checkpoint_every=4), "optimizer": {"name": optimizer}}
    spec["resolution"] = [{"step": 0, "size": 16}, {"step": 6, "size": 32}]
    whole = clipforge.invert(spec, tmp_path / "whole")
    stopped = clipforge.Engine(resolved(spec), out_dir=tmp_path / "b", callbacks=[StopAt(7)]).run()
    assert stopped.interrupted and stopped.attribution.shape == (4, 32, 32)
    resumed = clipforge.Engine(resolved(spec), out_dir=tmp_path / "b", resume=True).run()
    assert torch.equal(resumed.images, whole.images)
    assert torch.equal(resumed.attribution, whole.attribution)
    assert torch.equal(load_file(tmp_path / "b" / "images.safetensors")["attribution"], whole.attribution)


def test_a_checkpoint_without_maps_is_refused_when_the_spec_asks_for_them(tmp_path):
    from clipforge.outputs import DamagedCheckpointError

    spec = attribution_spec(steps=12, checkpoint_every=4)
    clipforge.Engine(resolved(spec), out_dir=tmp_path / "b", callbacks=[StopAt(5)]).run()
    path = tmp_path / "b" / "checkpoint.safetensors"
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = {k: v for k, v in load_file(path).items() if k != "attribution"}
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(DamagedCheckpointError, match="attribution"):
        clipforge.Engine(resolved(spec), out_dir=tmp_path / "b", resume=True).run()


class WithholdFirst(Callback):
    name = "withhold_first"

    def __init__(self) -> None:
        super().__init__(Options())

    def screen(self, run, images, step, final):
        withheld = torch.zeros(images.shape[0], dtype=torch.bool)
        withheld[0] = True
        return Screened(images, withheld)


def test_a_withheld_image_gets_no_map(tmp_path):
    result = clipforge.Engine(resolved(attribution_spec()), out_dir=tmp_path / "run", callbacks=[WithholdFirst()]).run()
    first, second = result.rows[0].slug, result.rows[1].slug
    assert not (tmp_path / "run" / "images" / f"{first}.attribution.png").exists()
    assert (tmp_path / "run" / "images" / f"{second}.attribution.png").exists()
    assert not result.attribution[0].any() and result.attribution[1].any()
    assert not load_file(tmp_path / "run" / "images.safetensors")["attribution"][0].any()
    assert result.flat[0] is False  # its zeros are the screen's, not a collapse


# --------------------------------------------------------------------------- optimiser defaults


def test_a_parameterisation_without_an_optimizer_gets_its_own_learning_rate(tmp_path):
    registry = clipforge.default_registry()
    fourier = registry.get("parameterization", "fourier").cls
    assert fourier.default_optimizer.get("lr", 0.1) != 0.1
    spec = tiny_spec_dict(parameterization="fourier", callbacks=QUIET, steps=2)
    resolved = registry.resolve(load_spec(spec))
    assert resolved.spec.optimizer.lr == fourier.default_optimizer["lr"]
    explicit = registry.resolve(load_spec({**spec, "optimizer": {"lr": 0.3}}))
    assert explicit.spec.optimizer.lr == 0.3  # what the spec sets wins
    clipforge.invert(spec, tmp_path / "run")
    written = json.loads((tmp_path / "run" / "spec.json").read_text())
    assert written["optimizer"]["lr"] == fourier.default_optimizer["lr"]
    again = registry.resolve(load_spec(tmp_path / "run" / "spec.json"))
    assert again.spec.hash() == resolved.spec.hash()  # spec.json runs again as it ran


def test_the_paper_setup_keeps_pixel_and_its_digest():
    """The paper's setup (every default, pixel, Adam at lr 0.1) resolves as before: no default of
    pixel's changes it, and its digests, as given and resolved, are those the commit before the
    defaults (73c8c6a) gave."""
    registry = clipforge.default_registry()
    assert registry.get("parameterization", "pixel").cls.default_optimizer == {}
    paper = load_spec({"prompts": ["a photo of a cat"]})
    resolved = registry.resolve(paper).spec
    assert resolved.optimizer.name == "adam" and resolved.optimizer.lr == 0.1
    assert (paper.hash(), resolved.hash()) == ("eec17d3958a5", "8b0b81f7e471")
    example = load_spec(Path(__file__).parents[1] / "examples" / "paper" / "inversion.json")
    assert (example.hash(), registry.resolve(example).spec.hash()) == ("9c3ae9285526", "67d6ce2d3cb9")


class Stepped(clipforge.Parameterization):
    """A parameterisation that declares NAdam at lr 0.5 as its defaults (as MACO will)."""

    name = "stepped"
    default_optimizer = {"name": "nadam", "lr": 0.5}

    def __init__(self, options, batch_size, size, generators, device):
        super().__init__(options, batch_size, size, generators, device)
        self.pixels = torch.full((batch_size, 3, *size), 0.5).requires_grad_(True)

    def parameters(self):
        return [self.pixels]

    def image(self):
        return self.pixels


def test_declared_defaults_fill_only_what_the_spec_leaves_unset():
    registry = registry_with(Stepped)
    spec = tiny_spec_dict(parameterization="stepped")
    assert registry.resolve(load_spec(spec)).spec.optimizer.model_dump(include={"name", "lr"}) == {
        "name": "nadam",
        "lr": 0.5,
    }
    mine = registry.resolve(load_spec({**spec, "optimizer": {"lr": 0.2, "betas": [0.8, 0.9]}})).spec.optimizer
    assert (mine.name, mine.lr, mine.betas) == ("nadam", 0.2, (0.8, 0.9))
    named = registry.resolve(load_spec({**spec, "optimizer": {"name": "adam"}})).spec.optimizer
    assert (named.name, named.lr) == ("adam", 0.5)


def test_a_declared_default_that_is_not_valid_names_the_parameterisation():
    class Broken(Stepped):
        name = "broken"
        default_optimizer = {"lr": -1.0}

    with pytest.raises(clipforge.PluginError, match="parameterization: parameterization 'broken'.*optimizer.lr"):
        registry_with(Broken).resolve(load_spec(tiny_spec_dict(parameterization="broken")))


def test_nadam_runs_and_is_not_adam():
    adam = clipforge.invert(tiny_spec_dict(callbacks=QUIET))
    nadam = clipforge.invert(tiny_spec_dict(callbacks=QUIET, optimizer={"name": "nadam"}))
    assert nadam.images.shape == adam.images.shape and torch.isfinite(nadam.images).all()
    assert not torch.equal(nadam.images, adam.images)


# --------------------------------------------------------------------------- flat images


def test_flat_images_are_reported_per_image(tmp_path):
    """Gray images that a tiny learning rate leaves gray: each flagged in the result and run.json,
    and a warning names them; images with structure are not flagged."""
    gray = tiny_spec_dict(
        callbacks=QUIET, parameterization={"name": "pixel", "options": {"init": "gray"}}, optimizer={"lr": 1e-6}
    )
    with pytest.warns(UserWarning, match=r"4 of 4 image\(s\) came out flat") as caught:
        result = clipforge.invert(gray, tmp_path / "gray")
    assert result.flat == [True] * 4
    assert all(row.slug in str(caught[0].message) for row in result.rows)
    assert json.loads((tmp_path / "gray" / "run.json").read_text())["flat"] == [row.slug for row in result.rows]
    assert result.images.flatten(2).std(dim=2).amax() < FLAT_STD

    noisy = clipforge.invert(tiny_spec_dict(callbacks=QUIET), tmp_path / "noisy")
    assert noisy.flat == [False] * 4
    assert json.loads((tmp_path / "noisy" / "run.json").read_text())["flat"] == []
