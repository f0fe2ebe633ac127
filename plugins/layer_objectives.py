"""The built-in objectives of one layer of the image tower, and their helpers: ``channel``,
``neuron``, ``diversity``, ``layer`` (a whole layer, or DeepDream), ``activations`` (feature
inversion, caricatures), Lucent's ``interpolate`` and ``alignment`` (with :func:`interpolation`, the
spec part of a channel interpolation), on the base :class:`LayerObjective`; and :func:`dot_cossim`,
Lucid's cosine-weighted dot product, which ``direction`` uses too.

They are apart from :mod:`clipforge_plugins.objectives` because they are most of its lines and share
one base: that module is still the one plugin, named ``objectives``, that registers every objective
(these included) and re-exports every name here. This module is no plugin of its own (it has no hook
and is not in ``clipforge.registry.BUILTIN_PLUGINS``); it declares the API it was written for, as
every module of the built-ins does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

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
    Row,
    RunSpec,
    captured,
    channel_count,
    channel_maps,
    existing_image,
    image_tower,
    layer_shape,
    read_image,
)

CLIPFORGE_API = API_VERSION


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
