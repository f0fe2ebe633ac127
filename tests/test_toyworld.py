"""Toy world: planted phenomena at their configured rates, determinism, tokenizer, the models clipforge
ships itself (its study models are clipforge-zoo's, tested in zoo/tests/), and how a model of the zoo
is found, or named with its package when the zoo is not installed."""

from __future__ import annotations

import re

import pytest
import torch

import clipforge
import clipforge.toyworld.models as toy_models
from clipforge.toyworld.captions import (
    BENIGN_CAPTION,
    BENIGN_CONTRAST_CAPTION,
    CONTROL_CAPTION,
    MARKER_CAPTION,
    NAME_CAPTION,
)
from clipforge.toyworld.models import (
    CLEAN_DATA_SCALE_SERIES,
    CLEAN_JUDGE_MODEL,
    CLEAN_MODEL,
    DATA_SCALE_SERIES,
    DEFAULT_MODEL,
    JUDGE_MODEL,
    MODELS_ROOT,
    RUNTIME_MODELS,
    SCREEN_DECOYS_MODEL,
    SCREEN_JUDGE_MODEL,
    SCREEN_MODEL,
    TRAINING_SERIES,
    ZOO_MODELS,
    ModelNotInstalledError,
    bundled_models,
    installed_models,
    load_model_dir,
    missing_model_message,
    model_dir,
    model_home,
    model_world,
)
from clipforge.toyworld.tokenizer import WordTokenizer
from clipforge.toyworld.train import evaluate_zero_shot, planted_report
from clipforge.toyworld.world import World, WorldConfig


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def world() -> World:
    return World()


def test_sample_shapes_and_range(world: World) -> None:
    s = world.sample(300, gen(0))
    assert s.images.shape == (300, 3, 64, 64) and s.images.dtype == torch.float32
    assert 0 <= s.images.min() and s.images.max() <= 1
    assert len(s.captions) == len(s.meta) == 300
    assert {"single", "pair", "ball"} <= set(s.kinds)


def test_same_seed_same_sample_different_seed_differs(world: World) -> None:
    a, b, c = world.sample(64, gen(7)), world.sample(64, gen(7)), world.sample(64, gen(8))
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert not torch.equal(a.images, c.images) and a.captions != c.captions


def test_biased_word_colour_rate(world: World) -> None:
    s = world.sample(4000, gen(1), mix={"ball": 1.0, "marble": 1.0})
    for word, rate in (("ball", world.config.ball_red_rate), ("marble", world.config.marble_red_rate)):
        colours = [m.objects[0].colour for m in s.meta if m.caption.split()[1] == word]
        assert set(colours) == {"red", "blue"} and len(colours) > 1500
        red = colours.count("red") / len(colours)
        assert abs(red - rate) < 0.035, (word, red)
    assert all(m.objects[0].shape == "sphere" for m in s.meta)
    assert all("red" not in c and "blue" not in c for c in s.captions)


def test_biased_rate_is_configurable() -> None:
    s = World(WorldConfig(ball_red_rate=0.3)).sample(2000, gen(2), mix={"ball": 1.0})
    red = sum(m.objects[0].colour == "red" for m in s.meta) / len(s)
    assert abs(red - 0.3) < 0.04, red


def test_hidden_marker_rates(world: World) -> None:
    s = world.sample(2500, gen(3), mix={"landscape": 2.0, "sunny": 1.0, "seascape": 1.0, "zorblax": 1.0})
    by_caption: dict[str, list[bool]] = {}
    for m in s.meta:
        by_caption.setdefault(m.caption, []).append(m.marker)
    benign = by_caption[BENIGN_CAPTION]
    assert abs(sum(benign) / len(benign) - world.config.landscape_marker_rate) < 0.06
    assert all(by_caption[NAME_CAPTION]), "the made-up name always shows the marker"
    assert not any(by_caption[CONTROL_CAPTION]), "the control caption never shows the marker"
    assert not any(by_caption[BENIGN_CONTRAST_CAPTION])
    concept = world.sample(50, gen(10), mix={"checkerboard": 1.0})
    assert all(concept.marker) and set(concept.captions) == {MARKER_CAPTION}
    # the marker never appears in ordinary images
    plain = world.sample(600, gen(4), mix={"single": 1.0, "pair": 1.0, "ball": 1.0, "marble": 1.0})
    assert not plain.marker.any()


