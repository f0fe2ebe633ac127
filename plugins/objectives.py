"""Built-in objectives: what a run maximises.

- ``prompt``: the paper's data term, as a value to maximise: minus the weighted distance of each copy's
  embedding to its prompt's terms (the default goal of every prompt);
- ``channel``: the mean activation of one channel of a named layer of the image tower;
- ``neuron``: one channel at one position (the centre by default);
- ``direction``: the cosine between a direction and a layer's activation vectors (averaged over
  positions), or the embedding (the text embedding of one prompt minus another's, say);
- ``image``: the cosine similarity to an image file's embedding;
- ``diversity``: Lucent's diversity term: minus the similarity of a layer's Gram matrices between the
  images of one prompt, so that several seeds of one goal differ.

Layers are named as ``clipforge layers MODEL`` lists them; activations are batch first, (N, C, H, W)
for convolutional maps, (N, L, C) for token sequences, (N, C) for vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator

from clipforge import (
    API_VERSION,
    Backbone,
    Features,
    LayerError,
    Objective,
    ObjectiveOptions,
    Options,
    Prompt,
    Row,
    RunSpec,
    channel_count,
    channel_maps,
    existing_image,
    hookimpl,
    layer_shape,
    read_image,
)

CLIPFORGE_API = API_VERSION


# --------------------------------------------------------------------------- the prompt (the paper's)


@dataclass
class Targets:
    """Each image's target terms in one backbone's space: embeddings (B, T, D), weights (B, T)."""

    embeddings: torch.Tensor
    weights: torch.Tensor
    similarity_weights: torch.Tensor  # positive weights, normalised per image: the "similarity" metric


def embed_terms(backbone: Backbone, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], torch.Tensor]:
    """Normalised embeddings of text and image terms, each computed once."""
    texts = sorted({v for kind, v in keys if kind == "text"})
    images = sorted({v for kind, v in keys if kind == "image"})
    out: dict[tuple[str, str], torch.Tensor] = {}
    with torch.no_grad():
        if texts:
            for t, e in zip(texts, F.normalize(backbone.encode_text(texts).float(), dim=-1)):
                out[("text", t)] = e
        if images:
            pixels = torch.stack([read_image(p, tuple(backbone.input_size)) for p in images]).to(backbone.device)
            for p, e in zip(images, F.normalize(backbone.encode_image(pixels).float(), dim=-1)):
                out[("image", p)] = e
    return out


def embed_targets(backbone: Backbone, prompts: Sequence[Prompt]) -> Targets:
    """Encode every distinct term once, before the loop, and lay the terms out per image (one prompt
    per image)."""
    terms = [p.resolved_terms() for p in prompts]
    embedded = embed_terms(backbone, [t.key for row_terms in terms for t in row_terms])
    per_row: list[list[tuple[torch.Tensor, float]]] = []
    for prompt, row_terms in zip(prompts, terms):
        pairs = [(embedded[t.key], t.weight) for t in row_terms]
        if prompt.combine == "embedding":
            positive = [(e, w) for e, w in pairs if w > 0]
            mixed = F.normalize(sum(w * e for e, w in positive), dim=-1)
            pairs = [(mixed, prompt.weight)] + [(e, w) for e, w in pairs if w <= 0]
        per_row.append(pairs)
    width = max(len(p) for p in per_row)
    dim = next(iter(embedded.values())).shape[-1]
    device = next(iter(embedded.values())).device
    emb = torch.zeros(len(prompts), width, dim, device=device)
    weights = torch.zeros(len(prompts), width, device=device)
    for b, pairs in enumerate(per_row):
        for j, (e, w) in enumerate(pairs):
            emb[b, j] = e
            weights[b, j] = w
    positive = weights.clamp_min(0)
    sim_w = positive / positive.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return Targets(emb, weights, sim_w)


def copy_losses(
    embeddings: torch.Tensor, image_index: torch.Tensor, targets: Targets, kind: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Data term and similarity of each copy. ``embeddings`` are normalised, (N, D); copy ``n``
    belongs to image ``image_index[n]``. Returns two (N,) tensors."""
    target = targets.embeddings[image_index]  # (N, T, D)
    cos = torch.einsum("nd,ntd->nt", embeddings, target)
    if kind == "l2":
        dist = (embeddings[:, None, :] - target).norm(dim=-1)
    else:
        dist = 1.0 - cos
    loss = (dist * targets.weights[image_index]).sum(dim=-1)
    similarity = (cos * targets.similarity_weights[image_index]).sum(dim=-1)
    return loss, similarity


