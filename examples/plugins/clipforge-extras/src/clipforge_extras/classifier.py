"""``clip_classifier`` (reader): what analyses read of real images, by zero-shot classification.

The toy world's reader reads its images by rule; real images have no such rule. This reader asks a
CLIP backbone instead: any backbone the spec names (``backbone``), or, left out, the analysis's own
judge. Nothing is downloaded: it uses the models the spec already uses.

- **colours** (the probe's colour attributes): each image's similarity to ``"a photo of something
  {colour}"`` for every colour of ``colours``, made shares by a softmax (at CLIP's temperature,
  ``scale``); the dominant colour is the largest share, when it reaches ``min_share``;
- **concepts** (the blend's): a concept (any text) is present when the image is closer to it, by more
  than ``margin``, than to every caption of ``negatives`` (captions of nothing in particular).

It gives no control captions, checks no captions part by part and reads no marker: an analysis that
needs those refuses a spec naming it, when the spec is checked.

    "reader": {"name": "clip_classifier", "options": {"colours": ["red", "blue", "green"]}}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field

import clipforge

#: colour names a person would use of a photo (the probe's values must be among ``colours``)
BASIC_COLOURS = [
    "red", "orange", "yellow", "green", "cyan", "blue", "purple", "magenta", "pink", "brown", "black", "white", "gray",
]  # fmt: skip


class ClassifierOptions(clipforge.Options):
    backbone: dict[str, Any] | None = clipforge.component_option(
        "backbone",
        description="The backbone whose similarities classify ({'name': ..., 'options': ...}); left out: the "
        "analysis's judge.",
    )
    colours: list[str] = Field(
        default_factory=lambda: list(BASIC_COLOURS), min_length=2, description="The colour names it reads."
    )
    colour_template: str = Field(
        "a photo of something {}", description="The caption of each colour ({} is the colour's name)."
    )
    scale: float = Field(100.0, gt=0, description="Softmax temperature of the colour shares (CLIP's logit scale).")
    min_share: float = Field(
        0.0, ge=0, le=1, description="The dominant colour is read only when its share reaches this (else None)."
    )
    negatives: list[str] = Field(
        default_factory=lambda: ["a photo", "a blank image", "a texture", "noise"],
        min_length=1,
        description="Captions of nothing in particular: a concept is present when the image is closer to it.",
    )
    margin: float = Field(0.0, description="How much closer to the concept than to every negative, in cosine.")


class ClipClassifier(clipforge.Reader):
    name = "clip_classifier"
    label = "the zero-shot classifier"
    Options = ClassifierOptions

    def _backbone(self) -> clipforge.Backbone:
        if self.options.backbone is not None:
            if not hasattr(self, "_built"):
                registry = self.registry or clipforge.default_registry()
                self._built = registry.build("backbone", self.options.backbone, self.device, where="reader.backbone")
            return self._built
        if self.judge is None:
            raise RuntimeError("clip_classifier reads with the analysis's judge, and it was given none")
        return self.judge

    def _similarities(self, images: torch.Tensor, captions: list[str]) -> torch.Tensor:
        return clipforge.Judge(self._backbone(), captions).similarities(images)

    def colour_names(self) -> Sequence[str]:
        return list(self.options.colours)

    def read_colours(self, images: torch.Tensor) -> list[clipforge.ColourReading]:
        colours = self.options.colours
        sims = self._similarities(images, [self.options.colour_template.format(c) for c in colours])
        shares = (sims * self.options.scale).softmax(dim=1)
        best = shares.argmax(dim=1)
        return [
            clipforge.ColourReading(
                colours[int(b)] if float(row[b]) >= self.options.min_share else None,
                {c: float(v) for c, v in zip(colours, row.tolist())},
            )
            for row, b in zip(shares, best)
        ]

    def reads_concept(self, concept: str) -> bool:
        return bool(concept.strip())

    def concepts_present(self, images: torch.Tensor, concepts: Sequence[str]) -> dict[str, list[bool]]:
        concepts = list(dict.fromkeys(concepts))
        negatives = [n for n in self.options.negatives if n not in concepts]
        sims = self._similarities(images, concepts + negatives)
        floor = sims[:, len(concepts) :].max(dim=1).values + self.options.margin
        return {c: (sims[:, i] > floor).tolist() for i, c in enumerate(concepts)}