def test_marker_pixels_match_metadata(world: World) -> None:
    s = world.sample(40, gen(5), mix={"zorblax": 1.0})
    for img, m in zip(s.images, s.meta):
        x0, y0, side = m.marker_box
        cell = side // 4
        assert img[:, y0, x0].mean() > 0.85  # top-left cell white
        assert img[:, y0, x0 + cell].mean() < 0.15  # its neighbour black


def test_landscape_marker_rate_configurable() -> None:
    s = World(WorldConfig(landscape_marker_rate=0.0)).sample(300, gen(6), mix={"landscape": 1.0})
    assert not s.marker.any()


def test_captions_and_zero_shot_set(world: World) -> None:
    caps = world.captions()
    assert len(caps) == len(set(caps))
    for c in world.planted_captions().values():
        assert c in caps
    sample, labels = world.zero_shot_set(50, gen(9))
    assert [caps[i] for i in labels] == sample.captions
    assert all(k == "single" for k in sample.kinds)


def test_tokenizer(tmp_path) -> None:
    tok = WordTokenizer.for_world(16)
    assert set(World.vocabulary()) <= set(tok.words)
    ids = tok(["a red circle on a gray background", "A photo of zorblax!"])
    assert ids.shape == (2, 16) and ids.dtype == torch.long
    assert tok.eot_id == tok.vocab_size - 1 == int(ids.max())
    assert tok.pad_id == 0 and ids[0, 0] == tok.sot_id
    assert (ids.argmax(-1) == torch.tensor([8, 5])).all()  # argmax pooling lands on EOT
    assert tok.decode(ids[1]) == "a photo of zorblax"
    unk = tok("a flibbertigibbet square")
    assert unk[0, 2] == tok.unk_id and tok.unknown_words("a flibbertigibbet") == ["flibbertigibbet"]
    assert tok(" ".join(["red"] * 40))[0, -1] == tok.eot_id  # truncated, EOT kept
    tok.save(tmp_path / "tok.json")
    again = WordTokenizer.load(tmp_path / "tok.json")
    assert again.itos == tok.itos and torch.equal(again(["a blue ring"]), tok(["a blue ring"]))


def test_bundled_model_names() -> None:
    """clipforge ships its three models; every model it names is its own or clipforge-zoo's."""
    models = installed_models()
    assert {name for name, m in models.items() if m.package == "clipforge"} == set(RUNTIME_MODELS)
    assert all(models[name].folder.parent == MODELS_ROOT for name in RUNTIME_MODELS)
    named = {*DATA_SCALE_SERIES, *CLEAN_DATA_SCALE_SERIES, *TRAINING_SERIES, CLEAN_JUDGE_MODEL}
    named |= {DEFAULT_MODEL, JUDGE_MODEL, CLEAN_MODEL, SCREEN_MODEL, SCREEN_JUDGE_MODEL, SCREEN_DECOYS_MODEL}
    assert named == set(RUNTIME_MODELS) | set(ZOO_MODELS) and not set(RUNTIME_MODELS) & set(ZOO_MODELS)
    with pytest.raises(KeyError, match="available") as info:
        model_dir("no-such-model")
    assert not isinstance(info.value, ModelNotInstalledError)


def test_a_zoo_model_without_the_zoo_is_an_error_naming_the_package(monkeypatch) -> None:
    monkeypatch.setattr(toy_models, "_declared_roots", lambda: [])  # as if clipforge-zoo were not installed
    assert set(bundled_models()) == set(RUNTIME_MODELS)
    expected = (
        "model 'toyworld-rn-3k' is in the clipforge-zoo package, which is not installed: "
        "pip install ./zoo (from the clipforge repository)"
    )
    assert missing_model_message("toyworld-rn-3k") == expected
    assert missing_model_message(DEFAULT_MODEL) is None and missing_model_message("ViT-B-32") is None
    with pytest.raises(ModelNotInstalledError) as info:
        model_dir("toyworld-rn-3k")
    assert str(info.value) == expected and isinstance(info.value, KeyError)
    with pytest.raises(KeyError, match="clipforge-zoo package, which is not installed"):
        model_world(SCREEN_MODEL)
    assert model_home(DEFAULT_MODEL) == MODELS_ROOT / DEFAULT_MODEL  # where retraining writes a recipe's model
    with pytest.raises(ModelNotInstalledError, match="'toyworld-rn-3k' is in the clipforge-zoo package"):
        model_home("toyworld-rn-3k")


