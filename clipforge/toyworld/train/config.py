"""The options of a training run, declared once.

``TrainConfig`` holds one training stage's options with their defaults and descriptions: the
command line's flags are generated from its fields (``cli.py``), ``train_info.json`` records its
dump, and its validation is what a recipe must pass before any training starts. ``Recipe`` adds
the optional second stage of the shipped robust models.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clipforge.toyworld.train.architectures import ARCHS
from clipforge.toyworld.world import WorldConfig

#: what a fine-tuning stage shares with its recipe's first stage: the same model, images and world,
#: printed alike; every other option takes its default unless the stage sets it
SHARED_WITH_FINETUNE = ("arch", "seed", "train_size", "world_overrides", "log_every", "eval_every")
#: options that change what is printed, not what is trained: train_info.json leaves them out
PRINTING_OPTIONS = {"log_every", "eval_every"}


class TrainConfig(BaseModel):
    """One training stage (the argument of ``train``)."""

    model_config = ConfigDict(extra="forbid")

    arch: str = Field(description="the architecture, a key of ARCHS")
    seed: int = Field(description="seeds the initial weights, the training images, their order and augmentations")
    train_size: int = Field(description="how many distinct training images")
    steps: int = Field(description="optimiser steps")
    batch_size: int = Field(128, description="images per step")
    lr: float = Field(1e-3, description="AdamW's peak learning rate (linear warm-up, then cosine decay)")
    weight_decay: float = Field(0.1, description="AdamW's weight decay (none on gains, biases and embeddings)")
    warmup: float = Field(0.05, description="share of the steps that warm the learning rate up")
    adv_eps: float = Field(0.0, ge=0, description="adversarial training radius ([0,1] pixel units)")
    noise_std: float = Field(0.0, ge=0, description="train on images with Gaussian noise, std ~ U(0, this)")
    adv_steps: int = Field(1, ge=1, description="attack steps (1 with L-inf = FGSM with a random start)")
    adv_norm: Literal["linf", "l2"] = Field("linf", description="the adversarial ball's norm")
    affine_p: float = Field(
        0.0, ge=0, le=1, description="share of training images given a random affine (the inversion's ranges)"
    )
    init_from: Path | None = Field(None, description="start from this saved model folder (fine-tuning)")
    world_overrides: dict[str, Any] = Field({}, description="WorldConfig overrides: the world to train on")
    log_every: int = Field(50, description="print the loss every N steps (0: never)")
    eval_every: int = Field(0, description="print zero-shot accuracy every N steps")

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str) -> str:
        if arch not in ARCHS:
            raise ValueError(f"{arch!r} is not one of {sorted(ARCHS)}")
        return arch

    @field_validator("init_from")
    @classmethod
    def _saved_model(cls, folder: Path | None) -> Path | None:
        if folder is not None and not (folder / "open_clip_config.json").is_file():
            raise ValueError(f"{folder}: not a saved model folder (no open_clip_config.json)")
        return folder

    @field_validator("world_overrides", mode="before")
    @classmethod
    def _none_is_no_override(cls, overrides: Any) -> Any:
        return {} if overrides is None else overrides

    @field_validator("world_overrides")
    @classmethod
    def _valid_world(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        WorldConfig(**overrides)
        return overrides

    def recorded_options(self) -> dict[str, Any]:
        """The options as ``train_info.json`` records them first (the world's come last, with its full config)."""
        return self.model_dump(mode="json", exclude=PRINTING_OPTIONS | {"world_overrides"})


class Recipe(TrainConfig):
    """A model's recipe (the form of ``RECIPES``' values): a training stage and, with ``finetune``, a second one
    on the same images from the first stage's weights. A clean model learns the world fast; adversarial
    fine-tuning then makes it robust."""

    finetune: dict[str, Any] | None = Field(
        None, description="the second stage: 'steps' and any options but arch, seed, train_size and init_from"
    )

    @model_validator(mode="after")
    def _finetune_is_a_stage(self) -> Recipe:
        if self.finetune is None:
            return self
        allowed = set(TrainConfig.model_fields) - {"arch", "seed", "train_size", "init_from"}
        if "steps" not in self.finetune or set(self.finetune) - allowed:
            raise ValueError(
                f"finetune: an object with 'steps' and keys among {sorted(allowed)}, got {self.finetune!r}"
            )
        try:
            self.finetune_stage()
        except ValidationError as exc:
            raise ValueError(f"finetune: {describe_errors(exc, allowed)}") from None
        return self

    def first_stage(self) -> TrainConfig:
        """The recipe without its second stage."""
        return TrainConfig(**self.model_dump(exclude={"finetune"}))

    def finetune_stage(self) -> TrainConfig | None:
        """The second stage: the first stage's model, images and world; its other options its own or defaults."""
        if self.finetune is None:
            return None
        return TrainConfig(**{**{name: getattr(self, name) for name in SHARED_WITH_FINETUNE}, **self.finetune})


def describe_errors(error: ValidationError, known: Iterable[str]) -> str:
    """A validation error in a recipe's terms: missing and unknown keys listed with the ``known`` ones, every
    other error after the key it concerns."""
    errors = error.errors()

    def listed(e: Any) -> bool:
        return e["type"] in ("missing", "extra_forbidden") and len(e["loc"]) == 1

    missing = sorted(str(e["loc"][0]) for e in errors if listed(e) and e["type"] == "missing")
    unknown = sorted(str(e["loc"][0]) for e in errors if listed(e) and e["type"] == "extra_forbidden")
    parts = []
    if missing or unknown:
        named = ", ".join(f"{what} {keys}" for what, keys in (("missing", missing), ("unknown", unknown)) if keys)
        parts.append(f"{named}; known keys: {sorted(known)}")
    for e in errors:
        if not listed(e):
            parts.append(": ".join([*map(str, e["loc"]), e["msg"].removeprefix("Value error, ")]))
    return "; ".join(parts)


def check_recipe(recipe: Any) -> Recipe:
    """``recipe`` (the form of ``RECIPES``' values) validated; raises ValueError naming the key at fault, so that a
    typo fails at once instead of after a first stage of training."""
    if not isinstance(recipe, dict):
        raise ValueError(f"a recipe is a JSON object, got {type(recipe).__name__}")
    try:
        return Recipe.model_validate(recipe)
    except ValidationError as exc:
        raise ValueError(describe_errors(exc, Recipe.model_fields)) from None
