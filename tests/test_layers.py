"""Layers by name (issue 26, point 3): the image tower's module tree with output shapes, a wrong name
answered with the nearest ones, and activation hooks that never outlive the block that set them."""

from __future__ import annotations

import json

import pytest
import torch

from clipforge import Backbone, Options, load_backbone
from clipforge.cli import main
from clipforge.layers import LayerError, captured, find_layer, image_tower, list_layers

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def rn() -> Backbone:
    return load_backbone({"name": "open_clip", "options": {"model": "toyworld-rn"}}, CPU)


def test_the_image_towers_layers_are_listed_with_their_shapes(rn):
    layers = {layer.name: layer for layer in list_layers(rn)}
    assert layers["conv1"].kind == "Conv2d" and layers["conv1"].shape == (1, 8, 32, 32)  # stride 2 on 64 px
    assert layers["layer4"].shape[:2] == (1, 512) and layers["attnpool"].shape == (1, 128)  # the embedding
    assert list(layers)[0] == "conv1"  # in the module tree's order


def test_an_unknown_layer_names_the_nearest(rn):
    with pytest.raises(LayerError, match=r"no layer 'layer5'.*nearest: .*layer4"):
        find_layer(image_tower(rn), "layer5")
    with pytest.raises(LayerError, match="no layer ''"):  # the tower itself is no layer
        find_layer(image_tower(rn), "")


def test_hooks_are_removed_when_the_block_ends_also_after_an_error(rn):
    tower = image_tower(rn)
    image = torch.full((2, 3, 64, 64), 0.5)
    with torch.no_grad(), captured(tower, ["layer2", "layer4"]) as seen:
        rn.encode_image(image)
    assert seen["layer2"].shape[0] == 2 and set(seen) == {"layer2", "layer4"}
    assert not any(m._forward_hooks for m in tower.modules())
    with pytest.raises(RuntimeError, match="stop"), captured(tower, ["layer3"]):
        raise RuntimeError("stop")
    assert not any(m._forward_hooks for m in tower.modules())


def test_a_backbone_without_a_torch_model_has_no_layers():
    class Plain(Backbone):
        name = "plain"

    with pytest.raises(LayerError, match="no torch model"):
        image_tower(Plain(Options(), CPU))


def test_the_layers_command(capsys):
    assert main(["layers", "toyworld-rn", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"name": "attnpool", "kind": "AttentionPool2d", "shape": [1, 128]} in listed
    assert main(["layers", "toyworld-rn"]) == 0
    assert "layer4" in capsys.readouterr().out


def test_captured_activations_are_the_layers_own_though_an_in_place_op_follows():
    """open_clip's ModifiedResNet runs ReLU(inplace=True) on bn1's output: what is captured at bn1 must
    still hold bn1's negative values, and carry gradients."""
    import open_clip

    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8},
        "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 16, "heads": 2, "layers": 1},
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        tower = open_clip.CLIP(**config).visual
    pixels = torch.rand((2, 3, 32, 32), generator=torch.Generator().manual_seed(1), requires_grad=True)
    with captured(tower, ["bn1"]) as seen:
        tower(pixels)
    assert seen["bn1"].min() < 0  # the ReLU after it did not reach the captured copy
    seen["bn1"].sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0