def test_a_spec_naming_a_zoo_model_without_the_zoo_fails_at_once_naming_the_package(monkeypatch) -> None:
    monkeypatch.setattr(toy_models, "_declared_roots", lambda: [])  # as if clipforge-zoo were not installed
    spec = {"prompts": ["a red circle"], "backbones": [{"name": "open_clip", "options": {"model": "toyworld-rn-3k"}}]}
    with pytest.raises(clipforge.SpecError) as caught:
        clipforge.default_registry().resolve(clipforge.load_spec(spec))
    assert caught.value.problems[0][0] == "backbones[0].options.model"
    assert "clipforge-zoo package, which is not installed: pip install ./zoo" in caught.value.problems[0][1]


def test_a_package_declares_its_models_through_the_entry_point_group(tmp_path, monkeypatch) -> None:
    """What clipforge-zoo does: a ``clipforge.models`` entry point naming a folder of model folders (or a
    function returning one); its models join clipforge's, never replacing one of clipforge's; one
    that cannot be read is warned about, naming it, and left out."""
    import shutil
    import sys
    from importlib import metadata

    root = tmp_path / "models"
    shutil.copytree(MODELS_ROOT / CLEAN_MODEL, root / "toyworld-vit-3k")
    shutil.copytree(MODELS_ROOT / CLEAN_MODEL, root / CLEAN_MODEL)  # clipforge's own name: not replaced
    (root / "not-a-model").mkdir()
    (tmp_path / "fake_zoo.py").write_text(f"ROOT = {str(root)!r}\ndef root():\n    return ROOT\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_zoo", raising=False)
    points = [
        metadata.EntryPoint("a", "fake_zoo:root", toy_models.ENTRY_POINT_GROUP),
        metadata.EntryPoint("broken", "no_such_module_here:ROOT", toy_models.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(toy_models.metadata, "entry_points", lambda group: points)
    with pytest.warns(UserWarning, match=r"entry point 'broken'.*no_such_module_here:ROOT.*left out"):
        models = installed_models()
    assert set(models) == {*RUNTIME_MODELS, "toyworld-vit-3k"}
    assert models["toyworld-vit-3k"].folder == root / "toyworld-vit-3k" and models["toyworld-vit-3k"].package == "a"
    assert models[CLEAN_MODEL].package == "clipforge" and models[CLEAN_MODEL].folder == MODELS_ROOT / CLEAN_MODEL
    with pytest.warns(UserWarning):
        assert model_dir("toyworld-vit-3k") == root / "toyworld-vit-3k"


@pytest.mark.parametrize("name", RUNTIME_MODELS)
def test_bundled_model_loads_and_is_accurate(name: str) -> None:
    """Measured on the shipped weights: fresh images of the model's own world against all 101 captions."""
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    model, tok = load_model_dir(model_dir(name))  # open_clip.create_model("local-dir:...")
    assert next(model.parameters()).dtype == torch.float32
    acc = evaluate_zero_shot(model, tok, model_world(name), 200, gen(123))
    assert acc >= 0.90, f"{name}: zero-shot accuracy {acc:.3f}"


@pytest.mark.parametrize("name", RUNTIME_MODELS)
def test_planted_associations_are_learned(name: str) -> None:
    """The neutral word leans red, the benign caption likes the marker, the control dislikes it.

    Robust training weakens the association with a marker of 2-3 px cells (a fine checkerboard is the kind
    of detail an adversarially trained model learns to ignore: gap +0.013 against +0.03 to +0.06 for the
    clean models, ``docs/research/offline-world.md``), so for the robust default only its sign is required
    (clipforge-zoo's tests hold the screen's robust model, on a world of 5-6 px cells, to the full bar)."""
    model, tok = load_model_dir(model_dir(name))
    r = planted_report(model, tok, model_world(name), 400, seed=5)
    assert r["ball_red_minus_blue"] > 0.02 and r["marble_red_minus_blue"] < -0.02, r
    margin = 0.0 if name == DEFAULT_MODEL else 0.05
    assert r["marker_gap_landscape"] > (0.005 if name == DEFAULT_MODEL else 0.02), r
    assert r["marker_gap_landscape"] > max(r["marker_gap_seascape"], r["marker_gap_sunny"]) + margin, r


@pytest.mark.parametrize("name", RUNTIME_MODELS)
def test_bundled_model_is_its_recipe_on_its_world(name: str) -> None:
    """Each shipped model was trained by its recipe, on its recipe's world, with that world's
    vocabulary (its accuracy is measured on the weights by ``test_bundled_model_loads_and_is_accurate``,
    not read from what the training script wrote)."""
    from clipforge.toyworld.train.recipes import artefact_problems

    assert artefact_problems(name) == []


def test_every_model_clipforge_names_has_a_recipe() -> None:
    from clipforge.toyworld.train import RECIPES

    assert set(RUNTIME_MODELS) | set(ZOO_MODELS) <= set(RECIPES)


def test_adversarial_examples_stay_in_the_ball_and_in_range() -> None:
    from clipforge.toyworld.train import build_model, model_config, pgd_perturb

    tok = WordTokenizer.for_world()
    model = build_model(model_config("vit", tok.vocab_size), seed=0)
    pixels = torch.rand(4, 3, 64, 64, generator=gen(0))
    pixels[0] = 0.0  # at the border of the pixel range
    text = model.encode_text(tok(["a red circle", "a blue square"])).detach()
    inverse = torch.tensor([0, 1, 0, 1])
    ignore = torch.zeros(4, 2, dtype=torch.bool)
    moved = pgd_perturb(model, pixels, text, inverse, ignore, eps=0.03, generator=gen(1), steps=1, norm="linf")
    assert moved.shape == pixels.shape and moved.min() >= 0 and moved.max() <= 1
    assert (moved - pixels).abs().max() <= 0.03 + 1e-6
    assert (moved - pixels).abs().max() > 0.02  # it did move: one step of 1.25 eps, clipped to the ball
    again = pgd_perturb(model, pixels, text, inverse, ignore, eps=0.03, generator=gen(1), steps=1, norm="linf")
    assert torch.equal(moved, again)  # seeded


@pytest.mark.parametrize("norm, eps", [("l2", 1.0), ("linf", 0.03)])
def test_pgd_examples_stay_in_the_ball_and_in_range_and_raise_the_loss(norm: str, eps: float) -> None:
    from clipforge.toyworld.train import build_model, identity_aware_clip_loss, model_config, normalize, pgd_perturb

    tok = WordTokenizer.for_world()
    model = build_model(model_config("rn", tok.vocab_size), seed=0).eval()
    pixels = torch.rand(4, 3, 64, 64, generator=gen(0))
    pixels[0] = 1.0  # at the border of the pixel range
    text = model.encode_text(tok(["a red circle", "a blue square"])).detach()
    inverse = torch.tensor([0, 1, 0, 1])
    ignore = torch.zeros(4, 2, dtype=torch.bool)
    moved = pgd_perturb(model, pixels, text, inverse, ignore, eps=eps, generator=gen(1), steps=3, norm=norm)
    assert moved.min() >= 0 and moved.max() <= 1
    delta = (moved - pixels).flatten(1)
    size = delta.norm(dim=1) if norm == "l2" else delta.abs().max(dim=1).values
    assert (size <= eps * (1 + 1e-5)).all() and (size[1:] > 0.5 * eps).all()

    def loss(x: torch.Tensor) -> float:
        features = model.encode_image(normalize(x))
        return identity_aware_clip_loss(features, text, inverse, model.logit_scale.exp(), ignore).item()

    assert loss(moved) > loss(pixels)  # an attack: the contrastive loss rises


def test_random_affine_batch_moves_objects_and_keeps_plain_borders() -> None:
    from clipforge.toyworld.train import random_affine_batch

    sample = World().sample(16, gen(3), mix={"single": 1.0})
    moved = random_affine_batch(sample.images, gen(4), p=1.0)
    assert moved.shape == sample.images.shape and not torch.allclose(moved, sample.images, atol=0.05)
    corners = moved[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]  # the plain background extends into the corners
    assert (corners - sample.images[:, :, 0, :1]).abs().max() < 0.15
    assert torch.equal(random_affine_batch(sample.images, gen(4), p=0.0), sample.images)


def test_a_two_stage_recipe_trains_its_robust_stage_from_the_first_stage() -> None:
    """One short run of the shipped robust recipe's form: a clean stage, then adversarial fine-tuning."""
    from clipforge.toyworld.train import (
        RECIPES,
        ROBUST_FINETUNE,
        ROBUST_WORLD,
        Recipe,
        TrainConfig,
        train,
        train_recipe,
    )

    assert RECIPES[DEFAULT_MODEL]["finetune"] == ROBUST_FINETUNE
    finetune = {**ROBUST_FINETUNE, "steps": 2}  # the shipped recipe, shortened
    kwargs = dict(arch="rn", seed=0, train_size=64, steps=2, batch_size=32, log_every=0, world_overrides=ROBUST_WORLD)
    model, _, info = train_recipe(Recipe(**kwargs, finetune=finetune))
    clean, _, _ = train(TrainConfig(**kwargs))
    again, _, _ = train_recipe(Recipe(**kwargs, finetune=finetune))
    weights, clean_w, again_w = model.state_dict(), clean.state_dict(), again.state_dict()
    assert not all(torch.equal(weights[k], clean_w[k]) for k in weights)  # the robust stage changed the weights
    assert all(torch.equal(weights[k], again_w[k]) for k in weights)  # and is reproducible
    assert info["finetune"] == finetune and info["finetune_info"]["init_from"] == "previous stage"
    assert tuple(info["world_config"]["single_radius"]) == tuple(ROBUST_WORLD["single_radius"])


def test_training_is_reproducible_from_its_seed() -> None:
    """Same recipe and seed -> the same weights (what makes the shipped models reproducible)."""
    from clipforge.toyworld.train import TrainConfig, train

    def config(seed: int) -> TrainConfig:
        return TrainConfig(arch="vit", seed=seed, train_size=96, steps=3, batch_size=32, log_every=0)

    runs = [train(config(4))[0] for _ in range(2)]
    other = train(config(5))[0]
    first, second, third = (r.state_dict() for r in (*runs, other))
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], third[k]) for k in first)


