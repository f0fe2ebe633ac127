"""The notebook's entry points: :func:`invert` (a spec, whose parts may be Python objects) and
:func:`visualize` (a model and an objective, in one line). Both drive the one engine through the
one registry: objects become components made for the run (:mod:`clipforge.live`), objectives are
written as a spec writes them (:mod:`clipforge.algebra`), and what can be written goes to
``spec.json`` when an output folder is given.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from clipforge.algebra import SHORTHAND, Goal, as_goal, goal_prompt, spec_objectives
from clipforge.components import KINDS, Backbone, Callback, Component, InversionResult
from clipforge.engine import Engine
from clipforge.layers import Layer
from clipforge.live import LiveComponents
from clipforge.models import ModelRef, borrowed
from clipforge.registry import Registry, default_registry
from clipforge.spec import RunSpec, load_spec

#: the settings :func:`visualize` starts from (those of ``examples/toyworld/layer.json``, the layer
#: analysis's example): half the model's input size for the first half of the steps, then all of it
VISUALIZE_DEFAULTS: dict[str, Any] = {
    "regularizers": [{"name": "tv", "options": {"weight": 0.02}}],
    "copies": 8,
    "steps": 160,
}


def invert(
    spec: RunSpec | dict[str, Any] | str | Path,
    out_dir: str | Path | None = None,
    *,
    registry: Registry | None = None,
    callbacks: Sequence[Callback] = (),
    overrides: list[str] | None = None,
    resume: bool = False,
) -> InversionResult:
    """Run an inversion and return its images and metrics.

    ``spec`` is a path to a JSON file, a dict or a :class:`RunSpec`; it is never modified. In a
    dict, a component may be given as a Python object: a model (``backbones``: an ``nn.Module``, an
    open_clip or Hugging Face CLIP, or :func:`clipforge.model`), a goal (``objectives``, or a
    prompt: ``channel("layer3", 5) + 0.5 * diversity("layer3")``, a function of the features, a
    ``"layer:channel"`` string), a function as an augmentation or regulariser, a component class, a
    callback object. Results go to ``out_dir`` (or the spec's ``output_dir``) when one is given;
    ``resume`` continues the stopped run there (with the same objects, for a run made with them).
    A model passed as an object stays where it is and as it is: eval mode and no gradients during
    the run, its own modes and flags given back after it.
    """
    registry = registry or default_registry()
    live = LiveComponents()
    if isinstance(spec, dict):
        spec = with_objects(spec, live)
    spec = load_spec(spec, overrides)
    out = out_dir if out_dir is not None else spec.output_dir
    resolved = live.register(registry).resolve(spec)
    with borrowed(live.models):
        return Engine(resolved, out_dir=out, callbacks=[*live.callbacks, *callbacks], resume=resume).run()


def visualize(
    model: Any,
    objective: Any,
    *,
    seeds: int | Sequence[int] = 1,
    steps: int | None = None,
    size: int | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    pretrained: str | None = None,
    device: str | None = None,
    registry: Registry | None = None,
    callbacks: Sequence[Callback] = (),
    **spec: Any,
) -> InversionResult:
    """Images that maximise ``objective`` on ``model``, in one line:
    ``visualize("toyworld-rn", "layer3:5")``.

    ``model``: a model name (bundled or open_clip's, with ``pretrained``), a component reference
    dict, or a model object (see :func:`invert`). ``objective``: a goal, a function of the features,
    ``"layer:channel"``, or a list of them: one prompt each, optimised together (a batch). ``seeds``:
    a count or a list. ``size``: the image's side at the end (default: the model's input size).
    Any other keyword is a spec field (``parameterization``, ``augmentations``, ``regularizers``,
    ``copies``, ``optimizer``, ...), by name or as an object. Defaults: :data:`VISUALIZE_DEFAULTS`.
    """
    if "prompts" in spec or "backbones" in spec:
        raise TypeError("visualize() takes the model and the objective as its arguments; use invert() for a whole spec")
    backbone = _backbone_ref(model, pretrained)
    goals = objective if isinstance(objective, list) else [objective]
    steps = steps or VISUALIZE_DEFAULTS["steps"]
    side = size or _input_size(backbone)
    run: dict[str, Any] = {
        **{k: v for k, v in VISUALIZE_DEFAULTS.items() if k != "steps"},
        "prompts": goals,
        "seeds": list(range(seeds)) if isinstance(seeds, int) else list(seeds),
        "backbones": [backbone],
        "steps": steps,
        "resolution": [{"step": 0, "size": max(1, side // 2)}, {"step": max(1, steps // 2), "size": side}],
        "callbacks": (["progress"] if progress else []) + list(callbacks),  # names, dicts, classes or objects
        **spec,
    }
    if device is not None:
        run["device"] = device
    return invert(run, out, registry=registry, resume=resume)


def with_objects(spec: dict[str, Any], live: LiveComponents) -> dict[str, Any]:
    """``spec`` with every Python object in it replaced by a reference to a component made for it
    (collected in ``live``): what the registry resolves and ``spec.json`` records."""
    spec = dict(spec)
    for key in ("backbones", "backbone"):
        if key in spec:
            many = spec[key] if isinstance(spec[key], (list, tuple)) else [spec[key]]
            refs = [live.backbone(v) if _is_model(v) else v for v in many]
            spec[key] = refs if key == "backbones" else refs[0]
    where = model_device(live.models[0]) if live.models else None
    if where is not None and where.type in ("cpu", "cuda", "mps") and "device" not in spec:
        spec["device"] = str(where)  # the run goes where the model is; it is not moved
    namer = _namer(live, "objective")
    if "objectives" in spec and not _plain(spec["objectives"]):
        spec["objectives"] = spec_objectives(spec["objectives"], namer, "objectives")
    if "prompts" in spec:
        spec["prompts"] = [_prompt(p, namer, f"prompts[{i}]") for i, p in enumerate(_listed(spec["prompts"]))]
    if "parameterization" in spec:
        spec["parameterization"] = _component(live, "parameterization", spec["parameterization"])
    for kind in ("augmentation", "regularizer"):
        if f"{kind}s" in spec:
            spec[f"{kind}s"] = [_component(live, kind, v) for v in _listed(spec[f"{kind}s"])]
    if "callbacks" in spec:
        given = _listed(spec["callbacks"])
        live.callbacks.extend(c for c in given if isinstance(c, Callback))
        spec["callbacks"] = [_component(live, "callback", c) for c in given if not isinstance(c, Callback)]
    return spec


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _is_model(value: Any) -> bool:
    return isinstance(value, (torch.nn.Module, ModelRef))


def model_device(obj: torch.nn.Module) -> torch.device:
    return next((t.device for t in [*obj.parameters(), *obj.buffers()]), torch.device("cpu"))


def _plain(value: Any) -> bool:
    """Whether a value of ``objectives`` is written as a spec writes it (names and dicts only)."""
    items = value if isinstance(value, (list, tuple)) else [value]
    return all(isinstance(v, dict) or (isinstance(v, str) and not SHORTHAND.match(v)) for v in items)


def _namer(live: LiveComponents, kind: str) -> Callable[[Any], str]:
    """The spec name of an objective given as a name, a function or a component class."""

    def name(value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, type) and issubclass(value, Component):
            return live.component_class(kind, value)
        return live.function(kind, value)

    return name


def _prompt(value: Any, namer: Callable[[Any], str], where: str) -> Any:
    """A spec prompt from a text, a prompt dict (whose ``objectives`` may be a goal) or a goal."""
    if isinstance(value, str) and not SHORTHAND.match(value):
        return value
    if isinstance(value, dict):
        if "objectives" in value and not _plain(value["objectives"]):
            return {**value, "objectives": spec_objectives(value["objectives"], namer, f"{where}.objectives")}
        return value
    return goal_prompt(value, namer, where)


def _component(live: LiveComponents, kind: str, value: Any) -> Any:
    """A reference to a component given by name, as a dict, as a component class or as a function."""
    if isinstance(value, dict) and not isinstance(value.get("name", ""), str):  # {"name": fn, "options": {...}}
        return {**value, "name": _component(live, kind, value["name"])}
    if isinstance(value, (str, dict)):
        return value
    if isinstance(value, type) and issubclass(value, KINDS[kind]):
        return live.component_class(kind, value)
    if callable(value) and not isinstance(value, type):
        return live.function(kind, value)
    raise TypeError(
        f"{kind}: a {type(value).__name__} is not a {kind}; give its name, a dict, a clipforge.{KINDS[kind].__name__} "
        "class" + (" or a function" if kind in ("augmentation", "regularizer") else "")
    )


def _backbone_ref(model: Any, pretrained: str | None) -> Any:
    """A backbone from a model name, a reference dict or a model object."""
    if isinstance(model, str):
        options = {"model": model, **({"pretrained": pretrained} if pretrained else {})}
        return {"name": "open_clip", "options": options}
    if pretrained is not None:
        raise TypeError("pretrained= goes with a model name, not with a model object or a reference")
    return model


def _input_size(backbone: Any) -> int:
    """The model's input side, without loading its weights where its config says it."""
    if _is_model(backbone):
        from clipforge.models import model as wrap

        return wrap(backbone).preprocessing()[2][0]
    name = backbone.get("options", {}).get("model") if isinstance(backbone, dict) else None
    if isinstance(name, str) and backbone.get("name") == "open_clip":
        from clipforge.toyworld import bundled_models

        folder = bundled_models().get(name)
        if folder is not None:
            config = json.loads((folder / "open_clip_config.json").read_text())
            return int(config["model_cfg"]["vision_cfg"]["image_size"])
        import open_clip

        config = open_clip.get_model_config(name) or {}
        size = config.get("vision_cfg", {}).get("image_size")
        if size:
            return int(size if isinstance(size, int) else size[0])
    return 224


def backbone_of(model: Any, pretrained: str | None = None, registry: Registry | None = None) -> Backbone:
    """A backbone for a model name, a reference dict, a model object or a backbone (given back as is)."""
    if isinstance(model, Backbone):
        return model
    live = LiveComponents()
    ref = _backbone_ref(model, pretrained)
    if _is_model(ref):
        ref = live.backbone(ref)
    device = model_device(live.models[0]) if live.models else torch.device("cpu")
    with borrowed(live.models):
        return live.register(registry or default_registry()).build("backbone", ref, device, where="model")


def list_layers(model: Any, pretrained: str | None = None) -> list[Layer]:
    """Every named layer of a model's image tower with its output shape for one image: a model name,
    a model object or a backbone (``clipforge layers MODEL`` from Python)."""
    from clipforge import layers

    backbone = backbone_of(model, pretrained)
    with borrowed([backbone.model] if getattr(backbone, "borrowed", False) else []):
        return layers.list_layers(backbone)


def layer_shape(model: Any, name: str, pretrained: str | None = None) -> tuple[int, ...]:
    """One image's output shape of the layer ``name`` of a model (name, object or backbone); a name
    the model lacks is an error that names the nearest ones."""
    from clipforge import layers

    backbone = backbone_of(model, pretrained)
    with borrowed([backbone.model] if getattr(backbone, "borrowed", False) else []):
        return layers.layer_shape(backbone, name)


__all__ = ["Goal", "as_goal", "invert", "visualize", "list_layers", "layer_shape", "backbone_of"]
