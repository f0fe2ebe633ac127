"""The run spec: what a JSON file passed to ``clipforge invert`` may contain.

Every default reproduces the paper's setup (../shared/PAPER.md): a spec that gives only a prompt
inverts it on OpenAI's ViT-B/16 exactly as the authors did. Components (backbones, the
parameterisation, augmentations, regularisers, callbacks) are named, and their options are
validated by the component's own ``Options`` model in a second pass
(:meth:`clipforge.registry.Registry.resolve`), so every error carries the JSON path where it
happened, e.g. ``regularizers[1].options.weight``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from clipforge.errors import SpecError
from clipforge.specbase import LIMITS, Seed, StrictModel, check_seed_values
from clipforge.specfile import apply_overrides, read_object, validate

#: what a run itself writes in its output folder (see :mod:`clipforge.outputs`): a component's file
#: must not be one of these, nor lie inside one (compared without case: some file systems ignore it)
RESERVED_OUTPUTS = (
    "spec.json",
    "run.json",
    "images",
    "images.safetensors",
    "checkpoint.safetensors",
    "snapshots",
    "index.html",
    ".clipforge.lock",
)


def inside_the_output_folder(value: str) -> str:
    parts = value.replace("\\", "/").split("/")
    if not value.strip() or value.startswith(("/", "~")) or ".." in parts or re.match(r"^[A-Za-z]:", value):
        raise ValueError(
            f"must be a file name inside the run's output folder (no absolute path, no '..'), not {value!r}"
        )
    first = next((p for p in parts if p not in ("", ".")), "")
    if not first:
        raise ValueError(f"must name a file inside the run's output folder, not {value!r}")
    if first.lower() in RESERVED_OUTPUTS or (first.startswith(".") and first.lower().endswith(".tmp")):
        raise ValueError(
            f"{value!r} is one of the run's own files ({', '.join(RESERVED_OUTPUTS)}, and temporary '.*.tmp' "
            "files); choose another name"
        )
    return value


#: a file name an option gives for writing: relative, inside the run's output folder (a component
#: writes it through ``RunInfo.output_path``)
OutputName = Annotated[str, AfterValidator(inside_the_output_folder)]


def _not_empty_folder(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("is empty: give a folder, or null for the default one")
    return value


#: an output folder a spec may name: null for the default one, never an empty string
OutputFolder = Annotated[str | None, AfterValidator(_not_empty_folder)]


def _not_blank_text(value: str | None) -> str | None:
    """A prompt's text must say something: one of white space only would be encoded as the empty
    text (its start and end tokens alone) and inverted as if it were a prompt."""
    if value is not None and not value.strip():
        raise ValueError(f"is only white space ({value!r}): give the text the images should match, or leave it out")
    return value


#: a prompt's (or a term's) text: at least one character that is not white space
PromptText = Annotated[str | None, AfterValidator(_not_blank_text)]


def distinct_seeds(value: list[int]) -> list[int]:
    """Each seed once: a seed makes one image per prompt, so a repeated one would make the same image
    twice under one name (and one file). Refused naming the repeated value and its places."""
    places: dict[int, list[int]] = {}
    for i, seed in enumerate(value):
        places.setdefault(seed, []).append(i)
    repeated = [(seed, where) for seed, where in places.items() if len(where) > 1]
    if repeated:
        said = []
        for seed, where in repeated:
            times = "twice" if len(where) == 2 else f"{len(where)} times"
            listed = ", ".join(f"seeds[{i}]" for i in where[:-1]) + f" and seeds[{where[-1]}]"
            said.append(f"seed {seed} is given {times} ({listed})")
        raise ValueError(f"{'; '.join(said)}: each seed makes one image per prompt, so give each seed once")
    return value


# --------------------------------------------------------------------------- parts


class ComponentRef(StrictModel):
    """A component by name, with its options (validated later by the component's own model)."""

    name: str = Field(description="The component's registered name (see `clipforge plugins`).")
    options: dict[str, Any] = Field(default_factory=dict, description="The component's options.")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


def spec_path(value: str, info: ValidationInfo) -> Path:
    """The path a file option names: a relative one is taken relative to the spec file's folder (the
    working directory for a spec given as a dict), whoever's option it is (a prompt's image, a
    direction's vector, MACO's spectrum)."""
    path = Path(value).expanduser()
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path


def existing_image(value: str | None, info: ValidationInfo) -> str | None:
    """A validator for an option that names an image file (a prompt's image, the pixel plugin's
    ``init_image``): a relative path is taken relative to the spec file's folder (the working
    directory for a spec given as a dict), and the file must be readable whole. Returns the absolute
    path, so the run records which file it used."""
    if value is None:
        return None
    path = spec_path(value, info)
    if not path.is_file():
        raise ValueError(f"no such image file: {str(path)!r}")
    from clipforge.images import read_image  # torch: imported only when a spec names an image

    read_image(path, (1, 1))  # the whole file: a truncated one fails here, not mid-run
    return str(path.resolve())


class PromptTerm(StrictModel):
    """One term of a prompt's objective: a text or an image (encoded by each backbone). A negative
    weight pushes the image away from it."""

    text: PromptText = Field(None, min_length=1)
    image: str | None = Field(None, description="An image file used as a target (path relative to the spec).")
    weight: float = 1.0

    _image_exists = field_validator("image")(existing_image)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"text": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_source(self) -> PromptTerm:
        if (self.text is None) == (self.image is None):
            raise ValueError("give exactly one of 'text' or 'image'")
        return self

    @property
    def key(self) -> tuple[str, str]:
        return ("image", self.image) if self.image is not None else ("text", self.text)  # type: ignore[return-value]

    def display(self) -> str:
        return self.text if self.text is not None else f"image:{Path(self.image or '').name}"


class Prompt(StrictModel):
    """A target: a text, an image or weighted terms, and the objectives its images pursue (by
    default the spec's ``objectives``, the paper's similarity to the prompt). A prompt of objectives
    alone (a channel, a direction) has no text. Each prompt gives independent images."""

    text: PromptText = Field(None, min_length=1, description="The prompt text.")
    image: str | None = Field(None, description="An image file as the target.")
    terms: list[PromptTerm] | None = Field(None, min_length=1, description="Weighted texts or images.")
    weight: float = Field(1.0, description="Multiplier of its terms' weights (what the 'prompt' objective reads).")
    combine: Literal["losses", "embedding"] = Field(
        "losses",
        description="How terms combine: 'losses' sums weighted distances to each term; 'embedding' "
        "aims at the normalised weighted sum of the positive terms' embeddings (negative terms stay separate).",
    )
    objectives: list[ComponentRef] | None = Field(
        None,
        min_length=1,
        description="This prompt's goal, a weighted sum of objectives (see `clipforge plugins`); "
        "null: the spec's `objectives`.",
    )
    label: str | None = Field(None, description="Name used in file names and reports.")

    _image_exists = field_validator("image")(existing_image)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"text": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_source(self) -> Prompt:
        if sum(x is not None for x in (self.text, self.image, self.terms)) > 1:
            raise ValueError("give at most one of 'text', 'image' or 'terms'")
        return self

    @property
    def has_target(self) -> bool:
        """Whether it names a text, an image or terms (a prompt of objectives alone does not)."""
        return any(x is not None for x in (self.text, self.image, self.terms))

    def resolved_terms(self) -> list[PromptTerm]:
        if self.terms is not None:
            return [t.model_copy(update={"weight": t.weight * self.weight}) for t in self.terms]
        return [PromptTerm(text=self.text, image=self.image, weight=self.weight)]

    def display(self) -> str:
        """Its label, else :meth:`described`."""
        return self.label or self.described()

    def described(self) -> str:
        """What it asks for, whatever its label: its text, its image's name, its weighted terms, or
        its objectives' names."""
        if self.terms is not None:
            return " + ".join(f"{t.weight:g}*{t.display()}" for t in self.terms)
        if self.text is not None:
            return self.text
        if self.image is not None:
            return f"image:{Path(self.image).name}"
        return " + ".join(ref.name for ref in self.objectives or []) or "objectives"


class ResolutionStep(StrictModel):
    step: int = Field(ge=0, description="From this step on...")
    size: int = Field(ge=1, le=LIMITS["size"], description="...the image is this many pixels square.")


class OptimizerSpec(StrictModel):
    """The optimiser. A field the spec does not set takes the parameterisation's default where it
    declares one (``Parameterization.default_optimizer``: fourier's learning rate, say), else the
    default here (the paper's Adam, lr 0.1); the resolved spec shows the values used."""

    name: Literal["adam", "nadam"] = Field(
        "adam", description="'adam' (the paper's) or 'nadam' (Adam with Nesterov momentum, as MACO uses)."
    )
    lr: float = Field(0.1, gt=0)
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam's (or NAdam's) betas, each in [0, 1).")
    eps: float = Field(1e-8, gt=0)
    grad_clip: float | None = Field(1.0, gt=0, description="Clip each image's gradient norm to this.")
    reset_on_resize: bool = Field(True, description="A fresh optimiser at every resize (the paper's).")

    @field_validator("betas")
    @classmethod
    def _betas(cls, value: tuple[float, float]) -> tuple[float, float]:
        for i, beta in enumerate(value):
            if not 0 <= beta < 1:
                raise ValueError(f"betas[{i}] must be in [0, 1), not {beta}")
        return value


