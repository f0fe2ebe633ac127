"""The notebook's API (issue 31): models as objects, the objective algebra, functions of the
features, results to look at, resuming a run made from Python, and bad input named at the start
with nothing written. Runs are a few steps of the bundled ``toyworld-rn`` at 32 px (it takes 64)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
from helpers import StopAt

import clipforge
from clipforge import channel, diversity, prompt

SMALL = {"steps": 6, "size": 32, "copies": 2, "progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def toy():
    """The bundled default model, built once: its backbone (model, tokenizer)."""
    return clipforge.backbone_of("toyworld-rn")


def small_spec(backbone, goals, **extra) -> dict:
    """The spec visualize() makes with SMALL's settings, written out: to compare with a JSON spec."""
    return {
        "prompts": goals,
        "seeds": [0],
        "backbones": [backbone],
        "regularizers": [{"name": "tv", "options": {"weight": 0.02}}],
        "copies": 2,
        "steps": 6,
        "resolution": [{"step": 0, "size": 16}, {"step": 3, "size": 32}],
        "callbacks": [],
        "device": "cpu",
        **extra,
    }


# --------------------------------------------------------------------------- the same images three ways


def test_a_function_of_the_features_gives_the_builtin_channels_images_bit_for_bit():
    builtin = clipforge.visualize("toyworld-rn", "layer3:5", **SMALL)
    function = clipforge.visualize("toyworld-rn", lambda f: f.layer("layer3")[:, 5].mean((1, 2)), **SMALL)
    assert torch.equal(builtin.images, function.images)
    assert function.rows[0].label == "callable:lambda"
    assert builtin.rows[0].label == "channel layer3:5"


def test_a_model_passed_as_an_object_gives_the_images_of_the_same_model_by_name(toy):
    by_name = clipforge.visualize("toyworld-rn", ["layer3:5", prompt("a red circle on a white background")], **SMALL)
    wrapped = clipforge.model(toy.model, tokenizer=toy.tokenizer)
    as_object = clipforge.visualize(wrapped, ["layer3:5", prompt("a red circle on a white background")], **SMALL)
    assert torch.equal(by_name.images, as_object.images)
    assert by_name.metrics[-1]["similarity"] == as_object.metrics[-1]["similarity"]


def test_the_algebras_sum_gives_the_images_of_the_json_list_of_weighted_objectives():
    goal = channel("layer3", 5) + 0.5 * diversity("layer3") - 0.25 * channel("layer2", 7)
    written = [
        {"name": "channel", "options": {"layer": "layer3", "channel": 5}},
        {"name": "diversity", "options": {"layer": "layer3", "weight": 0.5}},
        {"name": "channel", "options": {"layer": "layer2", "channel": 7, "weight": -0.25}},
    ]
    bb = {"name": "open_clip", "options": {"model": "toyworld-rn"}}
    algebra = clipforge.invert(small_spec(bb, [goal], seeds=[0, 1]))
    json_list = clipforge.invert(small_spec(bb, [{"objectives": written}], seeds=[0, 1]))
    assert torch.equal(algebra.images, json_list.images)
    assert algebra.spec.hash() == json_list.spec.hash()  # written to spec.json as by hand


def test_the_algebra_writes_prompt_terms_as_a_prompts_text_and_weights():
    from clipforge.algebra import goal_prompt

    one = goal_prompt(2 * prompt("a red circle") + channel("layer3", 1), str, "x")
    assert one == {
        "text": "a red circle",
        "objectives": [
            {"name": "prompt", "options": {"weight": 2.0}},
            {"name": "channel", "options": {"layer": "layer3", "channel": 1}},
        ],
    }
    two = goal_prompt(prompt("a red circle") - prompt("a blue square"), str, "x")
    assert two["terms"] == [{"text": "a red circle", "weight": 1.0}, {"text": "a blue square", "weight": -1.0}]
    assert repr(-channel("layer3", 1)) == "-1*channel(layer='layer3', channel=1)"
    implied = goal_prompt(channel("layer3", 5) + 0.5 * diversity(), str, "x")["objectives"][1]
    assert implied == {"name": "diversity", "options": {"layer": "layer3", "weight": 0.5}}
    with pytest.raises(TypeError, match=r"x: diversity\(\) without a layer takes its goal's, but no objective"):
        goal_prompt(prompt("a red circle") + diversity(), str, "x")


