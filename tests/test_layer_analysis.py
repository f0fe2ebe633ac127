"""``clipforge layer`` (issue 26, point 4): every channel of a layer visualised, many channels to a run.

On a tiny random ViT (``conv1``: 32 channels of 4 x 4 maps), a few steps at 16 px: one entry per
channel with its number, image and final activation (measured again here from the saved PNG), a
contact sheet, a report the gallery shows; a channel's image does not depend on the channels that
share its run; and bad input is refused, naming its place in the spec, before anything runs.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers import registry_with, tiny_backbone, write

from clipforge import Backbone, SpecError, captured, image_tower, load_backbone, read_image
from clipforge.analysis import plan_analysis, run_analysis
from clipforge.cli import main
from clipforge.gallery_items import report_items
from clipforge_plugins.analysis_layer import LayerAnalysis, LayerSpec

CPU = torch.device("cpu")


def layer_spec(**fields) -> dict:
    run = {"backbones": [tiny_backbone()], "steps": 3, "copies": 1, "resolution": [{"step": 0, "size": 16}]}
    return {"layer": "conv1", "run": {**run, "device": "cpu"}, **fields}


def run_layer(out=None, **fields) -> tuple[dict, LayerAnalysis]:
    analysis = LayerAnalysis(LayerSpec.model_validate(layer_spec(**fields)))
    return run_analysis(analysis, out, show_progress=False), analysis


def test_every_channel_gets_its_number_image_and_activation_measured_on_the_saved_image(tmp_path):
    out = tmp_path / "report"
    report, _ = run_layer(out, batch=20, seeds=[0, 3])  # 32 channels: runs of 20 and 12 prompts
    assert report["runs"] == 2 and report["layer_channels"] == 32 and report["shape"] == [32, 4, 4]
    assert [e["channel"] for e in report["channels"]] == list(range(32))
    assert [s["seed"] for s in report["channels"][5]["seeds"]] == [0, 3]
    assert json.loads((out / "report.json").read_text())["channels"][5]["image"] == "channels/channel_0005.png"
    # the activation is the backbone's, on the PNG as saved (its two seeds side by side, 2 px apart)
    backbone = load_backbone(tiny_backbone(), CPU)
    png = read_image(out / "channels" / "channel_0005.png", (20, 38))  # no resampling: its own size
    seeds = torch.stack([png[:, 2:18, 2:18], png[:, 2:18, 20:36]])
    pixels = torch.nn.functional.interpolate(seeds, size=(32, 32), mode="bicubic")
    with torch.no_grad(), captured(image_tower(backbone), ["conv1"]) as seen:
        backbone.encode_image(pixels)
    measured = seen["conv1"][:, 5].mean(dim=(1, 2))
    assert [s["activation"] for s in report["channels"][5]["seeds"]] == pytest.approx(measured.tolist(), abs=1e-5)
    # optimised for its channel: above the gray image's activation, for every channel
    assert all(e["activation"] > e["gray"] for e in report["channels"])
    # the contact sheet, the table sorted by channel, and a section per channel for the gallery
    assert (out / "sheet.png").is_file() and all((out / e["image"]).is_file() for e in report["channels"])
    md = (out / "report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(r.split("|")[1]) for r in rows] == list(range(32))
    sections = {s["heading"]: s for s in report_items(out)["report"]}
    five = sections["channel 5"]["blocks"]
    assert five[0]["text"].startswith(f"activation {report['channels'][5]['activation']:.3f}")
    assert (five[1]["type"], five[1]["alt"], five[1]["src"]) == ("image", "channel 5", "channels/channel_0005.png")
    assert sections["Contact sheet"]["blocks"][-1]["src"] == "sheet.png"
    table = LayerAnalysis(LayerSpec.model_validate(layer_spec())).table(report)
    assert table.row_count == 32


def test_a_channels_image_does_not_depend_on_the_channels_beside_it():
    """Every image has its own generator, loss and gradient clipping, so batching only changes the
    order of float sums in the backbone's batched convolutions and matmuls (about 1e-7 relative per
    operation). Three Adam steps at lr 0.1 move a pixel by at most about 0.3; sign flips of gradients
    that are near zero are what could amplify those last-bit differences, and over three steps they
    stay far below one 8-bit level (1/255 = 0.004): 1e-4 is a bound with room, a million times above
    the float noise and forty times below the smallest change an image could show. (On one CPU
    thread the two are in fact bit-identical, also after 20 steps: 0.0 measured.)"""
    channels = [2, 5, 11, 30]
    _, together = run_layer(channels=channels, batch=4, objective="neuron")
    _, alone = run_layer(channels=channels, batch=1, objective="neuron")
    for channel in channels:
        torch.testing.assert_close(together.images[channel], alone.images[channel], atol=1e-4, rtol=0)
    assert not torch.equal(together.images[2], together.images[5])  # different channels, different images


def check_fails(tmp_path, capsys, fields: dict, *expected: str) -> None:
    spec = write(tmp_path, layer_spec(**fields), "layer.json")
    out = tmp_path / "never"
    assert main(["layer", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err, err
    assert not out.exists()  # refused before anything ran or was written


def test_an_unknown_layer_is_refused_naming_the_nearest_ones(tmp_path, capsys):
    check_fails(tmp_path, capsys, {"layer": "conv2"}, "layer.json: layer: no layer 'conv2'", "nearest: conv1")


def test_a_channel_out_of_range_is_refused_naming_its_place(tmp_path, capsys):
    check_fails(tmp_path, capsys, {"channels": [0, 32]}, "channels[1]: channel 32 is out of range", "32 channels")


class NoModel(Backbone):
    """A backbone without a torch model (an API, say): it has no layers to name."""

    name = "no_model"
    input_size = (16, 16)


def test_a_backbone_without_a_torch_model_is_refused_before_anything_runs():
    registry = registry_with(NoModel)  # the command's registry reaches the layer's check (Analysis.check)
    spec = LayerSpec.model_validate({**layer_spec(), "run": {"backbones": [{"name": "no_model"}]}})
    with pytest.raises(SpecError, match=r"^layer: .*no torch model.*\[run\.backbones\[0\]"):
        plan_analysis(LayerAnalysis(spec), registry)


def test_the_judge_defaults_to_the_inverted_backbone_and_the_objectives_are_the_analysiss():
    spec = LayerSpec.model_validate(layer_spec())
    assert spec.judge.model_dump() == tiny_backbone()
    with pytest.raises(ValueError, match="must not set 'objectives'"):
        LayerSpec.model_validate(layer_spec(run={"objectives": ["prompt"]}))