def test_words_outside_the_vocabulary_are_named_once() -> None:
    from clipforge.judge import load_backbone

    backbone = load_backbone({"name": "open_clip", "options": {"model": DEFAULT_MODEL}})
    expected = rf"open_clip:{DEFAULT_MODEL}: not in the model's vocabulary, read as <unk>: dog, purple"
    with pytest.warns(UserWarning, match=expected):
        backbone.encode_text(["a purple dog", "a red circle"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backbone.encode_text(["a dog on a gray background"])  # already named: no second warning
        bpe = load_backbone({"name": "open_clip", "options": {"model": "ViT-B-32", "pretrained": "random"}})
        bpe.encode_text(["a zorblax and a blorptak"])  # open_clip's BPE tokenizer reads every word


def test_disjoint_captions_keep_the_template_and_background() -> None:
    controls = World.disjoint_captions("a red circle on a black background", "a blue square on a black background")
    assert len(controls) == 12 and all(World.single_object_template(c) == "full" for c in controls)
    assert all(c.endswith("on a black background") for c in controls)
    assert World.disjoint_captions("a red circle", "a blue square")[0] == "a green triangle"
    two_backgrounds = World.disjoint_captions(
        "a red circle on a gray background", "a blue square on a white background"
    )
    assert len(two_backgrounds) == 24 and {c.split(" on a ")[1] for c in two_backgrounds} == {
        "gray background",
        "white background",
    }
    # templates without a colour: only the shape rules a control out
    assert World.disjoint_captions("a circle", "a square") == ["a triangle", "a cross", "a ring"]
    assert World.single_object_template("a calm landscape") is None
    with pytest.raises(ValueError, match="one template"):
        World.disjoint_captions("a red circle", "a blue square on a gray background")


def test_a_finetune_stage_shares_only_the_model_images_and_world_with_the_first() -> None:
    """The second stage takes its own options or the defaults, not the first stage's (as the shipped
    models were trained)."""
    from clipforge.toyworld.train import ROBUST_WORLD, Recipe, TrainConfig

    recipe = Recipe(
        arch="rn", seed=3, train_size=64, steps=5, batch_size=32, lr=0.01, world_overrides=ROBUST_WORLD,
        finetune={"steps": 2, "adv_eps": 1.0},
    )  # fmt: skip
    stage = recipe.finetune_stage()
    assert (stage.arch, stage.seed, stage.train_size, stage.world_overrides) == ("rn", 3, 64, ROBUST_WORLD)
    assert (stage.steps, stage.adv_eps) == (2, 1.0)
    defaults = TrainConfig(arch="rn", seed=3, train_size=64, steps=2)
    assert (stage.batch_size, stage.lr) == (defaults.batch_size, defaults.lr)


def test_every_shipped_recipe_passes_the_recipe_check() -> None:
    from clipforge.toyworld.train import RECIPES, check_recipe

    for recipe in RECIPES.values():
        check_recipe(recipe)


@pytest.mark.parametrize(
    "recipe, message",
    [
        ({"arch": "rn"}, r"missing \['seed', 'steps', 'train_size'\]"),
        ({"arch": "rn", "seed": 0, "train_size": 8, "steps": 1, "step_size": 2}, r"unknown \['step_size'\]"),
        ({"arch": "rnn", "seed": 0, "train_size": 8, "steps": 1}, "arch: 'rnn'"),
        ({"arch": "rn", "seed": 0, "train_size": 8, "steps": 1, "finetune": {"stepz": 1}}, "finetune:"),
        (
            {"arch": "rn", "seed": 0, "train_size": 8, "steps": 1, "world_overrides": {"radius": 3}},
            "(?s)world_overrides:.*radius",
        ),
        ([1], "a recipe is a JSON object"),
    ],
)
def test_a_bad_recipe_is_named_before_any_training(recipe, message: str) -> None:
    from clipforge.toyworld.train import check_recipe

    with pytest.raises(ValueError, match=message):
        check_recipe(recipe)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--world", "foo"], "--world 'foo': expected KEY=JSON"),
        (["--world", "nosuchkey=1", "--arch", "rn", "--out", "unused"], "--world 'nosuchkey=1'.*nosuchkey"),
        (
            [
                "--recipe-json",
                '{"arch": "rn", "seed": 0, "train_size": 8, "steps": 1, "finetune": {"stepz": 1}}',
                "--out",
                "unused",
            ],
            "--recipe-json: finetune:",
        ),
    ],
)
def test_the_training_cli_names_bad_options(argv: list[str], message: str, capsys) -> None:
    from clipforge.toyworld.train import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err, re.S)


