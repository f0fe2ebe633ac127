"""The parts a run spec is made of, each a pydantic model or a checked field type: a component
reference (:class:`ComponentRef`), the prompts (:class:`Prompt`, :class:`PromptTerm`), the optimiser,
resolution, output and performance settings, and the checks on names of files and folders
(:data:`OutputName`, :data:`OutputFolder`), prompt texts and image files (:func:`existing_image`,
:func:`spec_path`).

They are apart from :mod:`clipforge.spec`, which puts them together into :class:`~clipforge.spec.RunSpec`
(with the paper's defaults, the digest and the loading), because each part is read on its own too:
a component's options use :func:`existing_image` and :data:`OutputName`, a sweep's and an analysis's
specs their own prompts. :mod:`clipforge.spec` re-exports every name here, so ``from clipforge.spec
import Prompt`` works as before.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from clipforge.specbase import LIMITS, StrictModel

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