class OutputSpec(StrictModel):
    rescale: Literal["minmax", "clamp"] = Field(
        "minmax", description="PNGs: 'minmax' rescales each image to [0, 1] (the paper's); 'clamp' clips."
    )
    attribution: bool = Field(
        False,
        description="Also save each image's attribution map: the absolute gradient of its objective (the data "
        "term, without the regularisers) with respect to the un-augmented image, summed over colour channels and "
        "over every step (images/<row>.attribution.png, and 'attribution' in images.safetensors).",
    )


class PerformanceSpec(StrictModel):
    """How fast, not what: none of these change the objective. The defaults are exact fp32."""

    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="'bf16': autocast the backbones' forward passes (images and loss stay fp32)."
    )
    tf32: bool = Field(False, description="Allow TF32 for fp32 matmuls and convolutions on CUDA.")
    compile: bool = Field(False, description="torch.compile each backbone's image encoder.")
    channels_last: bool = Field(False, description="Channels-last memory layout (for convolutional towers).")
    chunk_copies: int | None = Field(
        None,
        ge=1,
        description="Send at most this many copies through the backbones at once, accumulating "
        "gradients (same result, less memory).",
    )


def _paper_backbone() -> list[ComponentRef]:
    return [ComponentRef(name="open_clip", options={"model": "ViT-B-16", "pretrained": "openai"})]


