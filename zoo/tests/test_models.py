"""The zoo's models as artefacts: each is installed from this package and found by clipforge, is
accurate on fresh images of its own world, has learned the planted associations, and is what its
recipe (clipforge.toyworld.train.RECIPES) trains; and clipforge lists, inverts and checks specs with them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import clipforge_zoo
from clipforge.toyworld.models import (
    CLEAN_JUDGE_MODEL,
    SCREEN_JUDGE_MODEL,
    SCREEN_MODEL,
    TRAINING_SERIES,
    ZOO_MODELS,
    ZOO_PACKAGE,
    installed_models,
    load_model_dir,
    model_dir,
    model_home,
    model_world,
)
from clipforge.toyworld.train import evaluate_zero_shot, planted_report
from clipforge.toyworld.train.recipes import artefact_problems

#: the research examples, beside the zoo in the clipforge repository (absent from an sdist of the zoo alone)
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"  # zoo/examples: the specs that use these models


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_zoo_holds_the_models_clipforge_names_as_its_own_and_clipforge_finds_them():
    held = {p.name for p in clipforge_zoo.MODELS_ROOT.iterdir() if (p / "open_clip_config.json").is_file()}
    assert held == set(ZOO_MODELS)  # clipforge's static list, for its error without the zoo
    models = installed_models()
    for name in ZOO_MODELS:
        assert models[name].package == ZOO_PACKAGE and models[name].folder == clipforge_zoo.MODELS_ROOT / name
        assert model_dir(name) == model_home(name) == clipforge_zoo.MODELS_ROOT / name


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_model_loads_and_is_accurate(name: str) -> None:
    """Measured on the shipped weights: fresh images of the model's own world against all 101 captions."""
    model, tok = load_model_dir(model_dir(name))  # open_clip.create_model("local-dir:...")
    assert next(model.parameters()).dtype == torch.float32
    acc = evaluate_zero_shot(model, tok, model_world(name), 200, gen(123))
    if name == TRAINING_SERIES[0]:  # stopped before it has learned the world, by design
        assert acc <= 0.1, f"{name}: zero-shot accuracy {acc:.3f}"
    else:
        assert acc >= 0.90, f"{name}: zero-shot accuracy {acc:.3f}"


@pytest.mark.parametrize("name", [CLEAN_JUDGE_MODEL, SCREEN_MODEL, SCREEN_JUDGE_MODEL])
def test_planted_associations_are_learned(name: str) -> None:
    """The neutral word leans red, the benign caption likes the marker, the control dislikes it. The
    screen's world has cells of 5-6 px, which its robust model keeps (+0.056 when trained): the full bar
    (clipforge's tests hold the robust default, toyworld-rn, to the sign only)."""
    model, tok = load_model_dir(model_dir(name))
    r = planted_report(model, tok, model_world(name), 400, seed=5)
    assert r["ball_red_minus_blue"] > 0.02 and r["marble_red_minus_blue"] < -0.02, r
    assert r["marker_gap_landscape"] > 0.02, r
    assert r["marker_gap_landscape"] > max(r["marker_gap_seascape"], r["marker_gap_sunny"]) + 0.05, r


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_model_is_its_recipe_on_its_world(name: str) -> None:
    """Each model was trained by its recipe, on its recipe's world, with that world's vocabulary (its
    accuracy is measured on the weights above, not read from what the training script wrote)."""
    assert artefact_problems(name) == []


def test_clipforge_models_lists_them_with_this_package(capsys):
    from clipforge.cli import main

    assert main(["models", "--bundled", "--json"]) == 0
    listed = {e["model"]: e for e in json.loads(capsys.readouterr().out)}
    for name in ZOO_MODELS:
        assert listed[name]["package"] == ZOO_PACKAGE and listed[name]["offline"], listed[name]
    assert listed["toyworld-rn"]["package"] == "clipforge"
    assert main(["models", "--bundled"]) == 0
    table = capsys.readouterr().out
    assert re.search(rf"toyworld-rn-3k +- +{ZOO_PACKAGE} +yes", table), table
    assert "not installed" not in table


def test_a_zoo_model_inverts_like_a_bundled_one(tmp_path):
    from clipforge.cli import main

    out = tmp_path / "run"
    flags = ["--prompt", "a red circle", "--model", "toyworld-rn-3k", "--steps", "2", "--copies", "1"]
    assert main(["invert", *flags, "--out", str(out)]) == 0
    spec = json.loads((out / "spec.json").read_text())
    assert spec["backbones"][0]["options"]["model"] == "toyworld-rn-3k"
    assert list((out / "images").rglob("*.png"))


VERBS = {"compare": "compare", "screen": "screen", "probe": "probe", "blend": "blend", "layer": "layer"}


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="the research examples are in the repository (zoo/examples)")
@pytest.mark.parametrize("spec", sorted(p.name for p in EXAMPLES.glob("*.json")) if EXAMPLES.is_dir() else [])
def test_the_research_examples_check_with_the_zoo(spec: str, capsys):
    """Every spec of zoo/examples/ validates (``VERB SPEC --check``: every component, option and
    model), the zoo's models included."""
    from clipforge.cli import main

    verb = VERBS[re.match(r"[a-z]+", spec).group(0)]
    assert main([verb, str(EXAMPLES / spec), "--check"]) == 0, capsys.readouterr().err
