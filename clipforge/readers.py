"""The reader, the kind of component that reads what analyses ask of images beside the judge's
zero-shot verdicts (colours, objects, a prompt's parts, a drawn marker): the :class:`Reader` base, its
readings (:class:`ColourReading`, :class:`MarkerReading`, :class:`CaptionReading`), the default
reader's name and an analysis spec's ``reader`` field.

It is apart from :mod:`clipforge.components` because it is a whole contract of its own, read only by
analyses, and long enough to hide the kinds a run builds; how an analysis chooses and builds its
reader (:class:`~clipforge.components.ReaderChoice`, :func:`~clipforge.components.choose_reader`)
stays beside :class:`~clipforge.components.Analysis`. Every name here is re-exported by
:mod:`clipforge.components` (and ``clipforge``), as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import Field

from clipforge.componentbase import Component, Options


@dataclass(frozen=True)
class ColourReading:
    """What a reader reads of one image's colours: its dominant colour (None: no colour stands out)
    and each colour's share of the image's coloured pixels (summing to 1, or empty: nothing coloured)."""

    colour: str | None
    shares: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class MarkerReading:
    """How strongly a marker (a concept a reader reads as a drawn pattern) shows in one image: a score
    in [0, 1], whether it counts as drawn, and, where the reader measures it, the share of the image's
    brightness power at the marker's fundamental grating (None: not measured)."""

    score: float
    present: bool
    grating_share: float | None = None


@dataclass(frozen=True)
class CaptionReading:
    """A reader's check of N images against their prompts: ``correct`` per image (everything the
    prompt states is read as stated), ``parts`` per stated part (``"colour"``, ``"shape"``, ...: per
    image, read as stated) and ``summary``, the shares a report shows (each part's, ``"caption"``'s,
    and any more the reader measures, e.g. ``"no_object"``)."""

    correct: list[bool]
    parts: dict[str, list[bool]] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)


#: the reader an analysis spec's ``reader`` names when it is left out: found by name in the registry
#: (the toy world's, a built-in plugin), used only where it can read what the spec asks
DEFAULT_READER = "toyworld"


class Reader(Component):
    """Reads what analyses ask of images, beside the judge's zero-shot verdicts: colours, objects
    (concepts present), a prompt's parts, a drawn marker. An analysis spec chooses one by name
    (``"reader"``; left out: ``"toyworld"``, the toy world's analytic judge).

    Every question is optional: a reader answers the ones it can, and says which through the
    ``reads_*`` / ``*_names`` methods (looked at when a spec is checked, so they only read the options:
    build models lazily, on the first reading). An analysis whose spec names a reader that cannot
    answer what it needs refuses the spec, naming both. Images are (N, 3, H, W) in [0, 1], on any
    device; answers are plain Python, one per image.

    ``registry`` and ``judge`` (the analysis's judge backbone, built) are given when the reader is
    built to read; when it is built to check a spec they are None.
    """

    kind = "reader"
    hook = "register_readers"
    #: how a report names the reader's readings ("the analytic judge"); default: "reader NAME"
    label: ClassVar[str] = ""

    def __init__(self, options: Options, device: torch.device, registry: Any = None, judge: Any = None) -> None:
        super().__init__(options)
        self.device = device
        self.registry = registry
        self.judge = judge

    def describe(self) -> str:
        """How reports name this reader's readings."""
        return self.label or f"reader {self.name!r}"

    # colours (the probe's colour attributes)
    def colour_names(self) -> Sequence[str]:
        """The colour names :meth:`read_colours` reads (empty: it reads no colour)."""
        return ()

    def read_colours(self, images: torch.Tensor) -> list[ColourReading]:
        """Each image's dominant colour and every colour's share (of :meth:`colour_names`)."""
        raise NotImplementedError

    # objects (the blend's concepts)
    def reads_concept(self, concept: str) -> bool:
        """Whether :meth:`concepts_present` can tell if ``concept`` ("a red circle") is in an image."""
        return False

    def concepts_present(self, images: torch.Tensor, concepts: Sequence[str]) -> dict[str, list[bool]]:
        """Per concept, per image: is it there? One object must not count for two concepts."""
        raise NotImplementedError

    def control_captions(self, *concepts: str) -> list[str]:
        """Captions of things that share nothing with ``concepts`` (a blend's controls); ValueError,
        with the reason, for concepts it cannot give controls for."""
        raise ValueError(f"{self.describe()} gives no control captions")

    # captions (the compare's prompts)
    def reads_caption(self, caption: str) -> bool:
        """Whether :meth:`read_captions` can check an image against ``caption``."""
        return False

    def read_captions(self, images: torch.Tensor, prompts: Sequence[str]) -> CaptionReading:
        """Each image (row i) checked against its prompt (``prompts[i]``)."""
        raise NotImplementedError

    # markers (the screen's concepts)
    def marker_names(self) -> Sequence[str]:
        """The concept captions :meth:`read_markers` reads as a drawn marker (empty: none)."""
        return ()

    def marker_grating(self) -> tuple[tuple[float, float], float] | None:
        """The default periods (px) of a marker's fundamental grating and the share above which it is
        read as drawn, where :meth:`read_markers` measures it (None: it does not)."""
        return None

    def read_markers(
        self, images: torch.Tensor, concept: str, grating_periods: tuple[float, float] | None = None
    ) -> list[MarkerReading]:
        """How strongly ``concept`` (one of :meth:`marker_names`) is drawn in each image; with
        ``grating_periods``, the share at that grating too."""
        raise NotImplementedError


def reader_field(**extra: Any) -> Any:
    """An analysis spec's ``reader`` field: a component reference (``{"name": ..., "options": ...}``
    or a bare name) to the reader of kind ``reader``; None: :data:`DEFAULT_READER`."""
    extra.setdefault(
        "description",
        "The reader that reads the images beside the judge (colours, objects, a marker): a component of kind "
        f"'reader'. Left out: the toy world's ('{DEFAULT_READER}'), where it can read the spec.",
    )
    return Field(None, **extra)