# --------------------------------------------------------------------------- the lent model


class Tower(torch.nn.Module):
    """A small image tower: conv, batch norm (its running stats change in train mode), dropout, pool."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.drop = torch.nn.Dropout(0.5)
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x):
        x = self.drop(torch.relu(self.bn(self.conv(x))))
        return self.head(x.mean((2, 3)))


def test_a_lent_model_stays_on_its_device_in_its_mode_with_no_gradients_and_unchanged():
    tower = Tower().train()
    tower.bn.eval()  # a mixed state, given back as it was
    before = {k: v.clone() for k, v in tower.state_dict().items()}
    result = clipforge.visualize(clipforge.model(tower, input_size=32), "conv:3", seeds=2, **{**SMALL, "size": 32})
    assert result.images.shape == (2, 3, 32, 32)
    assert tower.training and not tower.bn.training and tower.drop.training
    assert all(p.requires_grad and p.grad is None for p in tower.parameters())
    after = tower.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats too: eval during the run
    assert all(p.device.type == "cpu" for p in tower.parameters())


def test_layers_of_a_model_object_by_name_with_the_nearest_on_a_wrong_one(toy):
    names = {layer.name: layer.shape for layer in clipforge.list_layers(toy.model)}
    assert names["layer3"] == (1, *clipforge.layer_shape("toyworld-rn", "layer3"))  # one image, batch first
    assert len(names["layer3"]) == 4
    with pytest.raises(clipforge.LayerError, match=r"no layer 'layer33'.*nearest: layer3"):
        clipforge.layer_shape(toy.model, "layer33")


# --------------------------------------------------------------------------- results and interrupts


def test_a_result_shows_itself_inline_and_as_pil_images_and_a_grid():
    result = clipforge.visualize("toyworld-rn", ["layer3:5", "layer3:6"], seeds=[0, 3], **SMALL)
    pictures = result.to_pil()
    assert len(pictures) == 4 and pictures[0].size == (32, 32)
    assert result.grid().size == (2 * 34 + 2, 2 * 34 + 2)  # a row per prompt, its two seeds side by side
    page = result._repr_html_()
    assert page.count("<img") == 4 and "channel layer3:6" in page and "seed 3" in page
    assert re.search(r"goal -?\d+\.\d{3}", page) and "finished" in page
    assert [f["seed"] for f in result.final()] == [0, 3, 0, 3]


def test_an_interrupt_returns_the_current_images_marked_interrupted():
    result = clipforge.visualize("toyworld-rn", "layer3:5", callbacks=[StopAt(3)], **SMALL)
    assert result.interrupted and result.steps_done == 3
    assert result.images.shape == (1, 3, 16, 16)  # the size it had reached
    assert "interrupted at step 3 of 6" in result._repr_html_()


def test_no_folder_is_written_unless_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clipforge.visualize("toyworld-rn", "layer3:5", **SMALL)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- spec.json, run.json and resuming


def test_a_run_of_names_writes_a_spec_the_command_line_runs_again(tmp_path):
    clipforge.visualize("toyworld-rn", channel("layer3", 5) + 0.5 * channel("layer2", 1), out=tmp_path / "a", **SMALL)
    spec = json.loads((tmp_path / "a" / "spec.json").read_text())
    written = {"layer": "layer2", "channel": 1, "backbone": 0, "weight": 0.5}
    assert spec["prompts"][0]["objectives"][1] == {"name": "channel", "options": written}
    assert "python_objects" not in json.loads((tmp_path / "a" / "run.json").read_text())
    again = clipforge.invert(tmp_path / "a" / "spec.json")
    first = clipforge.invert(spec)
    assert torch.equal(again.images, first.images)


def test_a_run_with_objects_says_so_and_resumes_from_python_not_from_the_command_line(tmp_path):
    def goal(f):
        return f.channels("layer3")[:, 5].mean(1)

    out = tmp_path / "run"
    whole = clipforge.visualize("toyworld-rn", goal, **SMALL)
    stopped = clipforge.visualize("toyworld-rn", goal, out=out, callbacks=[StopAt(4)], checkpoint_every=2, **SMALL)
    assert stopped.interrupted
    record = json.loads((out / "run.json").read_text())
    assert record["python_objects"] == [
        "prompts[0].objectives[0]: callable:goal (the function " + goal.__qualname__ + ")"
    ]
    cli = subprocess.run(
        [sys.executable, "-m", "clipforge", "invert", "--resume", str(out)], capture_output=True, text=True
    )
    assert cli.returncode != 0
    assert "resume it from Python with the same objects" in cli.stderr and "callable:goal" in cli.stderr
    resumed = clipforge.visualize("toyworld-rn", goal, out=out, resume=True, checkpoint_every=2, **SMALL)
    assert not resumed.interrupted and torch.equal(resumed.images, whole.images)


# --------------------------------------------------------------------------- bad input: one error, nothing written


class Broken(torch.nn.Module):
    def __init__(self, out: str):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.out = out

    def forward(self, x):
        if self.out == "fail":
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
        return self.conv(x)  # a feature map, not per-image features


@pytest.mark.parametrize(
    ("model", "objective", "message"),
    [
        (
            clipforge.model(Broken("fail"), input_size=32),
            "conv:0",
            r"torch module Broken: its forward failed on 2 gray",
        ),
        (
            clipforge.model(Broken("map"), input_size=32),
            "conv:0",
            r"returned shape \(2, 4, 30, 30\) for 2 images; "
            r"expected per-image features",
        ),  # fmt: skip
        (Broken("map"), "conv:0", r"input size is not known from the object; give it"),
        ("toyworld-rn", lambda f: f.layer("layer3")[:, 5].mean(), r"callable:lambda returned a scalar for the batch"),
        ("toyworld-rn", lambda f: f.layer("layer3")[:, 5].mean((1, 2))[:1], r"returned shape \(1,\) for 2 copies"),
        ("toyworld-rn", lambda f: f.layer("layer3")[:, 5].mean((1, 2)) * torch.nan, r"a non-finite value \(nan\)"),
        ("toyworld-rn", lambda f: torch.ones(len(f.embeddings)), r"do not depend on the image"),
        ("toyworld-rn", lambda f: f.layer("layer33")[:, 0].mean((1, 2)), r"no layer 'layer33'.*nearest: layer3"),
        ("toyworld-rn", "layer33:0", r"no layer 'layer33'"),
    ],
)
def test_bad_input_is_one_clear_error_naming_its_place_and_nothing_is_written(tmp_path, model, objective, message):
    with pytest.raises(Exception, match=message) as caught:
        clipforge.visualize(model, objective, out=tmp_path / "out", **SMALL)
    assert re.search(r"backbones\[0\]|prompts\[0\]\.objectives\[0\]|model", str(caught.value)) or "input size" in str(
        caught.value
    )
    assert not (tmp_path / "out").exists()


def test_a_model_on_another_device_than_asked_is_refused_not_moved(tmp_path):
    tower = Tower().to("meta")
    with pytest.raises(clipforge.PluginError, match=r"lives on meta, but the run is on cpu; clipforge does not move"):
        clipforge.visualize(clipforge.model(tower, input_size=32), "conv:0", out=tmp_path / "o", **SMALL)
    assert next(tower.parameters()).device.type == "meta" and not (tmp_path / "o").exists()


def test_a_term_that_is_not_an_objective_is_refused_naming_it():
    with pytest.raises(TypeError, match=r"'a red circle' is not an objective.*prompt\('a red circle'\)"):
        channel("layer3", 1) + "a red circle"
    with pytest.raises(TypeError, match=r"a object is not an objective"):
        channel("layer3", 1) + object()
    with pytest.raises(TypeError, match=r"multiplied by a number, not by str"):
        channel("layer3", 1) * "2"
    with pytest.raises(TypeError, match=r"prompts\[0\]: a int is not an objective"):
        clipforge.invert({"prompts": [3]})


def test_an_image_tower_asked_for_a_text_says_it_has_none(tmp_path):
    with pytest.raises(clipforge.PluginError, match=r"prompts\[0\]\.objectives\[0\].*torch module Tower has no text"):
        clipforge.visualize(
            clipforge.model(Tower(), input_size=32), prompt("a red circle"), out=tmp_path / "o", **SMALL
        )
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- Hugging Face


def tiny_hf_clip():
    transformers = pytest.importorskip("transformers")
    config = transformers.CLIPConfig(
        text_config={"vocab_size": 99, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 37,
                       "num_hidden_layers": 2, "num_attention_heads": 2},
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.CLIPModel(config).eval()


def word_tokenizer(texts, padding=True, truncation=True, return_tensors="pt"):
    """A stand-in for a Hugging Face tokenizer (none can be downloaded here): word ids, padded."""
    ids = [[1 + sum(map(ord, w)) % 97 for w in t.split()][:15] + [98] for t in texts]
    width = max(map(len, ids))
    return {
        "input_ids": torch.tensor([i + [0] * (width - len(i)) for i in ids]),
        "attention_mask": torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids]),
    }


def test_a_hugging_face_clip_model_inverts_a_prompt_and_names_its_vision_layers():
    hf = tiny_hf_clip()
    wrapped = clipforge.model(hf, tokenizer=word_tokenizer, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    layers = [layer.name for layer in clipforge.list_layers(wrapped)]
    assert "encoder.layers.1" in layers
    result = clipforge.visualize(wrapped, [prompt("a red circle"), "encoder.layers.1:3"], **SMALL)
    assert result.images.shape == (2, 3, 32, 32) and result.metrics[-1]["similarity"][0] is not None


def test_a_hugging_face_model_without_its_tokenizer_is_refused_when_a_prompt_needs_text(tmp_path):
    hf = tiny_hf_clip()
    with pytest.raises(clipforge.ModelError, match=r"normalisation is not known without its processor; give it"):
        clipforge.visualize(hf, "encoder.layers.1:3", out=tmp_path / "o", **SMALL)
    hf = clipforge.model(hf, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    with pytest.raises(
        clipforge.PluginError, match=r"Hugging Face CLIPModel has no text side here.*pass its tokenizer"
    ):
        clipforge.visualize(hf, prompt("a red circle"), out=tmp_path / "o", **SMALL)
    assert not (tmp_path / "o").exists()
    # its image side needs no tokenizer: a channel of its vision tower
    assert clipforge.visualize(hf, "encoder.layers.1:3", **SMALL).images.shape == (1, 3, 32, 32)


# --------------------------------------------------------------------------- analyses inline


def test_an_analysis_report_shows_its_tables_and_grids_inline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = {
        "layer": "layer3",
        "channels": [1, 2],
        "run": {
            "backbones": [{"name": "open_clip", "options": {"model": "toyworld-rn"}}],
            "steps": 2,
            "copies": 1,
            "resolution": [{"step": 0, "size": 32}],
            "device": "cpu",
        },
    }
    report = clipforge.analyse("layer", spec, progress=False)
    assert report["analysis"] == "layer" and list(tmp_path.iterdir()) == []
    page = report._repr_html_()
    assert "<table>" in page and "<img" in page and "data:image/png;base64," in page


# --------------------------------------------------------------------------- more kinds of object


def test_functions_and_component_classes_as_regularisers_and_augmentations():
    def tv(images):  # the built-in tv's formula (p = 2)
        x = images
        maps = (
            x[:, :, :, 1:] - x[:, :, :, :-1],
            x[:, :, 1:, :] - x[:, :, :-1, :],
            x[:, :, 1:, 1:] - x[:, :, :-1, :-1],
            x[:, :, 1:, :-1] - x[:, :, :-1, 1:],
        )
        return sum(m.norm(p=2, dim=(2, 3)).mean(dim=1) for m in maps)

    builtin = clipforge.visualize("toyworld-rn", "layer3:5", **SMALL)
    function = clipforge.visualize(
        "toyworld-rn", "layer3:5", regularizers=[{"name": tv, "options": {"weight": 0.02}}], **SMALL
    )
    assert torch.equal(builtin.images, function.images)

    class Mirror(clipforge.Augmentation):
        name = "mirror"

        def __call__(self, copies, ctx):
            return copies.flip(-1)

    flipped = clipforge.visualize("toyworld-rn", "layer3:5", augmentations=[Mirror], **SMALL)
    by_function = clipforge.visualize("toyworld-rn", "layer3:5", augmentations=[lambda c, ctx: c.flip(-1)], **SMALL)
    assert torch.equal(flipped.images, by_function.images) and not torch.equal(flipped.images, builtin.images)
    with pytest.raises(TypeError, match=r"parameterization: a function cannot be a parameterization"):
        clipforge.visualize("toyworld-rn", "layer3:5", parameterization=lambda: None, **SMALL)


def test_an_open_clip_model_object_with_openai_vocabulary_needs_no_tokenizer():
    from helpers import tiny_backbone

    backbone = clipforge.backbone_of(tiny_backbone())  # an open_clip CLIP from a config: OpenAI's BPE vocabulary
    by_name = clipforge.visualize(tiny_backbone(), prompt("a red circle"), **SMALL)
    as_object = clipforge.visualize(backbone.model, prompt("a red circle"), **SMALL)
    assert torch.equal(by_name.images, as_object.images)


def test_a_timm_tower_brings_its_normalisation_and_input_size():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    ref = clipforge.model(net)
    mean, std, size, _ = ref.preprocessing()
    assert (mean, std, size) == (
        net.pretrained_cfg["mean"],
        net.pretrained_cfg["std"],
        net.pretrained_cfg["input_size"][1:],
    )
    result = clipforge.visualize(net, "layer1:0", **{**SMALL, "steps": 2})
    assert result.images.shape == (1, 3, 32, 32)


def test_in_a_notebook_the_progress_bar_is_one_view_updated_in_place(monkeypatch):
    display = pytest.importorskip("IPython.display")
    from clipforge import progressbar

    shown = []

    class Handle:
        def update(self, view):
            shown.append(("update", view.data))

    def show(view, display_id):
        assert display_id is True
        shown.append(("new", view.data))
        return Handle()

    monkeypatch.setattr(display, "display", show)
    monkeypatch.setattr(progressbar, "in_notebook", lambda: True)
    bar = progressbar.progress_bar()
    task = bar.add_task("inverting 1 image", total=10)
    bar.start()
    for i in range(10):
        bar.update(task, completed=i + 1)
    bar.stop()
    assert [kind for kind, _ in shown[:1]] == ["new"] and {kind for kind, _ in shown[1:]} == {"update"}
    assert "10/10 (100%)" in shown[-1][1] and "<progress value='10'" in shown[-1][1]


def test_a_function_is_weighted_through_objective_and_callbacks_go_by_name(tmp_path):
    def five(f):
        return f.channels("layer3")[:, 5].mean(1)

    weighted = clipforge.visualize("toyworld-rn", 2 * clipforge.objective(five), **SMALL)
    builtin = clipforge.visualize("toyworld-rn", 2 * channel("layer3", 5), **SMALL)
    assert torch.equal(weighted.images, builtin.images)
    clipforge.visualize("toyworld-rn", "layer3:5", out=tmp_path / "m", callbacks=["metrics"], **SMALL)
    assert len((tmp_path / "m" / "metrics.jsonl").read_text().splitlines()) == 6


def test_a_component_class_is_listed_among_a_runs_python_objects(tmp_path):
    class Flat(clipforge.Regularizer):
        name = "flat_here"

        def __call__(self, images):
            return images.std(dim=(1, 2, 3))

    clipforge.visualize("toyworld-rn", "layer3:5", regularizers=[Flat], out=tmp_path / "r", **SMALL)
    listed = json.loads((tmp_path / "r" / "run.json").read_text())["python_objects"]
    assert listed == [f"regularizers[0]: flat_here (the class {Flat.__qualname__})"]
