"""Base classes for the kinds of component a plugin can provide.

Every component has a ``name`` (how a spec refers to it) and a nested pydantic ``Options`` model
that rejects unknown keys. The engine builds each component once per run and then calls its
methods directly, so no plugin-manager dispatch happens inside the optimisation loop.

Image convention: images are float tensors of shape (B, 3, H, W), nominally in [0, 1]. During a
step, ``B * K`` augmented copies are processed, laid out image-major (the K copies of image 0,
then the K copies of image 1, ...). Every random draw goes through the per-image
``torch.Generator`` objects handed to the component, so a seed reproduces a run and an image's
result does not depend on which other images share its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from clipforge.analysis_spec import AnalysisSpec
from clipforge.errors import SpecError
from clipforge.result import InversionResult as InversionResult  # what a run returns, and how it shows itself
from clipforge.result import Row as Row
from clipforge.specbase import StrictModel

if TYPE_CHECKING:  # pragma: no cover
    from clipforge.spec import RunSpec


class Options(StrictModel):
    """Base for component options: unknown keys are an error, not silently ignored, and so are NaN,
    infinities, and true/false where a number is expected."""


def option_error(field: str, message: str, value: Any = None) -> ValidationError:
    """An error about one option, for an ``Options`` model validator to raise: unlike a plain
    ``ValueError`` it carries the field's name, so the message names the option's full JSON path."""
    detail = InitErrorDetails(type=PydanticCustomError("value_error", message), loc=(field,), input=value)
    return ValidationError.from_exception_data("Options", [detail])


#: the key of an option's ``json_schema_extra`` that says it names a component of that kind
COMPONENT_OPTION = "clipforge_component"


def component_option(kind: str, default: Any = None, **field: Any) -> Any:
    """An option that names another component of ``kind`` (``{"name": ..., "options": ...}``, as a
    screen names its judge backbone): :meth:`clipforge.Registry.resolve` checks it against the
    registry, with its options, as it checks the spec's own components. ``field``: pydantic
    ``Field``'s other arguments (``description``, ...)."""
    return Field(default, json_schema_extra={COMPONENT_OPTION: kind}, **field)


class Component:
    """Common base: a name, an options model, and the validated options."""

    kind: ClassVar[str] = ""
    hook: ClassVar[str] = ""  # the hook that registers components of this kind
    name: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options

    def __init__(self, options: Options) -> None:
        self.options = options

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"


# --------------------------------------------------------------------------- random draws


def draw_per_image(
    generators: Sequence[torch.Generator],
    shape: Sequence[int],
    device: torch.device,
    low: float = 0.0,
    high: float = 1.0,
) -> torch.Tensor:
    """Uniform draws of ``shape`` for each image from its own generator: returns (B, *shape).

    Draws are made on the CPU (where the generators live) and moved to ``device``, so results do
    not depend on the device either.
    """
    draws = [torch.rand(tuple(shape), generator=g) for g in generators]
    out = torch.stack(draws) * (high - low) + low
    if device.type == "cuda":  # pinned memory: the copy does not wait for the GPU to catch up
        return out.pin_memory().to(device, non_blocking=True)
    return out.to(device)


@dataclass
class AugmentContext:
    """What an augmentation may need to know about the current step."""

    generators: Sequence[torch.Generator]  # one per image
    copies: int  # K copies of each image
    model_size: tuple[int, int]  # input size of the (first) backbone
    step: int
    resize_count: int  # how many resolution increases have happened so far

    @property
    def batch_size(self) -> int:
        return len(self.generators)

    def per_copy(self, shape: Sequence[int], device: torch.device, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        """Uniform draws for every copy: (B * K, *shape), each image's copies from its generator."""
        out = draw_per_image(self.generators, (self.copies, *shape), device, low, high)
        return out.reshape(self.batch_size * self.copies, *shape)

    def per_image(
        self, shape: Sequence[int], device: torch.device, low: float = 0.0, high: float = 1.0
    ) -> torch.Tensor:
        """Uniform draws shared by all copies of an image: (B, *shape)."""
        return draw_per_image(self.generators, shape, device, low, high)


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


@dataclass
class Features:
    """What one backbone made of a batch of copies, as an objective sees it: only the copies of the
    images the objective serves, image-major (the copies of its first image, then its second ...)."""

    embeddings: torch.Tensor  # (N, D), normalised, float32
    activations: dict[str, torch.Tensor]  # layer name -> its output for these copies, batch first (N, ...)
    image_index: torch.Tensor  # (N,): each copy's image, as an index into the objective's ``rows``

    def layer(self, name: str) -> torch.Tensor:
        """A captured layer's output for these copies, batch first, as the layer gives it."""
        return self.activations[name]

    def channels(self, name: str) -> torch.Tensor:
        """A captured layer as (N, C, P): every channel at every position, whatever the layer's
        layout (feature maps, token sequences, vectors; :func:`channel_maps`)."""
        return channel_maps(self.layer(name))


def channel_maps(activations: torch.Tensor) -> torch.Tensor:
    """A layer's batch-first activations as (N, C, P), every channel at every position, in float32:
    a feature map (N, C, H, W), a token sequence (N, L, C) or a vector (N, C)."""
    act = activations.float()
    if act.dim() == 4:
        return act.flatten(2)
    if act.dim() == 3:
        return act.transpose(1, 2)
    return act.unsqueeze(-1)


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


@dataclass
class RunInfo:
    """What callbacks can see of a run."""

    spec: RunSpec
    rows: list[Row]
    device: torch.device
    out_dir: Path | None
    spec_hash: str
    total_steps: int
    extra: dict[str, Any] = field(default_factory=dict)
    start_step: int = 0  # a resumed run starts after this step (its checkpoint's)

    def output_path(self, name: str) -> Path:
        """Where a component writes the file ``name`` (an ``OutputName`` option): inside the output
        folder, never outside it, whatever ``name`` says."""
        if self.out_dir is None:
            raise ValueError("this run writes no files (it has no output folder)")
        root = self.out_dir.resolve()
        path = (root / name).resolve()
        if path == root or root not in path.parents:
            raise ValueError(f"{name!r} is not a file name inside the output folder {str(self.out_dir)!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class StepState:
    """The state of the loop after an optimiser step; ``images()`` is computed only when asked."""

    step: int  # steps completed so far (1-based)
    size: tuple[int, int]
    _images: Any = None
    _cached: torch.Tensor | None = None

    def images(self) -> torch.Tensor:
        """The current images, detached, clamped to [0, 1], screened, on the CPU (computed once per step)."""
        if self._cached is None:
            self._cached = self._images()
        return self._cached


@dataclass
class Screened:
    """What a screening callback lets through: (possibly altered) images and rows to withhold."""

    images: torch.Tensor  # (N, 3, H, W)
    withheld: torch.Tensor  # (N,) bool: these rows are not written or shown at all


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


# --------------------------------------------------------------------------- readers


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
