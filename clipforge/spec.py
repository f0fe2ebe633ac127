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
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError


class SpecError(Exception):
    """A spec is invalid. ``problems`` holds (JSON path, message) pairs, one per problem."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = problems
        self.source = source
        super().__init__(self.format())

    def format(self) -> str:
        where = f"{printable(self.source)}: " if self.source else ""
        lines = [
            f"{where}{printable(path)}: {printable(msg)}" if path else f"{where}{printable(msg)}"
            for path, msg in self.problems
        ]
        return "\n".join(lines)


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    names = {
        type(None): "null",
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }
    return names.get(type(value), type(value).__name__)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: Any, limit: int = 300) -> str:
    """``text`` safe to print on a terminal: control characters (a spec key can hold escape
    sequences) shown as ``\\x1b``, and cut to ``limit`` characters with a note of how much was cut."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    return text


#: the largest values a spec may ask for (documented in the README): beyond them a run cannot fit
#: in memory or time on any machine clipforge is meant for, and is refused before anything starts
LIMITS = {"steps": 1_000_000, "copies": 1024, "size": 4096, "prompts": 100_000, "seeds": 10_000, "images": 100_000}

#: a seed is any number a random generator takes (``torch.Generator.manual_seed``: -2**63 .. 2**64 - 1)
Seed = Annotated[int, Field(ge=-(2**63), le=2**64 - 1)]


def check_seed_values(value: Any) -> Any:
    """A list of seeds with one that no generator takes, refused naming its place (before pydantic
    tries the field's other types and reports both)."""
    if isinstance(value, list):
        for i, seed in enumerate(value):
            if isinstance(seed, int) and not isinstance(seed, bool) and not -(2**63) <= seed <= 2**64 - 1:
                raise ValueError(f"seeds[{i}] is {seed}: a seed is a whole number from -2**63 to 2**64 - 1")
    return value


def _bool_for_number(value: Any, annotation: Any) -> bool:
    """Is ``value`` (or an item of it) JSON's true/false where ``annotation`` wants a number? Python
    counts ``True`` as 1, so without this ``"steps": true`` would mean one step."""
    if annotation is bool or annotation is Any:
        return False
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:  # a constrained number (``Seed``): the number underneath
        return _bool_for_number(value, args[0])
    if origin in (typing.Union, types.UnionType):
        return bool not in args and any(_bool_for_number(value, a) for a in args)
    if isinstance(value, bool):
        return annotation in (int, float)
    if isinstance(value, (list, tuple)) and origin in (list, tuple) and args:
        items = args if origin is tuple and Ellipsis not in args and len(args) == len(value) else [args[0]] * len(value)
        return any(_bool_for_number(v, a) for v, a in zip(value, items))
    if isinstance(value, dict) and origin is dict and len(args) == 2:
        return any(_bool_for_number(v, args[1]) for v in value.values())
    return False


class StrictModel(BaseModel):
    """Base of every spec model: unknown keys, NaN and infinities are errors, and so is JSON's
    true/false where a number is expected."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _bool_for_number(value, field.annotation):
            raise PydanticCustomError("number_type", "a number is expected here, not true or false")
        return value


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


def _inside_the_output_folder(value: str) -> str:
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
OutputName = Annotated[str, AfterValidator(_inside_the_output_folder)]


def _not_empty_folder(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("is empty: give a folder, or null for the default one")
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


def _existing_image(value: str | None, info: ValidationInfo) -> str | None:
    """Resolve an image path against the spec file's folder and check that it exists."""
    if value is None:
        return None
    path = Path(value).expanduser()
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    if not path.is_file():
        raise ValueError(f"no such image file: {str(path)!r}")
    try:
        from PIL import Image

        with Image.open(path) as image:
            image.load()  # the whole file: a truncated one fails here, not mid-run
    except Exception as exc:
        raise ValueError(f"{str(path)!r} is not a readable image: {exc}") from None
    return str(path.resolve())