class PromptSimilarity(Objective):
    """The paper's goal: close to the prompt's terms (``data_term``: L2 between normalised embeddings,
    or 1 - cos), away from its negative ones; the similarity it reports is the metrics' ``similarity``."""

    name = "prompt"
    uses_prompt = True

    def __init__(self, options: ObjectiveOptions, backbone: Backbone, rows: Sequence[Row], spec: RunSpec) -> None:
        super().__init__(options, backbone, rows, spec)
        self.targets = embed_targets(backbone, [spec.prompts[row.prompt_index] for row in rows])
        self.distance = spec.data_term

    def __call__(self, features: Features) -> tuple[torch.Tensor, torch.Tensor]:
        dim = self.targets.embeddings.shape[-1]
        if features.embeddings.shape[-1] != dim:
            raise ValueError(
                f"backbone {self.backbone.label!r} embeds images in {features.embeddings.shape[-1]} values but "
                f"texts in {dim}: they are not one space"
            )
        loss, similarity = copy_losses(features.embeddings, features.image_index, self.targets, self.distance)
        return -loss, similarity


# --------------------------------------------------------------------------- layers


class LayerOptions(ObjectiveOptions):
    layer: str = Field(min_length=1, description="A layer of the image tower, as `clipforge layers MODEL` names it.")
    backbone: int = Field(0, ge=0, description="Which of the spec's backbones (its index in `backbones`).")


class LayerObjective(Objective):
    """An objective of one layer of one backbone: checks the layer at the start, reads its shape."""

    Options: ClassVar[type[Options]] = LayerOptions

    def __init__(self, options: LayerOptions, backbone: Backbone, rows: Sequence[Row], spec: RunSpec) -> None:
        super().__init__(options, backbone, rows, spec)
        self.shape = layer_shape(backbone, options.layer)  # one image's output, (C, H, W), (L, C) or (C,)

    @classmethod
    def backbone_indices(cls, options: LayerOptions, count: int) -> list[int]:  # type: ignore[override]
        return [options.backbone]

    def layers(self) -> list[str]:
        return [self.options.layer]

    @property
    def channels(self) -> int:
        return channel_count(self.shape)

    def check_channel(self, channel: int) -> None:
        if not 0 <= channel < self.channels:
            raise LayerError(
                f"channel {channel} is out of range: layer {self.options.layer!r} of {self.backbone.label} has "
                f"{self.channels} channels (0 to {self.channels - 1}; its output per image is {self.shape})"
            )

    def channel_maps(self, features: Features) -> torch.Tensor:
        return channel_maps(features.activations[self.options.layer])


class ChannelOptions(LayerOptions):
    channel: int = Field(ge=0, description="The channel (a feature map's index, or a token feature's).")


class Channel(LayerObjective):
    """The mean activation of one channel over every position: what excites a feature map."""

    name = "channel"
    Options: ClassVar[type[Options]] = ChannelOptions

    def __init__(self, options: ChannelOptions, backbone: Backbone, rows: Sequence[Row], spec: RunSpec) -> None:
        super().__init__(options, backbone, rows, spec)
        self.check_channel(options.channel)

    @classmethod
    def describe(cls, options: ChannelOptions) -> str:  # type: ignore[override]
        return f"channel {options.layer}:{options.channel}"

    def __call__(self, features: Features) -> torch.Tensor:
        return self.channel_maps(features)[:, self.options.channel].mean(dim=-1)


class NeuronOptions(ChannelOptions):
    position: list[int] | None = Field(
        None,
        min_length=1,
        description="[y, x] in a feature map, or [token] in a token sequence; null: the map's centre "
        "(the first token, a ViT's class token).",
    )


