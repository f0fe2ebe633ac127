"""The toy world's reader (``"reader": "toyworld"``, every analysis spec's default): the analytic judge.

It reads the offline world's images by rule, without weights (``clipforge.toyworld.read_images``):
each image's dominant colour and every palette colour's share (the probe's colour attributes), the
objects in it (the blend's single-object concepts, ``concept_present``), a single-object caption's
colour, shape and background (the comparison's toy-world prompts, ``verdicts``), and the world's
checkerboard marker with its fundamental grating (the screen's ``"a checkerboard pattern"``). It also
gives a blend its control captions (``World.disjoint_captions``).

It answers only about the toy world: colours of its palette, captions in its templates, its marker.
An analysis whose spec leaves ``reader`` out reads with it where it can and reports no readings
elsewhere; one whose spec names it is refused where it cannot. The built-in analyses import nothing
of the toy world: what they read of images comes through this plugin (or another reader).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from clipforge import API_VERSION, CaptionReading, ColourReading, MarkerReading, Options, Reader, hookimpl
from clipforge.toyworld import (
    COLOURS,
    MARKER_GRATING_PERIODS,
    MARKER_GRATING_PRESENT,
    World,
    concept_present,
    marker_grating_share,
    read_images,
    verdicts,
)

CLIPFORGE_API = API_VERSION  # a built-in is written against the API of the clipforge it comes with


class ToyworldReaderOptions(Options):
    """The analytic judge has no settings: its thresholds were fixed on the world's renders."""


class ToyworldReader(Reader):
    name = "toyworld"
    label = "the analytic judge"
    Options = ToyworldReaderOptions

    def colour_names(self) -> Sequence[str]:
        return list(COLOURS)

    def read_colours(self, images: torch.Tensor) -> list[ColourReading]:
        return [ColourReading(r.colour, dict(r.colour_shares)) for r in read_images(images)]

    def reads_concept(self, concept: str) -> bool:
        return World.single_object_template(concept) is not None

    def concepts_present(self, images: torch.Tensor, concepts: Sequence[str]) -> dict[str, list[bool]]:
        readings = read_images(images)
        return {c: [concept_present(r, c) for r in readings] for c in dict.fromkeys(concepts)}

    def control_captions(self, *concepts: str) -> list[str]:
        templates = [World.single_object_template(concept) for concept in concepts]
        for concept, template in zip(concepts, templates):
            if template is None:
                raise ValueError(
                    "the toy world gives controls only for single-object captions of the offline world "
                    f"('a red circle', 'a red circle on a gray background'), not {concept!r}"
                )
        if len(set(templates)) > 1:
            raise ValueError(
                "the toy world gives controls only for captions in one template, not "
                + " and ".join(repr(c) for c in concepts)
            )
        return World.disjoint_captions(*concepts)

    def reads_caption(self, caption: str) -> bool:
        return World.single_object_template(caption) == "full"

    def read_captions(self, images: torch.Tensor, prompts: Sequence[str]) -> CaptionReading:
        found = verdicts(read_images(images), prompts)
        return CaptionReading(
            correct=found.correct,
            parts={"colour": found.colour, "shape": found.shape, "background": found.background},
            summary={k: v for k, v in found.summary().items() if k != "n"},
        )

    def marker_names(self) -> Sequence[str]:
        return [World.planted_captions()["marker"]]

    def marker_grating(self) -> tuple[tuple[float, float], float]:
        return MARKER_GRATING_PERIODS, MARKER_GRATING_PRESENT

    def read_markers(
        self, images: torch.Tensor, concept: str, grating_periods: tuple[float, float] | None = None
    ) -> list[MarkerReading]:
        if concept not in self.marker_names():
            raise ValueError(f"the toy world's marker is {self.marker_names()[0]!r}, not {concept!r}")
        readings = read_images(images)
        shares = marker_grating_share(images, grating_periods).tolist() if grating_periods is not None else None
        return [
            MarkerReading(r.marker, r.marker_present, shares[i] if shares is not None else None)
            for i, r in enumerate(readings)
        ]


@hookimpl
def register_readers(register):
    register(ToyworldReader)