class PromptTerm(StrictModel):
    """One term of a prompt's objective: a text or an image (encoded by each backbone). A negative
    weight pushes the image away from it."""

    text: str | None = Field(None, min_length=1)
    image: str | None = Field(None, description="An image file used as a target (path relative to the spec).")
    weight: float = 1.0

    _image_exists = field_validator("image")(_existing_image)

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
    """A target: a text, an image, or weighted terms. Each prompt gives independent images."""

    text: str | None = Field(None, min_length=1, description="The prompt text.")
    image: str | None = Field(None, description="An image file as the target.")
    terms: list[PromptTerm] | None = Field(None, min_length=1, description="Weighted texts or images.")
    weight: float = Field(1.0, description="Multiplier of this prompt's data term.")
    combine: Literal["losses", "embedding"] = Field(
        "losses",
        description="How terms combine: 'losses' sums weighted distances to each term; 'embedding' "
        "aims at the normalised weighted sum of the positive terms' embeddings (negative terms stay separate).",
    )
    label: str | None = Field(None, description="Name used in file names and reports.")

    _image_exists = field_validator("image")(_existing_image)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"text": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_source(self) -> Prompt:
        if sum(x is not None for x in (self.text, self.image, self.terms)) != 1:
            raise ValueError("give exactly one of 'text', 'image' or 'terms'")
        return self

    def resolved_terms(self) -> list[PromptTerm]:
        if self.terms is not None:
            return [t.model_copy(update={"weight": t.weight * self.weight}) for t in self.terms]
        return [PromptTerm(text=self.text, image=self.image, weight=self.weight)]

    def display(self) -> str:
        """Its label, else :meth:`described`."""
        return self.label or self.described()

    def described(self) -> str:
        """What it asks for, whatever its label: its text, its image's name, or its weighted terms."""
        if self.terms is None:
            return self.text if self.text is not None else f"image:{Path(self.image or '').name}"
        return " + ".join(f"{t.weight:g}*{t.display()}" for t in self.terms)


class ResolutionStep(StrictModel):
    step: int = Field(ge=0, description="From this step on...")
    size: int = Field(ge=1, le=LIMITS["size"], description="...the image is this many pixels square.")


class OptimizerSpec(StrictModel):
    name: Literal["adam"] = "adam"
    lr: float = Field(0.1, gt=0)
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam's betas, each in [0, 1).")
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


def _default_callbacks() -> list[ComponentRef]:
    return [ComponentRef(name="progress"), ComponentRef(name="metrics"), ComponentRef(name="snapshots")]


