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

The layer objectives (``channel``, ``neuron``, ``diversity``, ``layer``, ``activations``,
``interpolate``, ``alignment``) are written in :mod:`clipforge_plugins.layer_objectives`; this module
registers them with the others, as one plugin, and every one of their names is importable from here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

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
    channel_count,
    channel_maps,
    existing_image,
    hookimpl,
    layer_shape,
    read_image,
    spec_path,
)
from clipforge_plugins.layer_objectives import (  # noqa: F401  (re-exported: the layer objectives lived here)
    COSSIM_FLOOR,
    DIRECTION_EPS,
    Activations,
    ActivationsOptions,
    Alignment,
    AlignmentOptions,
    Channel,
    ChannelOptions,
    Diversity,
    Interpolate,
    InterpolateOptions,
    LayerObjective,
    LayerOptions,
    Neuron,
    NeuronOptions,
    WholeLayer,
    WholeLayerOptions,
    dot_cossim,
    frames_of,
    interpolation,
)

CLIPFORGE_API = API_VERSION


# --------------------------------------------------------------------------- the prompt (the paper's)


@dataclass
class Targets:
    """Each image's target terms in one backbone's space: embeddings (B, T, D), weights (B, T)."""

    embeddings: torch.Tensor
    weights: torch.Tensor
    similarity_weights: torch.Tensor  # positive weights, normalised per image: the "similarity" metric
    kept: dict[int, tuple[torch.Tensor, ...]] = field(default_factory=dict, repr=False, compare=False)

    def per_copy(self, image_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The embeddings, weights and similarity weights of each copy's image, (N, T, D), (N, T), (N, T);
        kept for an index tensor the engine hands in again at every step (its copies' rows), so that the
        paper's objective gathers them once per run rather than once per step."""
        kept = self.kept.get(id(image_index))
        if kept is None or kept[0] is not image_index:
            if len(self.kept) > 16:  # indices made anew each call (another caller): keep only the last ones
                self.kept.clear()
            kept = (
                image_index,
                self.embeddings[image_index],
                self.weights[image_index],
                self.similarity_weights[image_index],
            )
            self.kept[id(image_index)] = kept
        return kept[1], kept[2], kept[3]


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
    target, weights, similarity_weights = targets.per_copy(image_index)  # (N, T, D), (N, T), (N, T)
    cos = torch.einsum("nd,ntd->nt", embeddings, target)
    if kind == "l2":
        dist = (embeddings[:, None, :] - target).norm(dim=-1)
    else:
        dist = 1.0 - cos
    loss = (dist * weights).sum(dim=-1)
    similarity = (cos * similarity_weights).sum(dim=-1)
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


# --------------------------------------------------------------------------- directions and images


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
