"""clipforge: invert CLIP models, with every part of the run supplied by a plugin.

This module is the public API: what notebooks and plugin authors import. Anything not listed in
``__all__`` may change without notice. ``API_VERSION`` changes its major number when something
listed here changes incompatibly.
"""

from clipforge.components import (
    Analysis,
    AnalysisRun,
    Augmentation,
    AugmentContext,
    Backbone,
    Callback,
    Component,
    InversionResult,
    Options,
    Parameterization,
    Regularizer,
    RegularizerOptions,
    Row,
    RunInfo,
    Screened,
    StepState,
    draw_per_image,
    option_error,
)
from clipforge.engine import Engine, invert
from clipforge.hookspecs import hookimpl
from clipforge.judge import Judge, Verdicts, load_backbone
from clipforge.outputs import image_grid, progress_bar, save_png, to_display
from clipforge.registry import PluginError, Registry, ResolvedSpec, build_registry, default_registry
from clipforge.spec import AnalysisSpec, ComponentRef, OutputName, Prompt, RunSpec, SpecError, load_spec, printable
from clipforge.version import API_VERSION

__version__ = "0.1.0"

__all__ = [
    "API_VERSION",
    "Analysis",
    "AnalysisRun",
    "AnalysisSpec",
    "AugmentContext",
    "Augmentation",
    "Backbone",
    "Callback",
    "Component",
    "ComponentRef",
    "Engine",
    "InversionResult",
    "Judge",
    "Options",
    "OutputName",
    "Parameterization",
    "PluginError",
    "Prompt",
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
    "default_registry",
    "draw_per_image",
    "hookimpl",
    "image_grid",
    "invert",
    "load_backbone",
    "load_spec",
    "printable",
    "progress_bar",
    "option_error",
    "save_png",
    "to_display",
    "Verdicts",
]