def _paper_augmentations() -> list[ComponentRef]:
    return [
        ComponentRef(name="random_affine"),
        ComponentRef(name="resize"),
        ComponentRef(name="color_shift"),
    ]


def _paper_regularizers() -> list[ComponentRef]:
    return [ComponentRef(name="tv", options={"weight": 0.005}), ComponentRef(name="l1", options={"weight": 0.0})]


def _paper_resolution() -> list[ResolutionStep]:
    return [ResolutionStep(step=0, size=64), ResolutionStep(step=900, size=128), ResolutionStep(step=1800, size=224)]


def _paper_objectives() -> list[ComponentRef]:
    return [ComponentRef(name="prompt")]


def _default_callbacks() -> list[ComponentRef]:
    return [ComponentRef(name="progress"), ComponentRef(name="metrics"), ComponentRef(name="snapshots")]


class RunSpec(StrictModel):
    """One inversion run: prompts x seeds images, optimised together."""

    #: the spec file's folder, against which components' relative file options resolve (None: the
    #: working directory); not part of the spec's data or hash
    _base_dir: str | None = PrivateAttr(None)

    prompts: list[Prompt] = Field(
        default_factory=lambda: [Prompt()],
        min_length=1,
        max_length=LIMITS["prompts"],
        description="Targets; each gives one image per seed (default: one prompt that pursues the spec's "
        "objectives alone).",
    )
    seeds: Annotated[list[Seed], BeforeValidator(check_seed_values), AfterValidator(distinct_seeds)] = Field(
        default_factory=lambda: [0],
        min_length=1,
        max_length=LIMITS["seeds"],
        description="One image per seed and prompt; each seed once.",
    )
    backbones: list[ComponentRef] = Field(
        default_factory=_paper_backbone, min_length=1, description="Models to invert; their losses are averaged."
    )
    parameterization: ComponentRef = Field(default_factory=lambda: ComponentRef(name="pixel"))
    augmentations: list[ComponentRef] = Field(
        default_factory=_paper_augmentations, description="Applied in order to every copy."
    )
    copies: int = Field(13, ge=1, le=LIMITS["copies"], description="Augmented copies of each image per step.")
    regularizers: list[ComponentRef] = Field(default_factory=_paper_regularizers)
    objectives: list[ComponentRef] = Field(
        default_factory=_paper_objectives,
        min_length=1,
        description="The goal of every prompt that names none of its own: a weighted sum of objectives "
        "(the paper's: the similarity to the prompt).",
    )
    data_term: Literal["l2", "cosine"] = Field(
        "l2", description="'l2': distance between normalised embeddings (the authors' code); 'cosine': 1 - cos."
    )
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    steps: int = Field(3400, ge=1, le=LIMITS["steps"])
    resolution: list[ResolutionStep] = Field(default_factory=_paper_resolution, min_length=1)
    device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'.")
    output_dir: OutputFolder = Field(None, description="Where results go (the CLI's --out wins).")
    callbacks: list[ComponentRef] = Field(default_factory=_default_callbacks)
    log_every: int = Field(1, ge=1, description="Gather metrics from the device every N steps.")
    checkpoint_every: int | None = Field(
        None,
        ge=1,
        description="Write the images, run.json and the optimisation state every N steps, so that a killed run "
        "loses at most N steps (default: every 5 % of the steps).",
    )
    checkpoint_seconds: float | None = Field(
        300.0,
        gt=0,
        description="Also write them whenever this many seconds of wall time have passed since the last "
        "checkpoint, so that a killed run loses at most that much work however long it is (null: by steps only).",
    )
    output: OutputSpec = Field(default_factory=OutputSpec)
    performance: PerformanceSpec = Field(default_factory=PerformanceSpec)

    @model_validator(mode="before")
    @classmethod
    def _single_backbone(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("backbones"), (dict, str)):
            value = {**value, "backbones": [value["backbones"]]}
        return value

    @model_validator(mode="after")
    def _not_too_many_images(self) -> RunSpec:
        images = len(self.prompts) * len(self.seeds)
        if images > LIMITS["images"]:
            raise ValueError(
                f"{len(self.prompts)} prompts x {len(self.seeds)} seeds = {images} images in one run; at most "
                f"{LIMITS['images']} (split the work into several runs)"
            )
        return self

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError(f"device must be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N', not {value!r}")
        return value

    @field_validator("resolution")
    @classmethod
    def _schedule(cls, value: list[ResolutionStep]) -> list[ResolutionStep]:
        if value[0].step != 0:
            raise ValueError("the first resolution entry must start at step 0")
        for a, b in zip(value, value[1:]):
            if b.step <= a.step:
                raise ValueError(f"resolution steps must increase (step {b.step} after {a.step})")
            if b.size < a.size:
                raise ValueError(f"resolution sizes may only grow ({b.size} after {a.size})")
        return value

    def goal(self, prompt_index: int) -> list[ComponentRef]:
        """The objectives the images of a prompt pursue: its own, else the spec's."""
        return self.prompts[prompt_index].objectives or self.objectives

    def digest(self, exclude: set[str]) -> str:
        """A short digest of every setting but those in ``exclude``. The objectives are left out where
        they are the paper's, so that a spec written before objectives existed keeps its digest (and a
        run started then still resumes)."""
        data = self.model_dump(mode="json", exclude=exclude)
        if data.get("objectives") in _PAPER_GOALS:
            del data["objectives"]
        for section, key, default in _LATER_FIELDS:
            if data.get(section, {}).get(key, default) == default:
                data.get(section, {}).pop(key, None)
        for prompt in data.get("prompts", []):
            if prompt.get("objectives") is None:
                prompt.pop("objectives", None)
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def settings_hash(self) -> str:
        """A short digest of every setting but ``output_dir`` (callbacks, ``log_every`` and device
        too): the default output folder's name, so two different runs of one file never share one."""
        return self.digest({"output_dir"})

    def checkpoint_interval(self) -> int:
        """Steps between checkpoints: ``checkpoint_every``, or 5 % of the run."""
        return self.checkpoint_every or max(1, self.steps // 20)

    def size_at(self, step: int) -> int:
        size = self.resolution[0].size
        for entry in self.resolution:
            if entry.step <= step:
                size = entry.size
        return size

    def hash(self) -> str:
        """A short digest of everything that affects the images (not where they are written)."""
        return self.digest({"output_dir", "callbacks", "log_every", "device", "checkpoint_every", "checkpoint_seconds"})


# the paper's goal as a spec dumps it, before and after its options are filled in
_PAPER_GOALS = ([{"name": "prompt", "options": {}}], [{"name": "prompt", "options": {"weight": 1.0}}])

# settings added after digests were first recorded (section, key, default): left out of the digest
# at their default, so that a spec written before them keeps its digest (and its runs still resume)
_LATER_FIELDS = (("output", "attribution", False),)

# fields of RunSpec that name components, and the kind of component each names (a prompt's own
# ``objectives`` are objectives too)
COMPONENT_FIELDS: dict[str, str] = {
    "backbones": "backbone",
    "parameterization": "parameterization",
    "augmentations": "augmentation",
    "regularizers": "regularizer",
    "objectives": "objective",
    "callbacks": "callback",
}


# --------------------------------------------------------------------------- loading


def parse_spec(data: Any, source: str | None = None) -> RunSpec:
    """Validate the spec's own structure (component options are checked by ``Registry.resolve``).

    Relative image paths are taken relative to the spec file's folder.
    """
    base_dir = str(Path(source).parent) if source else None
    spec = validate(RunSpec, data, source, context={"base_dir": base_dir})
    spec._base_dir = base_dir
    return spec


def load_spec(
    source: str | Path | dict[str, Any] | RunSpec,
    overrides: list[str] | None = None,
) -> RunSpec:
    """A RunSpec from a file path, a dict or a RunSpec, with optional ``--set`` style overrides."""
    if isinstance(source, RunSpec):
        if not overrides:
            return source
        data, name = source.model_dump(mode="json"), None
    else:
        data, name = read_object(source)
    if overrides:
        try:
            data = apply_overrides(data, overrides, RunSpec)
        except SpecError as exc:
            raise exc.within(name) from None
    spec = parse_spec(data, name)
    if isinstance(source, RunSpec):
        spec._base_dir = source._base_dir
    return spec
