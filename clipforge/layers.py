"""A model's layers by name, as in its module tree, and their output shapes: what a feature
visualisation names (a channel of ``layer3``) and what ``clipforge layers MODEL`` lists.

Layers are named relative to the image tower (``model.visual`` for open_clip models), as
``named_modules`` names them. Activations are captured with forward hooks that are removed when the
block that asked for them ends, also after an error.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from clipforge.components import Backbone
from clipforge.components import channel_maps as channel_maps  # the layout rule lives beside Features


class LayerError(ValueError):
    """A layer that the model does not have, or a backbone without named layers."""


@dataclass(frozen=True)
class Layer:
    name: str  # as in the image tower's module tree
    kind: str  # the module's class
    shape: tuple[int, ...]  # its output for one image at the backbone's input size (batch first)


def image_tower(backbone: Backbone) -> torch.nn.Module:
    """The module whose layers have names: the image tower of a backbone that wraps a torch model
    (its ``tower`` where it names one, else the model's ``visual``, else the model)."""
    model = backbone.model
    tower = getattr(backbone, "tower", None) or getattr(model, "visual", model)
    if not isinstance(tower, torch.nn.Module):
        raise LayerError(f"{backbone.label}: this backbone has no torch model, so no layers to name")
    return tower


def find_layer(tower: torch.nn.Module, name: str) -> torch.nn.Module:
    """The layer called ``name``; an unknown name is an error that names the nearest ones."""
    modules = dict(tower.named_modules())
    if name and name in modules:
        return modules[name]
    nearest = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.4)
    hint = f"; nearest: {', '.join(nearest)}" if nearest else ""
    raise LayerError(f"no layer {name!r} in the image tower ({len(modules) - 1} layers){hint}")


@contextmanager
def captured(tower: torch.nn.Module, names: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """While the block runs, the named layers' latest outputs (the first tensor of a tuple) by name.
    The hooks are removed when the block ends, however it ends."""
    layers = {name: find_layer(tower, name) for name in names}
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module: torch.nn.Module, inputs: object, output: object) -> None:
            tensor = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(tensor, torch.Tensor):  # a copy (gradients still flow through it): an in-place op
                seen[name] = tensor.clone()  # after the layer (ResNets' ReLU(inplace), += identity) must not change it

        return hook

    handles = [layer.register_forward_hook(keep(name)) for name, layer in layers.items()]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def list_layers(backbone: Backbone) -> list[Layer]:
    """Every named layer of the image tower with its output shape, from one gray image."""
    tower = image_tower(backbone)
    names = [name for name, _ in tower.named_modules() if name]
    image = torch.full((1, 3, *backbone.input_size), 0.5, device=backbone.device)
    with torch.no_grad(), captured(tower, names) as seen:
        backbone.encode_image(image)
    kinds = dict(tower.named_modules())
    return [Layer(n, type(kinds[n]).__name__, tuple(seen[n].shape)) for n in names if n in seen]


def layer_shape(backbone: Backbone, name: str) -> tuple[int, ...]:
    """The shape of one image's output of the layer ``name`` (without the batch), from a probe batch
    of two gray images; refused if the layer is unknown, outputs no tensor, or is not batch first."""
    known = backbone.__dict__.setdefault("_clipforge_layer_shapes", {})  # one probe per layer: a layer of
    if name in known:  # 64 channels is 64 objectives on one backbone
        return known[name]
    tower = image_tower(backbone)
    find_layer(tower, name)
    probe = torch.full((2, 3, *backbone.input_size), 0.5, device=backbone.device)
    with torch.no_grad(), captured(tower, [name]) as seen:
        backbone.encode_image(probe)
    out = seen.get(name)
    if out is None:
        raise LayerError(f"layer {name!r} of {backbone.label} gave no tensor when the model embedded an image")
    if out.dim() < 2 or out.shape[0] != 2:
        raise LayerError(
            f"layer {name!r} of {backbone.label} gives shape {tuple(out.shape)} for 2 images: its output is not "
            "batch first, so its channels cannot be read per image"
        )
    known[name] = tuple(out.shape[1:])
    return known[name]


def channel_count(shape: Sequence[int]) -> int:
    """The channels of one image's output (``layer_shape``): (C, H, W) maps, (L, C) tokens, (C,) vectors."""
    return shape[-1] if len(shape) == 2 else shape[0]
