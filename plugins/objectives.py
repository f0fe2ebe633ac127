"""Built-in objectives: what a run maximises.

- ``prompt``: the paper's data term, as a value to maximise: minus the weighted distance of each copy's
  embedding to its prompt's terms (the default goal of every prompt);
- ``channel``: the mean activation of one channel of a named layer of the image tower;
- ``neuron``: one channel at one position (the centre by default);
- ``direction``: the cosine between a direction and a layer's activation vectors (averaged over
  positions), or the embedding (the text embedding of one prompt minus another's, say);
- ``image``: the cosine similarity to an image file's embedding;
- ``diversity``: Lucent's diversity term: minus the similarity of a layer's Gram matrices between the
  images of one prompt, so that several seeds of one goal differ;
- ``layer``: a whole layer at once: the mean of its activations, or their mean square (DeepDream);
- ``activations``: feature inversion: match an image file's activations at a layer (a caricature
  when amplified);
- ``interpolate`` and ``alignment``: Lucent's ``channel_interpolate``, one prompt per frame, and its
  alignment term between neighbouring frames.

Layers are named as ``clipforge layers MODEL`` lists them; activations are batch first, (N, C, H, W)
for convolutional maps, (N, L, C) for token sequences, (N, C) for vectors.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator, model_validator
from safetensors import safe_open

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
    captured,
    channel_count,
    channel_maps,
    existing_image,
    hookimpl,
    image_tower,
    layer_shape,
    read_image,
    spec_path,
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
    per image). The similarity is to the positive terms as written, before the prompt's ``weight``
    scales them: a prompt weighted 0 (or negatively) still reports how close its images are to it."""
    per_row: list[list[tuple[torch.Tensor, float, float]]] = []  # (embedding, loss weight, similarity weight)
    written = [p.model_copy(update={"weight": 1.0}).resolved_terms() for p in prompts]
    embedded = embed_terms(backbone, [t.key for row_terms in written for t in row_terms])
    for prompt, row_terms in zip(prompts, written):
        triples = [(embedded[t.key], t.weight * prompt.weight, max(t.weight, 0.0)) for t in row_terms]
        if prompt.combine == "embedding":
            positive = [(e, w) for e, _, w in triples if w > 0]
            mixed = F.normalize(sum(w * e for e, w in positive), dim=-1)
            triples = [(mixed, prompt.weight, 1.0)] + [(e, lw, 0.0) for e, lw, w in triples if w <= 0]
        per_row.append(triples)
    width = max(len(p) for p in per_row)
    dim = next(iter(embedded.values())).shape[-1]
    device = next(iter(embedded.values())).device
    emb = torch.zeros(len(prompts), width, dim, device=device)
    weights = torch.zeros(len(prompts), width, device=device)
    positive = torch.zeros(len(prompts), width, device=device)
    for b, triples in enumerate(per_row):
        for j, (e, w, s) in enumerate(triples):
            emb[b, j], weights[b, j], positive[b, j] = e, w, s
    total = positive.sum(dim=1, keepdim=True)
    sim_w = torch.where(total > 0, positive / total.clamp_min(1e-12), math.nan)  # no positive term: no similarity
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
        for p in sorted({row.prompt_index for row in rows if spec.prompts[row.prompt_index].weight == 0}):
            warnings.warn(
                f"prompts[{p}] has weight 0: its goal is zero and its images follow the regularisers alone "
                "(its similarity is still reported)",
                stacklevel=2,
            )

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


DIRECTION_EPS = 1e-4  # Lucid's and Lucent's eps in the cosine of `cossim_pow`
COSSIM_FLOOR = 0.1  # ... and the floor of that cosine, so that a power of it never changes the dot's sign


