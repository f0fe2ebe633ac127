"""Base classes for the kinds of component a plugin can provide.

Every component has a ``name`` (how a spec refers to it) and a nested pydantic ``Options`` model
that rejects unknown keys. The engine builds each component once per run and then calls its
methods directly, so no plugin-manager dispatch happens inside the optimisation loop.

Image convention: images are float tensors of shape (B, 3, H, W), nominally in [0, 1]. During a
step, ``B * K`` augmented copies are processed, laid out image-major (the K copies of image 0,
then the K copies of image 1, ...). Every random draw goes through the per-image
``torch.Generator`` objects handed to the component, so a seed reproduces a run and an image's
result does not depend on which other images share its batch.

What every component shares is in :mod:`clipforge.componentbase`, the values a run hands its
components in :mod:`clipforge.contexts`, the readers (a kind for analyses) in
:mod:`clipforge.readers`; every one of their names is importable from here as well.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import Field

from clipforge.analysis_spec import AnalysisSpec

# what every component shares (Options, Component), apart so that the readers' kind can be too
from clipforge.componentbase import COMPONENT_OPTION as COMPONENT_OPTION
from clipforge.componentbase import Component as Component
from clipforge.componentbase import Options as Options
from clipforge.componentbase import component_option as component_option
from clipforge.componentbase import option_error as option_error

# the values a run hands its components (and a screen hands back)
from clipforge.contexts import AugmentContext as AugmentContext
from clipforge.contexts import Features as Features
from clipforge.contexts import RunInfo as RunInfo
from clipforge.contexts import Screened as Screened
from clipforge.contexts import StepState as StepState
from clipforge.contexts import channel_maps as channel_maps
from clipforge.contexts import draw_per_image as draw_per_image
from clipforge.errors import SpecError

# the readers (a kind of their own, for analyses)
from clipforge.readers import DEFAULT_READER as DEFAULT_READER
from clipforge.readers import CaptionReading as CaptionReading
from clipforge.readers import ColourReading as ColourReading
from clipforge.readers import MarkerReading as MarkerReading
from clipforge.readers import Reader as Reader
from clipforge.readers import reader_field as reader_field
from clipforge.result import InversionResult as InversionResult  # what a run returns, and how it shows itself
from clipforge.result import Row as Row

if TYPE_CHECKING:  # pragma: no cover
    from clipforge.spec import RunSpec


# --------------------------------------------------------------------------- kinds


class Backbone(Component):
    """A frozen CLIP-like model: it embeds images and texts in one space.

    Subclasses set ``input_size`` (H, W) and take care of their own normalisation: the engine hands
    ``encode_image`` pixels in [0, 1] (give or take what augmentations do) at ``input_size``, resized
    with ``interpolation``. One that wraps a torch module sets ``model`` to it: the engine moves it
    to channels-last when the spec asks, and a sweep's plan counts its weights.
    """

    kind = "backbone"
    hook = "register_backbones"
    input_size: tuple[int, int] = (224, 224)
    interpolation: str = "bicubic"
    model: torch.nn.Module | None = None

    def __init__(self, options: Options, device: torch.device) -> None:
        super().__init__(options)
        self.device = device

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embed (N, 3, H, W) pixels; returns (N, D), not necessarily normalised."""
        raise NotImplementedError

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Embed texts; returns (T, D), not necessarily normalised."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        """A short human-readable identity for reports."""
        return self.name

    def captions(self) -> list[str] | None:
        """The captions of the world the model was trained on, where that world is known (the
        offline models know theirs): a judge's candidates when an analysis spec asks for the world's
        captions (``"captions": "world"``). None for a model trained on the open web."""
        return None


class Parameterization(Component):
    """How the optimised variables become images.

    Every parameter tensor returned by ``parameters()`` has the batch as its first dimension, so the
    engine can clip each image's gradient separately.
    """

    kind = "parameterization"
    hook = "register_parameterizations"
    #: the optimiser settings that work for this parameterisation, by the spec's ``optimizer`` field
    #: names (``{"lr": 0.05}``, ``{"name": "nadam", "lr": 1.0}``): a spec that does not set a field
    #: gets it from here, and its resolved spec (``spec.json``) shows the value used. Empty: the
    #: spec's own defaults (the paper's Adam, lr 0.1). Why per parameterisation: a learning rate is
    #: a step in the parameters' units, and a spectrum's or a ladder's units are not pixels'.
    default_optimizer: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        options: Options,
        batch_size: int,
        size: tuple[int, int],
        generators: Sequence[torch.Generator],
        device: torch.device,
    ) -> None:
        super().__init__(options)
        if len(generators) != batch_size:  # one generator per image: what makes an image its seed's alone
            raise ValueError(f"{self.name}: {len(generators)} generators for a batch of {batch_size}")
        self.batch_size = batch_size
        self.size = size
        self.device = device

    def parameters(self) -> list[torch.Tensor]:
        """The leaf tensors the optimiser updates (batch-first)."""
        raise NotImplementedError

    def image(self) -> torch.Tensor:
        """The current images, (B, 3, H, W), differentiable with respect to ``parameters()``."""
        raise NotImplementedError

    def resize(self, size: tuple[int, int]) -> None:
        """Carry the current state over to a larger image size (new leaf tensors)."""
        raise NotImplementedError

    def after_backward(self) -> None:
        """Called after the backward pass and gradient clipping, before the optimiser step."""

    def resize_state(self, tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Map an optimiser-state tensor shaped like a parameter onto the resized parameter.

        Only used when the optimiser state is carried across a resize. The default starts afresh.
        """
        raise NotImplementedError(f"{self.name} cannot carry optimiser state across a resize")