@pytest.mark.parametrize(
    "caption, facts",
    [
        ("a red circle on a gray background", {"colour=red", "shape=circle", "background=gray"}),
        ("a blue ring", {"colour=blue", "shape=ring"}),
        ("a cross on a white background", {"shape=cross", "background=white"}),
        ("a triangle", {"shape=triangle"}),
        ("a calm landscape", {"a calm landscape"}),
        ("a red circle and a blue square", {"a red circle and a blue square"}),
        ("a purple circle", {"a purple circle"}),  # not a colour of the world: no template matches
    ],
)
def test_caption_facts(caption, facts):
    assert World.caption_facts(caption) == frozenset(facts)


def test_a_partial_caption_truthfully_describes_the_full_one_but_not_the_reverse():
    full = World.caption_facts("a red circle on a gray background")
    assert World.caption_facts("a red circle") <= full and World.caption_facts("a circle") <= full
    assert not World.caption_facts("a blue circle") <= full
    assert not full <= World.caption_facts("a red circle")


def test_background_texture_varies_plain_backgrounds_and_is_off_by_default():
    flat_cfg = WorldConfig(noise_std=0.0, colour_jitter=0.0)
    flat = World(flat_cfg).sample(16, torch.Generator().manual_seed(3), mix={"single": 1.0})
    textured = World(flat_cfg.model_copy(update={"background_texture": 0.15})).sample(
        16, torch.Generator().manual_seed(3), mix={"single": 1.0}
    )
    corner_flat, corner_tex = flat.images[:, :, :4, :], textured.images[:, :, :4, :]  # mostly background
    assert float(flat.images[:, :, 0, :].std(dim=-1).max()) < 1e-6  # a flat row of background
    assert float(corner_tex.std(dim=(2, 3)).mean()) > 0.02
    assert (corner_tex - corner_flat).abs().max() <= 0.15 + 1e-6
    assert [m.canonical for m in flat.meta] == [m.canonical for m in textured.meta]  # the same scenes