class RunSpec(StrictModel):
    """One inversion run: prompts x seeds images, optimised together."""

    prompts: list[Prompt] = Field(
        min_length=1, max_length=LIMITS["prompts"], description="Targets; each gives one image per seed."
    )
    seeds: list[Seed] = Field(
        default_factory=lambda: [0],
        min_length=1,
        max_length=LIMITS["seeds"],
        description="One image per seed and prompt.",
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
    data_term: Literal["l2", "cosine"] = Field(
        "l2", description="'l2': distance between normalised embeddings (the authors' code); 'cosine': 1 - cos."
    )
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    steps: int = Field(3400, ge=1, le=LIMITS["steps"])
    resolution: list[ResolutionStep] = Field(default_factory=_paper_resolution, min_length=1)
    device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'.")
    output_dir: str | None = Field(None, description="Where results go (the CLI's --out wins).")
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

    @field_validator("output_dir")
    @classmethod
    def _output_dir(cls, value: str | None) -> str | None:
        return _not_empty_folder(value)

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

    def settings_hash(self) -> str:
        """A short digest of every setting but ``output_dir`` (callbacks, ``log_every`` and device
        too): the default output folder's name, so two different runs of one file never share one."""
        text = json.dumps(self.model_dump(mode="json", exclude={"output_dir"}), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

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
        data = self.model_dump(
            mode="json",
            exclude={"output_dir", "callbacks", "log_every", "device", "checkpoint_every", "checkpoint_seconds"},
        )
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# fields of RunSpec that name components, and the kind of component each names
COMPONENT_FIELDS: dict[str, str] = {
    "backbones": "backbone",
    "parameterization": "parameterization",
    "augmentations": "augmentation",
    "regularizers": "regularizer",
    "callbacks": "callback",
}


# --------------------------------------------------------------------------- errors and loading


def format_loc(loc: tuple[Any, ...] | list[Any], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _problems(error: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    problems = []
    for e in error.errors():
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] not in ("missing", "value_error") and "input" in e and not isinstance(e["input"], (dict, list)):
            msg = f"{msg} (got {e['input']!r})"
        problems.append((format_loc(e["loc"], prefix), msg))
    return problems


def parse_spec(data: Any, source: str | None = None) -> RunSpec:
    """Validate the spec's own structure (component options are checked by ``Registry.resolve``).

    Relative image paths are taken relative to the spec file's folder.
    """
    if not isinstance(data, dict):
        raise SpecError([("", f"a spec must be a JSON object, not {json_type(data)}")], source)
    base_dir = str(Path(source).parent) if source else None
    try:
        return RunSpec.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise SpecError(_problems(exc), source) from None


def read_spec_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([("", "no such file")], str(path)) from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            [("", f"not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x}); save it as UTF-8")], str(path)
        ) from None
    except OSError as exc:
        raise SpecError([("", f"cannot read: {exc.strerror}")], str(path)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            [("", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")], str(path)
        ) from None
    return data


_SET_PATH = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path[0].x=value`` overrides; values are JSON where they parse, else strings."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        top = re.split(r"[.\[]", item.split("=", 1)[0], maxsplit=1)[0]
        if top not in data and top in RunSpec.model_fields:  # start from the default value
            default = RunSpec.model_fields[top].get_default(call_default_factory=True)
            data[top] = _jsonable(default)
        if "=" not in item:
            raise SpecError([("--set", f"expected KEY=VALUE, got {item!r}")])
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        parts: list[str | int] = []
        pos = 0
        for m in _SET_PATH.finditer(key):
            if m.start() != pos and key[pos : m.start()] != ".":
                raise SpecError([("--set", f"cannot parse key {key!r}")])
            parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
            pos = m.end()
        if not parts or pos != len(key):
            raise SpecError([("--set", f"cannot parse key {key!r}")])
        node: Any = data
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = format_loc(parts[: i + 1])
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    raise SpecError([("--set " + key, f"{where} does not exist")])
                if last:
                    node[part] = value
                else:
                    node = node[part]
            else:
                if not isinstance(node, dict):
                    raise SpecError([("--set " + key, f"{format_loc(parts[:i])} is not an object")])
                if last:
                    node[part] = value
                else:
                    if part not in node:
                        node[part] = {} if isinstance(parts[i + 1], str) else None
                    if node[part] is None:
                        raise SpecError([("--set " + key, f"{where} is not set in the spec; set the whole list")])
                    node = node[part]
    return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def load_spec(
    source: str | Path | dict[str, Any] | RunSpec,
    overrides: list[str] | None = None,
) -> RunSpec:
    """A RunSpec from a file path, a dict or a RunSpec, with optional ``--set`` style overrides."""
    if isinstance(source, RunSpec):
        if not overrides:
            return source
        data, name = source.model_dump(mode="json"), None
    elif isinstance(source, dict):
        data, name = source, None
    else:
        data, name = read_spec_file(source), str(source)
    if not isinstance(data, dict):
        raise SpecError([("", f"a spec must be a JSON object, not {json_type(data)}")], name)
    if overrides:
        try:
            data = apply_overrides(data, overrides)
        except SpecError as exc:
            raise SpecError(exc.problems, name) from None
    return parse_spec(data, name)


# --------------------------------------------------------------------------- analyses


class AnalysisSpec(StrictModel):
    """Fields every analysis spec has (an analysis's ``Options``). ``run`` holds inversion settings
    (any run-spec field but ``prompts`` and ``seeds``, which the analysis fills in)."""

    run: dict[str, Any] = Field(default_factory=dict, description="Inversion settings, as in a run spec.")
    seeds: int | list[Seed] = Field(4, description="Seeds per prompt: a count (0..N-1) or a list.")
    judge: ComponentRef = Field(description="The held-out backbone that judges the inversions.")
    output_dir: str | None = Field(None, description="Where the report goes, unless --out says otherwise.")

    @field_validator("output_dir")
    @classmethod
    def _output_dir(cls, value: str | None) -> str | None:
        return _not_empty_folder(value)

    @field_validator("run")
    @classmethod
    def _no_prompts(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in ("prompts", "seeds"):
            if key in value:
                raise ValueError(f"'run' must not set {key!r}: the analysis sets it")
        return value

    @field_validator("seeds")
    @classmethod
    def _seed_count(cls, value: int | list[int]) -> int | list[int]:
        count = value if isinstance(value, int) else len(value)
        if not 1 <= count <= LIMITS["seeds"]:
            raise ValueError(f"between 1 and {LIMITS['seeds']} seeds per prompt, not {count}")
        return value

    _seed_values = field_validator("seeds", mode="before")(classmethod(lambda cls, value: check_seed_values(value)))

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def run_spec(
        self, prompts: Sequence[Any], backbones: list[dict[str, Any]] | None = None, where: str = "run"
    ) -> RunSpec:
        """The run spec of ``prompts`` over this spec's seeds; errors name their path under ``where``."""
        data = {**self.run, "prompts": list(prompts), "seeds": self.seed_list(), "callbacks": []}
        if backbones is not None:
            data["backbones"] = backbones
        try:
            return parse_spec(data)
        except SpecError as exc:
            raise SpecError([(f"{where}.{p}" if p else where, m) for p, m in exc.problems]) from None

    def inversion_specs(self) -> dict[str, RunSpec]:
        """The run specs this analysis inverts, by the spec path that configures them (``run`` for
        the ``prompts`` field; an analysis with several runs overrides this)."""
        return {"run": self.run_spec(self.prompts)}


def load_analysis_spec(cls: type[AnalysisSpec], source: str | Path | dict[str, Any]) -> AnalysisSpec:
    """An analysis spec from a JSON file (or a dict), its errors with their JSON paths and file."""
    name = None if isinstance(source, dict) else str(source)
    data = source if isinstance(source, dict) else read_spec_file(source)
    if not isinstance(data, dict):
        raise SpecError([("", f"a spec must be a JSON object, not {json_type(data)}")], name)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems(exc), name) from None
