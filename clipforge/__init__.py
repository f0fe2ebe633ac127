"""clipforge: invert CLIP models, with every part of the run supplied by a plugin.

This module is the public API: what notebooks and plugin authors import. Anything not listed in
``__all__`` may change without notice. ``API_VERSION`` changes its major number when something
listed here changes incompatibly. The names are imported when first used (importing clipforge does
not import torch), and are the same objects either way.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from clipforge.version import API_VERSION
from clipforge.version import __version__ as __version__

#: where each public name lives; imported when first used, so that importing clipforge (and
#: ``clipforge --help``) does not import torch
_WHERE = {
    **dict.fromkeys(
        (
            "Analysis",
            "AnalysisRun",
            "Augmentation",
            "AugmentContext",
            "Backbone",
            "Callback",
            "CaptionReading",
            "ColourReading",
            "Component",
            "DEFAULT_READER",
            "Features",
            "InversionResult",
            "MarkerReading",
            "Objective",
            "ObjectiveOptions",
            "Options",
            "Parameterization",
            "Reader",
            "ReaderChoice",
            "Regularizer",
            "RegularizerOptions",
            "Row",
            "RunInfo",
            "Screened",
            "StepState",
            "choose_reader",
            "component_option",
            "draw_per_image",
            "option_error",
            "reader_field",
        ),
        "clipforge.components",
    ),
    "Engine": "clipforge.engine",
    **dict.fromkeys(("invert", "visualize", "list_layers", "layer_shape", "backbone_of"), "clipforge.api"),
    **dict.fromkeys(
        ("Goal", "channel", "direction", "diversity", "image", "neuron", "objective", "prompt"),
        "clipforge.algebra",
    ),
    **dict.fromkeys(("ModelError", "model"), "clipforge.models"),
    **dict.fromkeys(("Report", "analyse"), "clipforge.report"),
    "COLOR_MIX": "clipforge.spectrum",
    "hookimpl": "clipforge.hookspecs",
    **dict.fromkeys(("Judge", "Verdicts", "load_backbone"), "clipforge.judge"),
    **dict.fromkeys(("image_grid", "read_image", "save_png", "to_display"), "clipforge.images"),
    "progress_bar": "clipforge.progressbar",
    **dict.fromkeys(
        ("PluginError", "Registry", "ResolvedSpec", "build_registry", "default_registry"), "clipforge.registry"
    ),
    **dict.fromkeys(
        ("ComponentRef", "OutputName", "Prompt", "RunSpec", "existing_image", "load_spec", "spec_path"),
        "clipforge.spec",
    ),
    "AnalysisSpec": "clipforge.analysis_spec",
    **dict.fromkeys(
        (
            "LayerError",
            "captured",
            "channel_count",
            "channel_maps",
            "find_layer",
            "image_tower",
        ),
        "clipforge.layers",
    ),
    **dict.fromkeys(("SpecError", "printable"), "clipforge.errors"),
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'clipforge' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # found once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


if TYPE_CHECKING:
    from clipforge.algebra import Goal, channel, direction, diversity, image, neuron, objective, prompt
    from clipforge.analysis_spec import AnalysisSpec
    from clipforge.api import backbone_of, invert, layer_shape, list_layers, visualize
    from clipforge.components import (
        DEFAULT_READER,
        Analysis,
        AnalysisRun,
        Augmentation,
        AugmentContext,
        Backbone,
        Callback,
        CaptionReading,
        ColourReading,
        Component,
        Features,
        InversionResult,
        MarkerReading,
        Objective,
        ObjectiveOptions,
        Options,
        Parameterization,
        Reader,
        ReaderChoice,
        Regularizer,
        RegularizerOptions,
        Row,
        RunInfo,
        Screened,
        StepState,
        choose_reader,
        component_option,
        draw_per_image,
        option_error,
        reader_field,
    )
    from clipforge.engine import Engine
    from clipforge.errors import SpecError, printable
    from clipforge.hookspecs import hookimpl
    from clipforge.images import image_grid, read_image, save_png, to_display
    from clipforge.judge import Judge, Verdicts, load_backbone
    from clipforge.layers import (
        LayerError,
        captured,
        channel_count,
        channel_maps,
        find_layer,
        image_tower,
    )
    from clipforge.models import ModelError, model
    from clipforge.progressbar import progress_bar
    from clipforge.registry import PluginError, Registry, ResolvedSpec, build_registry, default_registry
    from clipforge.report import Report, analyse
    from clipforge.spec import ComponentRef, OutputName, Prompt, RunSpec, existing_image, load_spec, spec_path
    from clipforge.spectrum import COLOR_MIX

__all__ = [
    "API_VERSION",
    "COLOR_MIX",
    "Goal",
    "ModelError",
    "Report",
    "analyse",
    "backbone_of",
    "channel",
    "direction",
    "diversity",
    "image",
    "model",
    "neuron",
    "objective",
    "prompt",
    "visualize",
    "Analysis",
    "AnalysisRun",
    "AnalysisSpec",
    "AugmentContext",
    "Augmentation",
    "Backbone",
    "Callback",
    "CaptionReading",
    "ColourReading",
    "Component",
    "ComponentRef",
    "DEFAULT_READER",
    "Engine",
    "Features",
    "InversionResult",
    "Judge",
    "LayerError",
    "MarkerReading",
    "Objective",
    "ObjectiveOptions",
    "Options",
    "OutputName",
    "Parameterization",
    "PluginError",
    "Prompt",
    "Reader",
    "ReaderChoice",
    "Registry",
    "ResolvedSpec",
    "Regularizer",
    "RegularizerOptions",
    "Row",
    "RunInfo",
    "RunSpec",
    "Screened",
    "SpecError",
    "StepState",
    "build_registry",
    "captured",
    "channel_count",
    "channel_maps",
    "choose_reader",
    "component_option",
    "default_registry",
    "draw_per_image",
    "find_layer",
    "hookimpl",
    "image_grid",
    "image_tower",
    "invert",
    "layer_shape",
    "list_layers",
    "load_backbone",
    "existing_image",
    "load_spec",
    "printable",
    "progress_bar",
    "option_error",
    "read_image",
    "reader_field",
    "save_png",
    "spec_path",
    "to_display",
    "Verdicts",
]