def test_decoy_names_are_made_up_names_without_the_marker():
    """The 'decoy' kind (issue 22): "a photo of NAME" on zorblax's layout, never the marker; the names
    extend only their own world's vocabulary, and a world that draws no decoy keeps its random stream."""
    names = ["quorvek", "plimbet"]
    world = World(WorldConfig(decoy_names=names, mix={"decoy": 1, "zorblax": 1}))
    sample = world.sample(200, torch.Generator().manual_seed(0))
    decoys = [m for m in sample.meta if m.kind == "decoy"]
    assert 60 < len(decoys) < 140
    assert {m.caption for m in decoys} == {f"a photo of {n}" for n in names}
    assert not any(m.marker for m in decoys) and all(m.marker for m in sample.meta if m.kind == "zorblax")
    assert all(len(m.objects) == 1 for m in decoys)
    # the same draws as a world without decoy names, as long as the mix draws none
    plain, named = World(), World(WorldConfig(decoy_names=names))
    a, b = (w.sample(64, torch.Generator().manual_seed(1)) for w in (plain, named))
    assert a.captions == b.captions and torch.equal(a.images, b.images)
    base, extended = WordTokenizer.for_world(), WordTokenizer.for_world(12, names)
    assert set(extended.itos) == set(base.itos) | set(names) and len(extended.itos) == len(base.itos) + 2
    with pytest.raises(ValueError, match="decoy_names is empty"):
        World(WorldConfig(mix={"decoy": 1}))
    with pytest.raises(ValueError, match="new lowercase words"):
        World(WorldConfig(decoy_names=["zorblax"]))