class Augmentation(Component):
    """A random transform of the (B * K, 3, H, W) copies, drawn through ``ctx``'s generators."""

    kind = "augmentation"
    hook = "register_augmentations"

    def __call__(self, copies: torch.Tensor, ctx: AugmentContext) -> torch.Tensor:
        raise NotImplementedError


class RegularizerOptions(Options):
    weight: float = Field(1.0, description="Multiplier of this regulariser in the loss.")


class Regularizer(Component):
    """A penalty on the un-augmented images: returns one value per image, (B,).

    The engine multiplies it by ``options.weight`` and skips it when the weight is zero.
    """

    kind = "regularizer"
    hook = "register_regularizers"
    Options: ClassVar[type[Options]] = RegularizerOptions

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class ObjectiveOptions(Options):
    weight: float = Field(
        1.0,
        description="Multiplier of this objective in its goal, the weighted sum a run maximises; a negative "
        "weight pursues the opposite (minimises the objective).",
    )


class Objective(Component):
    """A quantity of the images' copies that a run maximises: the similarity to a prompt, the
    activation of a channel, a direction in a layer or in the embedding space, ...

    A prompt's goal is the weighted sum of its objectives (``weight``, negative allowed); the run's
    loss is minus that sum, averaged over the copies, plus the regularisers. The engine builds an
    objective once per backbone it is computed on (``backbone_indices``; its values are averaged
    over them, as the paper averages its data term over models), for the images (``rows``) whose
    goal names it; ``spec`` is the run's (a row's prompt: ``spec.prompts[row.prompt_index]``).
    Activations of the layers named by ``layers()`` are captured with hooks while the backbone
    embeds the copies.
    """

    kind = "objective"
    hook = "register_objectives"
    Options: ClassVar[type[Options]] = ObjectiveOptions
    uses_prompt: ClassVar[bool] = False  # reads its prompt's text, image or terms
    compares_images: ClassVar[bool] = False  # its value for one image depends on the other images

    def __init__(self, options: Options, backbone: Backbone, rows: Sequence[Row], spec: RunSpec) -> None:
        super().__init__(options)
        self.backbone = backbone
        self.rows = list(rows)
        self.spec = spec

    @classmethod
    def backbone_indices(cls, options: Options, count: int) -> list[int]:
        """Which of the spec's ``count`` backbones it is computed on (default: every one)."""
        return list(range(count))

    @classmethod
    def describe(cls, options: Options) -> str:
        """A short label for images whose prompt has no text (file names, reports)."""
        return cls.name

    def layers(self) -> list[str]:
        """The image tower's layers whose activations it reads (names as ``clipforge layers`` lists them)."""
        return []

    def __call__(self, features: Features) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Its value for every copy, (N,), to be maximised; or ``(value, similarity)``, both (N,),
        for an objective with a similarity to report in the metrics (the prompt's)."""
        raise NotImplementedError


class Callback(Component):
    """Observes a run. Every method is optional; none of them is called once per copy.

    ``on_metrics`` receives the per-step records gathered since the last call: the engine gathers
    metrics from the device every ``log_every`` steps so it does not wait on the device each step.
    """

    kind = "callback"
    hook = "register_callbacks"

    def on_run_start(self, run: RunInfo) -> None:
        """Before the first step."""

    def on_step_end(self, run: RunInfo, state: StepState) -> None:
        """After every optimiser step (keep it cheap: no device syncs unless needed)."""

    def on_metrics(self, run: RunInfo, records: list[dict[str, Any]]) -> None:
        """Per-step metric records (loss, data term, similarity, regularisers, per image)."""

    def on_run_end(self, run: RunInfo, result: Any) -> None:
        """After the loop, with the final result (also after an interruption)."""

    def screen(self, run: RunInfo, images: torch.Tensor, step: int, final: bool) -> Screened | None:
        """Inspect images before anything shows them: snapshots, the final files and the result
        returned to the caller. Return replacements (blurred, say) and rows to withhold, or None to
        let them through unchanged. ``images`` are (N, 3, H, W) in [0, 1] on the CPU."""
        return None


@dataclass
class AnalysisRun:
    """What an analysis's inversions produced, handed to :meth:`Analysis.analyse`.

    ``results`` holds one :class:`InversionResult` per inversion spec (keyed as in
    ``inversion_specs()``), ``judge`` the spec's judge backbone, built on the device the inversions
    ran on; ``specs`` the resolved run specs (their components ready to build without another
    check) and ``registry`` the registry everything was found in.
    """

    results: dict[str, InversionResult]
    judge: Backbone
    specs: dict[str, Any]
    registry: Any

    @property
    def result(self) -> InversionResult:
        """The only result, for analyses with one inversion spec."""
        (only,) = self.results.values()
        return only


class Analysis(Component):
    """A study made of batches of inversions, judged and written up: a ``clipforge <name>`` verb.

    Its ``Options`` is its spec model (a subclass of :class:`clipforge.AnalysisSpec`), read from the
    JSON file the verb is given. :func:`clipforge.analysis.run_analysis` runs it: the inversions of
    ``options.inversion_specs()`` under one progress bar with the analysis's ``callbacks()``; then
    ``analyse()`` turns them into a report (a JSON-able dict, written as ``report.json``); then
    ``write_report()`` writes ``report.md`` and its images; ``table()`` is what the terminal shows.
    """

    kind = "analysis"
    hook = "register_analyses"
    Options: ClassVar[type[AnalysisSpec]] = AnalysisSpec
    description: ClassVar[str] = ""  # one line, for ``clipforge --help`` and ``clipforge plugins``

    def check(self, registry: Any) -> None:
        """Check what the spec's validators cannot, with the registry the command uses (build a model
        and read its layers, say), before ``options.inversion_specs()`` is asked for; raise
        :class:`clipforge.SpecError` naming the spec path. Does nothing by default."""

    def progress_label(self) -> str:
        """The progress bar's text."""
        return f"{self.name}: inverting"

    def callbacks(self, registry: Any) -> list[Callback]:
        """Extra callbacks for every inversion of the analysis (built from ``registry``)."""
        return []

    def analyse(self, run: AnalysisRun) -> dict[str, Any]:
        """The report: a JSON-able dict (written as ``report.json``)."""
        raise NotImplementedError

    def write_report(self, report: dict[str, Any], run: AnalysisRun, out: Path) -> None:
        """Write ``report.md`` (and any images or tables) into the output folder ``out``."""

    def table(self, report: dict[str, Any]) -> Any:
        """A short summary for the terminal (a string or a rich renderable), or None."""
        return None


@dataclass(frozen=True)
class ReaderChoice:
    """The reader an analysis chose when its spec was checked (see :func:`choose_reader`): its resolved
    component, or None (the default reader cannot read this spec, or is not installed: no readings),
    and whether the spec named it."""

    resolved: Any = None
    named: bool = False
    label: str = ""  # how reports name its readings (the reader's describe())

    @property
    def toyworld(self) -> bool:
        """Whether the reader is the default one, the toy world's (reports word its readings as before)."""
        return self.resolved is not None and self.resolved.entry.name == DEFAULT_READER

    def build(self, run: AnalysisRun) -> Reader | None:
        """The reader, built to read ``run``'s images (on the judge's device, with the run's registry and
        judge); None when there is no reader to read with."""
        if self.resolved is None:
            return None
        judge = getattr(run, "judge", None)
        device = getattr(judge, "device", None) or torch.device("cpu")
        return self.resolved.build(device, getattr(run, "registry", None), judge, where="reader")


def choose_reader(
    registry: Any, ref: Any, analysis: str, needs: Callable[[Reader], str | None], *, required: bool = False
) -> ReaderChoice:
    """The reader an analysis spec names (``ref``; None: :data:`DEFAULT_READER`), checked against
    ``registry``: built on the CPU without a judge, it is asked ``needs(reader)``: None when it can
    answer what ``analysis`` will ask, else what it cannot. A reader the spec names (or any reader,
    when ``required``) that cannot is refused with a :class:`clipforge.SpecError` at ``reader``
    naming the reader and the analysis; the default reader that cannot, or is not installed, gives
    no readings (``ReaderChoice(None)``)."""
    named = ref is not None
    if not named and DEFAULT_READER not in registry.names("reader"):
        if required:
            raise SpecError(
                [("reader", f"{analysis} needs a reader, and the default {DEFAULT_READER!r} is not installed")]
            )
        return ReaderChoice(None, False)
    resolved = registry.resolve_component("reader", ref if named else DEFAULT_READER, "reader")
    reader = resolved.build(torch.device("cpu"), registry, None, where="reader")
    missing = needs(reader)
    if missing is None:
        return ReaderChoice(resolved, named, reader.describe())
    if named or required:
        entry = resolved.entry
        raise SpecError(
            [
                (
                    "reader",
                    f"{analysis} needs a reader that {missing}; {reader.describe()} ({entry.kind} {entry.name!r} "
                    f"from {entry.provider}) cannot",
                )
            ]
        )
    return ReaderChoice(None, False)


#: every kind of component, with its base class: the one list of kinds
KINDS: dict[str, type[Component]] = {
    "backbone": Backbone,
    "parameterization": Parameterization,
    "augmentation": Augmentation,
    "regularizer": Regularizer,
    "objective": Objective,
    "callback": Callback,
    "analysis": Analysis,
    "reader": Reader,
}
