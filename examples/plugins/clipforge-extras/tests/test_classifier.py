"""The ``clip_classifier`` reader: colours and concepts read by zero-shot classification, through
any backbone (here a fake one whose embeddings are mean colours, so the right answers are known),
and chosen by an analysis spec's ``reader``."""

from __future__ import annotations

import copy
import types

import pytest
import torch
import torch.nn.functional as F
from clipforge_extras.classifier import ClipClassifier
from conftest import TINY_CONFIG

import clipforge
from clipforge.analysis import plan_analysis, run_analysis

RGB = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}


class MeanColour(clipforge.Backbone):
    """A fake backbone: an image embeds as its mean colour, a text as the colour it names (else gray)."""

    name = "fake_mean_colour"
    input_size = (8, 8)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.mean(dim=(2, 3)) - 0.3

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        rows = [next((RGB[w] for w in text.split() if w in RGB), (0.34, 0.33, 0.33)) for text in texts]
        return torch.tensor(rows) - 0.3


def registry() -> clipforge.Registry:
    plugin = types.SimpleNamespace(register_backbones=clipforge.hookimpl(lambda register: register(MeanColour)))
    return clipforge.build_registry(extra_plugins=[("fake_colour_backbone", plugin)])


def images(*colours: str) -> torch.Tensor:
    return torch.stack([torch.tensor(RGB[c]).view(3, 1, 1).expand(3, 16, 16) for c in colours])


def reader(**options) -> ClipClassifier:
    ref = {"name": "clip_classifier", "options": {"backbone": {"name": "fake_mean_colour"}, **options}}
    found = registry()
    return found.build("reader", ref, torch.device("cpu"), found, None)


def test_reads_each_images_colour_and_shares():
    read = reader(colours=["red", "green", "blue"]).read_colours(images("red", "blue", "green"))
    assert [r.colour for r in read] == ["red", "blue", "green"]
    for r in read:
        assert sum(r.shares.values()) == pytest.approx(1.0) and max(r.shares, key=r.shares.get) == r.colour
    mixed = (images("red") + images("blue")) / 2  # as close to red as to blue: no colour stands out
    (read,) = reader(colours=["red", "green", "blue"], min_share=0.9).read_colours(mixed)
    assert read.colour is None and read.shares["red"] == pytest.approx(read.shares["blue"])


def test_reads_concepts_present_against_the_negatives():
    found = reader().concepts_present(images("red", "blue"), ["a red ball", "a blue ball"])
    assert found == {"a red ball": [True, False], "a blue ball": [False, True]}


def test_answers_only_what_it_can():
    r = reader()
    assert "red" in r.colour_names() and r.reads_concept("a dog")
    assert not r.reads_caption("a red circle on a gray background") and list(r.marker_names()) == []
    with pytest.raises(ValueError, match="no control captions"):
        r.control_captions("a cat", "a dog")


def tiny() -> dict:
    return {"name": "open_clip", "options": {"config": copy.deepcopy(TINY_CONFIG)}}


RUN = {"backbones": [tiny()], "steps": 2, "copies": 1, "resolution": [{"step": 0, "size": 16}], "device": "cpu"}


def test_a_probe_reads_colours_with_it_and_a_screen_refuses_it():
    """Chosen by the spec's reader, with the judge as its backbone: every image gets a colour and shares."""
    found = registry()
    probe = found.get("analysis", "probe").cls
    spec = probe.Options(
        run=RUN,
        seeds=2,
        judge=tiny(),
        prompts=["a ball"],
        values={"red": "a red ball", "blue": "a blue ball"},
        reader={"name": "clip_classifier", "options": {"colours": ["red", "blue", "green"]}},
    )
    report = run_analysis(probe(spec), None, found, show_progress=False)
    assert report["reader"]["name"] == "clip_classifier"
    assert all(image["analytic_colour"] in ("red", "blue", "green") for image in report["images"])
    assert report["prompts"]["a ball"]["analytic_share"]["images_read"] == 2
    screen = found.get("analysis", "screen").cls
    refused = screen(
        screen.Options(judge=tiny(), prompts=["a cat"], concepts=["a checkerboard pattern"], reader="clip_classifier")
    )
    with pytest.raises(clipforge.SpecError, match=r"reader: screen needs a reader that reads one of the concepts"):
        plan_analysis(refused, found)


def test_the_fake_backbone_is_what_it_says():
    e = F.normalize(MeanColour(MeanColour.Options(), torch.device("cpu")).encode_text(["red"]), dim=-1)
    assert e.argmax().item() == 0