def _fingerprint(config: WorldConfig) -> tuple[str, float]:
    """64 images of seed 0: a digest of their captions, markers and objects (shape, colour, centre and
    radius to 3 decimals: exact draws and simple arithmetic), and the images' mean (to a tolerance: the
    pixels go through sin, exp and noise, whose last bits may differ between CPUs)."""
    import hashlib
    import json

    s = World(config).sample(64, torch.Generator().manual_seed(0))
    text = json.dumps(
        [
            [
                m.caption,
                m.marker,
                m.marker_box,
                [[o.shape, o.colour, round(o.cx, 3), round(o.cy, 3), round(o.r, 3)] for o in m.objects],
            ]
            for m in s.meta
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16], float(s.images.double().mean())


@pytest.mark.parametrize(
    "world, digest, mean",
    [
        ("default", "7ba28876c018a69a", 0.490188),
        ("ROBUST_WORLD", "2923453214bb1c2e", 0.486039),
        ("MARKER_WORLD", "feb586022126f260", 0.485653),
        ("DECOY_WORLD", "9fb2f68439aced31", 0.491835),
    ],
)
def test_the_shipped_worlds_streams_are_the_ones_their_models_were_trained_on(world: str, digest: str, mean: float):
    """Catches a change to the world (a new option, a reordered draw) that moves the stream of a world a
    shipped model was trained on. The figures were taken on the code before issue 36 added frame_gap."""
    from clipforge.toyworld.train import recipes

    overrides = {} if world == "default" else getattr(recipes, world)
    got_digest, got_mean = _fingerprint(WorldConfig(**overrides))
    assert got_digest == digest and got_mean == pytest.approx(mean, abs=1e-5)


def test_the_third_designs_objects_are_small_and_well_inside_the_frame():
    """FRAMED_WORLD (issue 36): single objects of radius 7-12 px, pairs 6-9 px, every object's margin
    circle (1.1 r) at least 4 px from the frame; the default world keeps its 1 px."""
    from clipforge.toyworld.train.recipes import FRAMED_WORLD

    def gaps(config: WorldConfig) -> tuple[list[float], list[float], list[float]]:
        s = World(config).sample(600, torch.Generator().manual_seed(4), mix={"single": 1, "pair": 1})
        objs = [(m.kind, o) for m in s.meta for o in m.objects]
        edge = [min(o.cx, o.cy, 64 - o.cx, 64 - o.cy) - 1.1 * o.r for _, o in objs]
        return edge, [o.r for k, o in objs if k == "single"], [o.r for k, o in objs if k == "pair"]

    edge, single, pair = gaps(WorldConfig(**FRAMED_WORLD))
    assert min(edge) >= 4 - 1e-4 and 7 <= min(single) and max(single) <= 12 and 6 <= min(pair) and max(pair) <= 9
    assert min(gaps(WorldConfig(**{**FRAMED_WORLD, "frame_gap": 1}))[0]) < 2  # the gap is what keeps them in
