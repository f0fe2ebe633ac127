"""The run spec: what a JSON file passed to ``clipforge invert`` may contain.

Every default reproduces the paper's setup (../shared/PAPER.md): a spec that gives only a prompt
inverts it on OpenAI's ViT-B/16 exactly as the authors did. Components (backbones, the
parameterisation, augmentations, regularisers, callbacks) are named, and their options are
validated by the component's own ``Options`` model in a second pass
(:meth:`clipforge.registry.Registry.resolve`), so every error carries the JSON path where it
happened, e.g. ``regularizers[1].options.weight``.

The parts it is made of (prompts, component references, the optimiser's and the other settings, the
checked file and folder names) are in :mod:`clipforge.specparts`, and importable from here as well.
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
    field_validator,
    model_validator,
)

from clipforge.errors import SpecError
from clipforge.specbase import LIMITS, Seed, StrictModel, check_seed_values
from clipforge.specfile import apply_overrides, read_object, validate
from clipforge.specparts import (  # noqa: F401  (re-exported, those unused here: the spec's parts lived here)
    RESERVED_OUTPUTS,
    ComponentRef,
    OptimizerSpec,
    OutputFolder,
    OutputName,
    OutputSpec,
    PerformanceSpec,
    Prompt,
    PromptTerm,
    PromptText,
    ResolutionStep,
    _not_blank_text,
    _not_empty_folder,
    existing_image,
    inside_the_output_folder,
    spec_path,
)


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