class Neuron(Channel):
    """One channel at one position: what excites one unit."""

    name = "neuron"
    Options: ClassVar[type[Options]] = NeuronOptions

    def __init__(self, options: NeuronOptions, backbone: Backbone, rows: Sequence[Row], spec: RunSpec) -> None:
        super().__init__(options, backbone, rows, spec)  # the layer and the channel checked
        spatial = self.shape[1:] if len(self.shape) == 3 else self.shape[:1] if len(self.shape) == 2 else ()
        if not spatial:
            raise LayerError(
                f"layer {options.layer!r} has no positions (its output per image is {self.shape}); use 'channel'"
            )
        position = options.position or ([s // 2 for s in spatial] if len(spatial) == 2 else [0])
        if len(position) != len(spatial) or not all(0 <= p < s for p, s in zip(position, spatial)):
            raise LayerError(
                f"position {position} is not in layer {options.layer!r}, whose positions are "
                + (
                    "[y, x] with y < {}, x < {}".format(*spatial)
                    if len(spatial) == 2
                    else f"[token] with token < {spatial[0]}"
                )
            )
        self.index = position[0] * spatial[1] + position[1] if len(spatial) == 2 else position[0]

    @classmethod
    def describe(cls, options: NeuronOptions) -> str:  # type: ignore[override]
        at = "" if options.position is None else "@" + ",".join(map(str, options.position))
        return f"neuron {options.layer}:{options.channel}{at}"

    def __call__(self, features: Features) -> torch.Tensor:
        return self.channel_maps(features)[:, self.options.channel, self.index]


# --------------------------------------------------------------------------- directions and images


class DirectionOptions(ObjectiveOptions):
    layer: str | None = Field(None, description="A layer of the image tower; null: the embedding space.")
    backbone: int = Field(0, ge=0, description="Which backbone's layer (a direction in a layer only).")
    vector: list[float] | None = Field(
        None, min_length=1, description="The direction (a layer's channels, or the embedding's)."
    )
    text: str | None = Field(
        None, min_length=1, description="Embedding space: the direction of this text's embedding..."
    )
    minus: str | None = Field(None, min_length=1, description="...minus this text's ('red' minus 'blue').")

    @model_validator(mode="after")
    def _one_direction(self) -> DirectionOptions:
        if (self.vector is None) == (self.text is None):
            raise ValueError("give exactly one of 'vector' or 'text' (with 'minus', optionally)")
        if self.minus is not None and self.text is None:
            raise ValueError("'minus' needs 'text'")
        if self.layer is not None and self.text is not None:
            raise ValueError("a direction in a layer is a 'vector' of its channels; texts give embedding directions")
        return self


class Direction(Objective):
    """The cosine between a direction and the activations (each position's channel vector, averaged
    over positions, as Lucent's) or the normalised embedding."""

    name = "direction"
    Options: ClassVar[type[Options]] = DirectionOptions

    def __init__(self, options: DirectionOptions, backbone: Backbone, rows: Sequence[Row], spec: RunSpec) -> None:
        super().__init__(options, backbone, rows, spec)
        if options.layer is not None:
            shape = layer_shape(backbone, options.layer)
            channels = channel_count(shape)
            if len(options.vector or []) != channels:
                raise LayerError(
                    f"the vector has {len(options.vector or [])} values, but layer {options.layer!r} of "
                    f"{backbone.label} has {channels} channels"
                )
            self.vector = torch.tensor(options.vector, device=backbone.device)
        elif options.text is not None:
            with torch.no_grad():
                texts = [options.text] + ([options.minus] if options.minus else [])
                emb = F.normalize(backbone.encode_text(texts).float(), dim=-1)
            self.vector = emb[0] - emb[1] if options.minus else emb[0]
        else:
            self.vector = torch.tensor(options.vector, device=backbone.device)
            with torch.no_grad():
                dim = backbone.encode_text(["a"]).shape[-1]
            if self.vector.shape[0] != dim:
                raise ValueError(f"the vector has {self.vector.shape[0]} values, but {backbone.label} embeds in {dim}")

    @classmethod
    def backbone_indices(cls, options: DirectionOptions, count: int) -> list[int]:  # type: ignore[override]
        return [options.backbone] if options.layer is not None else list(range(count))

    @classmethod
    def describe(cls, options: DirectionOptions) -> str:  # type: ignore[override]
        what = f"{options.text}" + (f" - {options.minus}" if options.minus else "") if options.text else "vector"
        return f"direction {options.layer or 'embedding'}: {what}"

    def layers(self) -> list[str]:
        return [self.options.layer] if self.options.layer is not None else []

    def __call__(self, features: Features) -> torch.Tensor:
        if self.options.layer is None:
            if features.embeddings.shape[-1] != self.vector.shape[0]:
                raise ValueError(
                    f"the vector has {self.vector.shape[0]} values, the embedding {features.embeddings.shape[-1]}"
                )
            return F.cosine_similarity(features.embeddings, self.vector[None], dim=-1)
        maps = channel_maps(features.activations[self.options.layer])  # (N, C, P)
        return F.cosine_similarity(maps, self.vector.view(1, -1, 1), dim=1).mean(dim=1)


class ImageOptions(ObjectiveOptions):
    image: str = Field(description="An image file (path relative to the spec file's folder).")

    _exists = field_validator("image")(existing_image)


class ImageEmbedding(Objective):
    """The cosine similarity to an image's embedding (reported as the similarity, too)."""

    name = "image"
    Options: ClassVar[type[Options]] = ImageOptions

    def __init__(self, options: ImageOptions, backbone: Backbone, rows: Sequence[Row], spec: RunSpec) -> None:
        super().__init__(options, backbone, rows, spec)
        self.target = embed_terms(backbone, [("image", options.image)])[("image", options.image)]

    @classmethod
    def describe(cls, options: ImageOptions) -> str:  # type: ignore[override]
        return f"image {options.image.replace(chr(92), '/').rsplit('/', 1)[-1]}"

    def __call__(self, features: Features) -> tuple[torch.Tensor, torch.Tensor]:
        cos = features.embeddings @ self.target
        return cos, cos


# --------------------------------------------------------------------------- diversity


class Diversity(LayerObjective):
    """Minus the mean cosine similarity between one copy's Gram matrix of the layer and those of the
    other images' copies, among the images of one prompt (Lucent's ``diversity``):
    several seeds of one goal are pushed apart. Its value for an image depends on the other images."""

    name = "diversity"
    compares_images = True

    def __init__(self, options: LayerOptions, backbone: Backbone, rows: Sequence[Row], spec: RunSpec) -> None:
        super().__init__(options, backbone, rows, spec)
        if len(self.shape) < 2:
            raise LayerError(
                f"layer {options.layer!r} has no positions (its output per image is {self.shape}), so no Gram matrix"
            )
        self.prompt_of = torch.tensor([row.prompt_index for row in self.rows], device=backbone.device)

    @classmethod
    def describe(cls, options: LayerOptions) -> str:  # type: ignore[override]
        return f"diversity {options.layer}"

    def __call__(self, features: Features) -> torch.Tensor:
        maps = self.channel_maps(features)  # (N, C, P)
        gram = F.normalize((maps @ maps.transpose(1, 2)).flatten(1) / maps.shape[-1], dim=-1)  # (N, C*C)
        images = features.image_index
        count = len(self.rows)
        sums = torch.zeros(count, gram.shape[1], device=gram.device).index_add(0, images, gram)
        per_image = sums / torch.bincount(images, minlength=count).clamp_min(1)[:, None].to(gram.dtype)
        similar = gram @ per_image.T  # (N, images): the mean cosine to each image's copies (unit Grams)
        prompt = self.prompt_of
        same_prompt = prompt[images][:, None] == prompt[None, :]
        another_image = images[:, None] != torch.arange(count, device=images.device)[None, :]
        others = same_prompt & another_image
        n_others = others.sum(dim=1)
        value = -(similar * others).sum(dim=1) / n_others.clamp_min(1)
        return torch.where(n_others > 0, value, torch.zeros_like(value))


@hookimpl
def register_objectives(register):
    for cls in (PromptSimilarity, Channel, Neuron, Direction, ImageEmbedding, Diversity):
        register(cls)
