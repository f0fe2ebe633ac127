"""Python objects in a run spec: a model, a function or a component class where a spec names a
component. Each becomes a component class of its own, made for this run and registered beside the
installed plugins (as the plugin ``python objects``), so the run goes through the same registry
checks, engine and loop as a spec file's. The spec names each by a stable name
(``object:CLIP``, ``callable:my_goal``), so the same objects give the same spec and the run
resumes from Python; a spec file cannot name them, and ``run.json`` lists them
(``python_objects``) so that the command line says so instead of failing on an unknown name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field

from clipforge.components import (
    KINDS,
    Augmentation,
    AugmentContext,
    Backbone,
    Callback,
    Component,
    Features,
    Objective,
    ObjectiveOptions,
    Options,
    Regularizer,
    RegularizerOptions,
    Row,
)
from clipforge.layers import captured, find_layer, image_tower
from clipforge.models import ModelError, ModelRef, model

#: the plugin name the components made from objects are registered under
LIVE_PLUGIN = "python objects"


class ObjectiveValueError(ValueError):
    """A function objective whose value is not one finite, differentiable number per copy."""


# --------------------------------------------------------------------------- models


class LiveModelOptions(Options):
    """How a model object's pixels are prepared: filled in from the object (or what was given), so
    that ``spec.json`` records them."""

    mean: tuple[float, float, float] = Field(description="Normalisation mean (from the object, or given).")
    std: tuple[float, float, float] = Field(description="Normalisation std (from the object, or given).")
    input_size: tuple[int, int] = Field(description="The (H, W) the model takes.")
    interpolation: str = Field("bicubic", description="How copies are resized to the input size.")


class LiveBackbone(Backbone):
    """A backbone around a model object (:class:`clipforge.models.ModelRef`), on the object's device."""

    Options = LiveModelOptions
    ref: ClassVar[ModelRef]
    python_object: ClassVar[str] = ""
    borrowed: ClassVar[bool] = True  # the model is the caller's: not to be moved, converted or trained

    def __init__(self, options: LiveModelOptions, device: torch.device) -> None:
        super().__init__(options, device)
        ref = self.ref
        here = ref.device()
        if here.type != device.type or (here.index is not None and device.index not in (None, here.index)):
            raise ModelError(
                f"{ref.label} lives on {here}, but the run is on {device}; clipforge does not move a model it "
                f"is lent: move it yourself (model.to(...)) or run on its device (device={str(here)!r})"
            )
        self.model = ref.obj
        self.tower = ref.tower()
        self.input_size = tuple(options.input_size)
        self.interpolation = options.interpolation
        self.mean = torch.tensor(options.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(options.std, device=device).view(1, 3, 1, 1)
        self._images = ref.image_encoder()
        self._texts = ref.text_encoder()
        self._check_features()

    @property
    def label(self) -> str:
        return self.ref.label

    def _check_features(self) -> None:
        """Two gray images through the model: it must give one feature vector per image."""
        probe = torch.full((2, 3, *self.input_size), 0.5, device=self.device)
        try:
            with torch.no_grad():
                out = self.encode_image(probe)
        except Exception as exc:
            raise ModelError(
                f"{self.label}: its forward failed on 2 gray images of {self.input_size[0]}x{self.input_size[1]} "
                f"pixels: {type(exc).__name__}: {exc}"
            ) from exc
        if not torch.is_tensor(out) or out.dim() != 2 or out.shape[0] != 2:
            got = f"shape {tuple(out.shape)}" if torch.is_tensor(out) else type(out).__name__
            raise ModelError(
                f"{self.label} returned {got} for 2 images; expected per-image features of shape (2, D): give a "
                "model whose forward ends in one vector per image (pool and flatten a feature map)"
            )

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._images((pixels - self.mean) / self.std)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        if self._texts is None:
            raise ModelError(
                f"{self.label} has no text side here, so it cannot embed the text {texts[0]!r}: "
                + (
                    "pass its tokenizer, clipforge.model(clip, tokenizer=...) (or its processor)"
                    if self.ref.kind != "module"
                    else "an image tower has no text; use objectives of its layers, or a CLIP model"
                )
            )
        return self._texts(texts, self.device)


# --------------------------------------------------------------------------- functions as components


class _NeedsLayer(Exception):
    """Raised while a function objective is probed: it asked for a layer not captured yet."""

    def __init__(self, name: str) -> None:
        self.name = name


class _Probed(dict):
    def __missing__(self, name: str) -> torch.Tensor:
        raise _NeedsLayer(name)


class LiveObjective(Objective):
    """A function of the features, ``fn(features) -> (N,)``: its value per copy, maximised. The layers
    it reads (``features.layer(name)``) are found by probing it on two gray images at the start,
    where its value is also checked, so a wrong one fails before anything runs."""

    fn: ClassVar[Callable[[Features], torch.Tensor]]
    python_object: ClassVar[str] = ""
    label: ClassVar[str] = ""

    def __init__(self, options: ObjectiveOptions, backbone: Backbone, rows: Sequence[Row], spec: Any) -> None:
        super().__init__(options, backbone, rows, spec)
        self._layers: list[str] = []
        self._probe()

    @classmethod
    def describe(cls, options: Options) -> str:
        return cls.label

    def layers(self) -> list[str]:
        return list(self._layers)

    def _probe(self) -> None:
        backbone = self.backbone
        probe = torch.full((2, 3, *backbone.input_size), 0.5, device=backbone.device, requires_grad=True)
        for _ in range(64):
            tower = image_tower(backbone) if self._layers else None
            with captured(tower, self._layers) if tower is not None else nullcontext({}) as seen:
                embeddings = F.normalize(backbone.encode_image(probe).float(), dim=-1)
            features = Features(embeddings, _Probed(seen), torch.arange(2, device=backbone.device))
            try:
                value = type(self).fn(features)
            except _NeedsLayer as need:
                find_layer(image_tower(backbone), need.name)  # an unknown name: the nearest ones
                self._layers.append(need.name)
                continue
            self.check(value, 2)
            return
        raise ObjectiveValueError(f"{self.label} asked for more than 64 layers")

    def check(self, value: Any, copies: int) -> None:
        """One finite value per copy, depending on the image."""
        if not torch.is_tensor(value):
            raise ObjectiveValueError(
                f"{self.label} returned {type(value).__name__}; expected a tensor of one value per copy, "
                f"shape ({copies},)"
            )
        if value.dim() == 0:
            raise ObjectiveValueError(
                f"{self.label} returned a scalar for the batch; expected one value per copy, shape ({copies},): "
                "reduce every axis but the first (e.g. .mean((1, 2)) rather than .mean())"
            )
        if tuple(value.shape) != (copies,):
            raise ObjectiveValueError(
                f"{self.label} returned shape {tuple(value.shape)} for {copies} copies; expected one value per copy, "
                f"shape ({copies},)"
            )
        if value.device.type == "cpu" and not torch.isfinite(value.detach()).all():  # elsewhere: a sync each
            # step; a non-finite loss is caught when the metrics are gathered (check_finite), naming the image
            bad = value.detach()[~torch.isfinite(value.detach())][0].item()
            raise ObjectiveValueError(f"{self.label} returned a non-finite value ({bad}) for a copy")
        if torch.is_grad_enabled() and not value.requires_grad:
            raise ObjectiveValueError(
                f"{self.label} returned values that do not depend on the image (no gradient): it would do nothing"
            )

    def __call__(self, features: Features) -> torch.Tensor:
        value = type(self).fn(features)
        self.check(value, features.embeddings.shape[0])
        return value


class LiveAugmentation(Augmentation):
    """A function ``fn(copies, ctx) -> copies``; its random draws go through ``ctx`` (per image)."""

    fn: ClassVar[Callable[[torch.Tensor, AugmentContext], torch.Tensor]]
    python_object: ClassVar[str] = ""

    def __call__(self, copies: torch.Tensor, ctx: AugmentContext) -> torch.Tensor:
        return type(self).fn(copies, ctx)


class LiveRegularizer(Regularizer):
    """A function ``fn(images) -> (B,)``: a penalty per image, times ``weight``."""

    fn: ClassVar[Callable[[torch.Tensor], torch.Tensor]]
    python_object: ClassVar[str] = ""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return type(self).fn(images)


# --------------------------------------------------------------------------- collecting a spec's objects


class LiveComponents:
    """The components made from one spec's objects, each named once (the same object, the same name),
    and the models it borrows."""

    def __init__(self) -> None:
        self.classes: dict[tuple[str, int], type[Component]] = {}
        self.taken: set[str] = set()
        self.models: list[torch.nn.Module] = []
        self.callbacks: list[Callback] = []
        self.keep: list[Any] = []  # the objects, alive while their ids key ``classes``

    def __bool__(self) -> bool:
        return bool(self.classes or self.callbacks)

    def _name(self, prefix: str, base: str) -> str:
        name, n = f"{prefix}:{base}", 1
        while name in self.taken:
            n += 1
            name = f"{prefix}:{base}#{n}"
        self.taken.add(name)
        return name

    def _made(self, kind: str, obj: Any, make: Callable[[], type[Component]]) -> type[Component]:
        key = (kind, id(obj))
        if key not in self.classes:
            self.classes[key] = make()
            self.keep.append(obj)
        return self.classes[key]

    def backbone(self, value: Any) -> dict[str, Any]:
        """A model object (or :func:`clipforge.model`'s wrapper) as a backbone reference."""
        ref = model(value)

        def make() -> type[Component]:
            name = self._name("object", ref.name or type(ref.obj).__name__)
            self.models.append(ref.obj)
            return type("ModelBackbone", (LiveBackbone,), {"name": name, "ref": ref, "python_object": ref.label})

        cls = self._made("backbone", ref.obj, make)
        mean, std, size, interpolation = ref.preprocessing()
        options = {"mean": list(mean), "std": list(std), "input_size": list(size), "interpolation": interpolation}
        return {"name": cls.name, "options": options}

    def function(self, kind: str, fn: Callable[..., Any]) -> str:
        """A function as an objective, augmentation or regulariser: the name of its component."""
        bases = {"objective": LiveObjective, "augmentation": LiveAugmentation, "regularizer": LiveRegularizer}
        if kind not in bases:
            raise TypeError(f"{kind}: a function cannot be a {kind}; give a name, a dict or a {kind} class")
        base_name = getattr(fn, "__name__", type(fn).__name__).strip("<>") or "function"

        def make() -> type[Component]:
            name = self._name("callable", base_name)
            what = f"the function {getattr(fn, '__qualname__', base_name)}"
            attrs = {"name": name, "fn": staticmethod(fn), "python_object": what, "label": name}
            if kind == "regularizer":
                attrs["Options"] = RegularizerOptions
            return type(f"Function{kind.title()}", (bases[kind],), attrs)

        return self._made(kind, fn, make).name

    def component_class(self, kind: str, cls: type[Component]) -> str:
        """A component class passed directly: registered for this run under its own name."""
        if not issubclass(cls, KINDS[kind]):
            raise TypeError(f"{cls.__name__} is not a clipforge.{KINDS[kind].__name__}")
        self._made(kind, cls, lambda: cls)
        return cls.name

    def register(self, registry: Any) -> Any:
        """``registry`` with this spec's components added."""
        return registry.with_components(LIVE_PLUGIN, list(self.classes.values())) if self.classes else registry


def python_objects(components: dict[str, list[Any]], where: Callable[[str], str]) -> list[str]:
    """What ``run.json`` lists of a resolved spec's components made from objects: their places and what they wrap."""
    found = []
    for path, resolved in components.items():
        for i, component in enumerate(resolved):
            cls = component.entry.cls
            if component.entry.plugin == LIVE_PLUGIN:
                what = getattr(cls, "python_object", "") or f"the class {cls.__qualname__}"
                place = where(path if path == "parameterization" else f"{path}[{i}]")
                found.append(f"{place}: {component.entry.name} ({what})")
    return found