def dot_cossim(x: torch.Tensor, y: torch.Tensor, cossim_pow: float, dim: int) -> torch.Tensor:
    """Lucid's and Lucent's ``_dot_cossim`` along ``dim``: ``dot(x, y) * max(0.1, cos(x, y)) ** pow``,
    the cosine with 1e-4 added to each length; ``pow = 0`` is the plain dot product. A dot product
    alone rewards a large activation in any direction near ``y``; the cosine's power favours the
    direction itself."""
    dot = (x * y).sum(dim=dim)
    if cossim_pow == 0:
        return dot
    cos = dot / (DIRECTION_EPS + x.norm(dim=dim)) / (DIRECTION_EPS + y.norm(dim=dim))
    return dot * cos.clamp_min(COSSIM_FLOOR) ** cossim_pow


def resolve_file(value: str | None, info: ValidationInfo, what: str) -> str | None:
    """A file option's absolute path: relative to the spec file's folder, as ``existing_image`` does."""
    if value is None:
        return None
    path = spec_path(value, info)
    if not path.is_file():
        raise ValueError(f"no such {what} file: {str(path)!r}")
    return str(path.resolve())


def read_direction(path: str, key: str | None = None) -> torch.Tensor:
    """One float vector from a ``.npy`` file or a ``.safetensors`` file (its one tensor, or ``key``),
    as float32 on the CPU; every way the file can be wrong is refused here, with the file's name."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".npy", ".safetensors"):
        raise ValueError(f"a direction file is a .npy or .safetensors file, not {path!r}")
    try:
        if suffix == ".npy":
            if key is not None:
                raise ValueError(f"'key' names a tensor of a .safetensors file, and {path!r} is a .npy file")
            array = np.load(path, allow_pickle=False)
            if not isinstance(array, np.ndarray):
                raise ValueError("it is not one array")
            dtype, shape = str(array.dtype), tuple(array.shape)
            floating = np.issubdtype(array.dtype, np.floating)
            vector = torch.from_numpy(array.astype(np.float32)) if floating else None
        else:
            with safe_open(path, "pt") as f:
                keys = list(f.keys())
                if key is None and len(keys) != 1:
                    raise ValueError(
                        f"direction file {path!r} holds {len(keys)} tensors ({', '.join(keys) or 'none'}): "
                        "name one with 'key'"
                    )
                key = key if key is not None else keys[0]
                if key not in keys:
                    raise ValueError(f"direction file {path!r} has no tensor {key!r} (it holds: {', '.join(keys)})")
                tensor = f.get_tensor(key)
            dtype, shape, floating = (
                str(tensor.dtype).removeprefix("torch."),
                tuple(tensor.shape),
                tensor.is_floating_point(),
            )
            vector = tensor.float() if floating else None
    except ValueError as e:
        if str(e).startswith(("direction file", "'key'")):
            raise
        raise ValueError(f"direction file {path!r} cannot be read: {e}") from None
    except Exception as e:  # noqa: BLE001 - numpy's and safetensors' errors for a damaged file vary
        raise ValueError(f"direction file {path!r} cannot be read: {type(e).__name__}: {e}") from None
    if vector is None:
        raise ValueError(f"direction file {path!r} holds {dtype} values: a direction is floating point")
    if len(shape) != 1 or shape[0] == 0:
        raise ValueError(f"direction file {path!r} holds an array of shape {shape}: a direction is one vector, (C,)")
    if not torch.isfinite(vector).all():
        raise ValueError(f"direction file {path!r} holds NaN or infinite values")
    check_not_zero(vector, f"direction file {path!r}")
    return vector


SMALLEST_DIRECTION = 1e-6


def check_not_zero(vector: torch.Tensor, source: str) -> None:
    """Refuse a direction too short to point anywhere: a zero vector, or one whose norm is below
    :data:`SMALLEST_DIRECTION`, where float32 cosines (torch's eps is 1e-8) and dot products give
    zero and the objective would do nothing. Its length does not matter to the cosine: scale it up."""
    norm = float(vector.float().double().norm())
    if not norm >= SMALLEST_DIRECTION:
        raise ValueError(
            f"{source} has norm {norm:.3g}: a direction needs a norm of at least {SMALLEST_DIRECTION:g} "
            "(a zero or vanishing vector points nowhere, and the objective would do nothing)"
        )


class DirectionOptions(ObjectiveOptions):
    layer: str | None = Field(None, description="A layer of the image tower; null: the embedding space.")
    backbone: int = Field(0, ge=0, description="Which backbone's layer (a direction in a layer only).")
    vector: list[float] | None = Field(
        None, min_length=1, description="The direction (a layer's channels, or the embedding's)."
    )
    file: str | None = Field(
        None,
        description="The direction from a file (path relative to the spec file's folder): a .npy file holding one "
        "float vector, or a .safetensors file holding one (or name it with `key`).",
    )
    key: str | None = Field(
        None, min_length=1, description="The tensor of a .safetensors `file` that is the direction."
    )
    text: str | None = Field(
        None, min_length=1, description="Embedding space: the direction of this text's embedding..."
    )
    minus: str | None = Field(None, min_length=1, description="...minus this text's ('red' minus 'blue').")
    cossim_pow: float | None = Field(
        None,
        ge=0,
        description="null: the cosine (averaged over positions). A number: Lucid's and Lucent's "
        "dot(x, v) * max(0.1, cos(x, v))^cossim_pow per position, averaged; 0 is the plain dot product.",
    )

    @field_validator("file")
    @classmethod
    def _file_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        return resolve_file(value, info, "direction")

    @model_validator(mode="after")
    def _one_direction(self) -> DirectionOptions:
        if sum(x is not None for x in (self.vector, self.file, self.text)) != 1:
            raise ValueError("give exactly one of 'vector' or 'text' (with 'minus', optionally) or 'file'")
        if self.minus is not None and self.text is None:
            raise ValueError("'minus' needs 'text'")
        if self.key is not None and self.file is None:
            raise ValueError("'key' needs 'file'")
        if self.layer is not None and self.text is not None:
            raise ValueError("a direction in a layer is a 'vector' of its channels; texts give embedding directions")
        if self.minus is not None and self.minus.strip().lower() == (self.text or "").strip().lower():
            raise ValueError(f"'minus' is 'text' ({self.text!r}): their difference is zero, a direction of nothing")
        if self.vector is not None:
            check_not_zero(torch.tensor(self.vector, dtype=torch.float64), "the vector")
        if self.file is not None:
            read_direction(self.file, self.key)  # a damaged or wrong file is refused now, not at the first step
        return self


class Direction(Objective):
    """The cosine between a direction and the activations (each position's channel vector, averaged
    over positions, as Lucent's) or the normalised embedding; with ``cossim_pow``, Lucid's dot
    product times a power of the cosine instead."""

    name = "direction"
    Options: ClassVar[type[Options]] = DirectionOptions

    def __init__(self, options: DirectionOptions, backbone: Backbone, rows: Sequence[Row], spec: RunSpec) -> None:
        super().__init__(options, backbone, rows, spec)
        given = None
        if options.file is not None:
            given = read_direction(options.file, options.key).to(backbone.device)
            source = f"the direction in {options.file!r}"
        elif options.vector is not None:
            given = torch.tensor(options.vector, device=backbone.device)
            source = "the vector"
        if options.layer is not None:
            assert given is not None  # a layer's direction is a vector or a file (checked by the options)
            shape = layer_shape(backbone, options.layer)
            channels = channel_count(shape)
            if given.shape[0] != channels:
                raise LayerError(
                    f"{source} has {given.shape[0]} values, but layer {options.layer!r} of "
                    f"{backbone.label} has {channels} channels"
                )
            self.vector = given
        elif options.text is not None:
            with torch.no_grad():
                texts = [options.text] + ([options.minus] if options.minus else [])
                emb = F.normalize(backbone.encode_text(texts).float(), dim=-1)
            self.vector = emb[0] - emb[1] if options.minus else emb[0]
            if options.minus:
                check_not_zero(self.vector, f"{options.text!r} minus {options.minus!r} in {backbone.label}")
        else:
            assert given is not None
            self.vector = given
            with torch.no_grad():
                dim = backbone.encode_text(["a"]).shape[-1]
            if self.vector.shape[0] != dim:
                raise ValueError(f"{source} has {self.vector.shape[0]} values, but {backbone.label} embeds in {dim}")

    @classmethod
    def backbone_indices(cls, options: DirectionOptions, count: int) -> list[int]:  # type: ignore[override]
        return [options.backbone] if options.layer is not None else list(range(count))

    @classmethod
    def describe(cls, options: DirectionOptions) -> str:  # type: ignore[override]
        if options.text:
            what = f"{options.text}" + (f" - {options.minus}" if options.minus else "")
        elif options.file:
            what = Path(options.file).name + (f"[{options.key}]" if options.key else "")
        else:
            what = "vector"
        return f"direction {options.layer or 'embedding'}: {what}"

    def layers(self) -> list[str]:
        return [self.options.layer] if self.options.layer is not None else []

    def __call__(self, features: Features) -> torch.Tensor:
        pow_ = self.options.cossim_pow
        if self.options.layer is None:
            if features.embeddings.shape[-1] != self.vector.shape[0]:
                raise ValueError(
                    f"the vector has {self.vector.shape[0]} values, the embedding {features.embeddings.shape[-1]}"
                )
            if pow_ is not None:
                return dot_cossim(features.embeddings, self.vector[None], pow_, dim=-1)
            return F.cosine_similarity(features.embeddings, self.vector[None], dim=-1)
        maps = channel_maps(features.activations[self.options.layer])  # (N, C, P)
        if pow_ is not None:
            return dot_cossim(maps, self.vector.view(1, -1, 1), pow_, dim=1).mean(dim=1)
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
        images_of = Counter(row.prompt_index for row in self.rows)
        alone = sorted(p for p, n in images_of.items() if n < 2)
        if alone:
            raise ValueError(
                f"diversity pushes apart the images of one prompt, and prompts[{alone[0]}] has one image (one seed): "
                "it would do nothing; give two seeds or more"
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


# --------------------------------------------------------------------------- a whole layer


class WholeLayerOptions(LayerOptions):
    reduce: Literal["mean", "l2"] = Field(
        "mean",
        description="'mean': the mean of every activation of the layer; 'l2': the mean of their squares "
        "(Lucid's `deepdream`: DeepDream's goal, every strong response, either sign).",
    )


class WholeLayer(LayerObjective):
    """Every channel of a layer at once, a place to start before picking a channel: the mean of the
    copy's activations over channels and positions, or (``l2``, DeepDream) the mean of their
    squares, i.e. the squared L2 norm of the layer divided by its number of values."""

    name = "layer"
    Options: ClassVar[type[Options]] = WholeLayerOptions

    @classmethod
    def describe(cls, options: WholeLayerOptions) -> str:  # type: ignore[override]
        return f"layer {options.layer}" + (" (l2)" if options.reduce == "l2" else "")

    def __call__(self, features: Features) -> torch.Tensor:
        maps = self.channel_maps(features).flatten(1)  # (N, C * P)
        return maps.square().mean(dim=1) if self.options.reduce == "l2" else maps.mean(dim=1)


# --------------------------------------------------------------------------- feature inversion


class ActivationsOptions(LayerOptions):
    image: str = Field(description="The image whose activations are matched (path relative to the spec file's folder).")
    match: Literal["l2", "cosine", "caricature"] = Field(
        "l2",
        description="'l2': minus the L2 distance to the image's activations (feature inversion, best 0); "
        "'cosine': their cosine (best 1); 'caricature': dot * max(0.1, cos)^cossim_pow, which grows "
        "past the image: what the layer sees in it, amplified (Lucid's caricature).",
    )
    cossim_pow: float = Field(
        1.0, ge=0, description="The cosine's power of 'caricature' (0: the plain dot product); unused otherwise."
    )

    _exists = field_validator("image")(existing_image)


class Activations(LayerObjective):
    """Feature inversion at a layer: the copy's activations (every channel at every position, as
    one vector x) against the image file's (t), computed once at the start. ``l2``: -||x - t||;
    ``cosine``: cos(x, t); ``caricature``: dot(x, t) * max(0.1, cos(x, t))^cossim_pow. The image's
    own activations are the optimum of the first two."""

    name = "activations"
    Options: ClassVar[type[Options]] = ActivationsOptions

    def __init__(self, options: ActivationsOptions, backbone: Backbone, rows: Sequence[Row], spec: RunSpec) -> None:
        super().__init__(options, backbone, rows, spec)
        pixels = read_image(options.image, tuple(backbone.input_size))[None].to(backbone.device)
        with torch.no_grad(), captured(image_tower(backbone), [options.layer]) as seen:
            backbone.encode_image(pixels)
        self.target = channel_maps(seen[options.layer]).flatten(1)[0]  # (C * P,)

    @classmethod
    def describe(cls, options: ActivationsOptions) -> str:  # type: ignore[override]
        name = options.image.replace(chr(92), "/").rsplit("/", 1)[-1]
        return f"activations {options.layer} of {name}" + (" (caricature)" if options.match == "caricature" else "")

    def __call__(self, features: Features) -> torch.Tensor:
        x = self.channel_maps(features).flatten(1)  # (N, C * P)
        t = self.target[None]
        if self.options.match == "l2":
            return -(x - t).norm(dim=1)
        if self.options.match == "cosine":
            return F.cosine_similarity(x, t, dim=1)
        return dot_cossim(x, t, self.options.cossim_pow, dim=1)


# --------------------------------------------------------------------------- channel interpolation


class InterpolateOptions(LayerOptions):
    channel: int = Field(ge=0, description="The channel at mix 0 (Lucent's n_channel1).")
    channel2: int = Field(ge=0, description="The channel at mix 1 (Lucent's n_channel2).")
    layer2: str | None = Field(
        None, description="The second channel's layer; null: `layer`. It must be `layer` (see the docs)."
    )
    mix: float | None = Field(
        None,
        ge=0,
        le=1,
        description="The weight of `channel2`: (1 - mix) * channel + mix * channel2. null: Lucent's, from the "
        "frame: the i-th of the N prompts this objective serves (in prompt order) gets i / (N - 1).",
    )

    @model_validator(mode="after")
    def _one_layer(self) -> InterpolateOptions:
        if self.layer2 is not None and self.layer2 != self.layer:
            raise ValueError(
                f"interpolation between channels of different layers ({self.layer!r} and {self.layer2!r}) is "
                "refused: their activations have different scales, so the blend would follow the larger one; "
                "interpolate two channels of one layer"
            )
        return self


def frames_of(rows: Sequence[Row]) -> tuple[torch.Tensor, int]:
    """Each row's frame, the rank of its prompt among the rows' prompts, and the number of frames."""
    prompts = sorted({row.prompt_index for row in rows})
    return torch.tensor([prompts.index(row.prompt_index) for row in rows]), len(prompts)


class Interpolate(LayerObjective):
    """Lucent's ``channel_interpolate`` within one layer: (1 - mix) times the mean activation of
    ``channel`` plus mix times that of ``channel2``. Each prompt is a frame; with ``mix`` null the
    frames it serves get 0, 1 / (N - 1), ..., 1 in prompt order, as Lucent's batch does, so the
    first frame pursues ``channel`` alone and the last ``channel2`` alone (one frame: 0). An image's
    value does not depend on the other images, only on its frame."""

    name = "interpolate"
    Options: ClassVar[type[Options]] = InterpolateOptions

    def __init__(self, options: InterpolateOptions, backbone: Backbone, rows: Sequence[Row], spec: RunSpec) -> None:
        super().__init__(options, backbone, rows, spec)
        self.check_channel(options.channel)
        self.check_channel(options.channel2)
        frame, count = frames_of(self.rows)
        mix = frame.double() / max(count - 1, 1) if options.mix is None else torch.full((len(self.rows),), options.mix)
        self.mix = mix.float().to(backbone.device)  # (images,)

    @classmethod
    def describe(cls, options: InterpolateOptions) -> str:  # type: ignore[override]
        at = "" if options.mix is None else f" at {options.mix:g}"
        return f"interpolate {options.layer}:{options.channel}-{options.channel2}{at}"

    def __call__(self, features: Features) -> torch.Tensor:
        maps = self.channel_maps(features)
        mix = self.mix[features.image_index]
        first, second = maps[:, self.options.channel].mean(dim=-1), maps[:, self.options.channel2].mean(dim=-1)
        return (1 - mix) * first + mix * second


class AlignmentOptions(LayerOptions):
    decay: float = Field(2.0, gt=0, description="Lucent's decay_ratio: a pair d frames apart counts 1 / decay^d.")
    reach: int = Field(4, ge=1, description="Frames this far apart or closer are compared (Lucent's 4).")


class Alignment(LayerObjective):
    """Lucent's ``alignment``: minus the mean squared difference of a layer's activations between
    neighbouring frames, so that interpolation frames draw analogous things in the same place.
    Frames are the prompts whose goal names it, in prompt order, an image compared with the images of
    the same seed: put it in the spec's ``objectives``, which the frames share (a prompt's own
    ``objectives`` are built for that prompt alone, which has no neighbours). A copy x of image i
    scores -1/2 * sum over the images j of its seed with 1 <= d = |frame(i) - frame(j)| <= reach of
    mean((x - mean of j's copies)^2) / decay^d: with one copy each, the images' values sum to minus
    Lucent's penalty. Its value depends on the other frames (``compares_images``)."""

    name = "alignment"
    Options: ClassVar[type[Options]] = AlignmentOptions
    compares_images = True

    def __init__(self, options: AlignmentOptions, backbone: Backbone, rows: Sequence[Row], spec: RunSpec) -> None:
        super().__init__(options, backbone, rows, spec)
        frame, _ = frames_of(self.rows)
        seed = torch.tensor([row.seed for row in self.rows])
        apart = (frame[:, None] - frame[None, :]).abs()
        near = (seed[:, None] == seed[None, :]) & (apart >= 1) & (apart <= options.reach)
        pair = 0.5 / options.decay ** apart.double()
        self.pairs = torch.where(near, pair, 0.0).float().to(backbone.device)  # (images, images)

    @classmethod
    def describe(cls, options: AlignmentOptions) -> str:  # type: ignore[override]
        return f"alignment {options.layer}"

    def __call__(self, features: Features) -> torch.Tensor:
        x = self.channel_maps(features).flatten(1)  # (N, F)
        images = features.image_index
        count = len(self.rows)
        sums = torch.zeros(count, x.shape[1], device=x.device, dtype=x.dtype).index_add(0, images, x)
        means = sums / torch.bincount(images, minlength=count).clamp_min(1)[:, None].to(x.dtype)  # (images, F)
        # mean((x_n - m_j)^2) for every copy n and image j, without an (N, images, F) tensor
        squared = x.square().sum(1)[:, None] - 2 * x @ means.T + means.square().sum(1)[None, :]
        return -(squared.clamp_min(0) / x.shape[1] * self.pairs[images]).sum(dim=1)


def interpolation(
    layer: str, channel: int, channel2: int, frames: int, alignment: float = 0.0, **options: Any
) -> dict[str, Any]:
    """The part of a run spec that is Lucent's ``channel_interpolate`` over ``frames`` frames: that
    many prompts (labelled by their mix) sharing one ``interpolate`` and, weighted ``alignment``
    (0: none), one ``alignment``, so that both see every frame. ``options`` go to both (``backbone``)."""
    if frames < 2:
        raise ValueError(f"an interpolation needs at least 2 frames, got {frames}")
    goal: list[dict[str, Any]] = [
        {"name": "interpolate", "options": {"layer": layer, "channel": channel, "channel2": channel2, **options}}
    ]
    if alignment:
        goal.append({"name": "alignment", "options": {"layer": layer, "weight": alignment, **options}})
    labels = [f"{layer} {channel} to {channel2} mix {i / (frames - 1):.2f}" for i in range(frames)]
    return {"prompts": [{"label": label} for label in labels], "objectives": goal}


@hookimpl
def register_objectives(register):
    for cls in (
        PromptSimilarity,
        Channel,
        Neuron,
        Direction,
        ImageEmbedding,
        Diversity,
        WholeLayer,
        Activations,
        Interpolate,
        Alignment,
    ):
        register(cls)
