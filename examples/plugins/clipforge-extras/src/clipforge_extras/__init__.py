"""clipforge-extras: an example third-party clipforge plugin.

This module is the plugin itself: the ``clipforge`` entry point ``extras`` names it, clipforge checks
its ``CLIPFORGE_API`` and calls the hooks below once, when it builds its registry. It provides

- ``gaussian_noise`` (augmentation): per-copy Gaussian pixel noise;
- ``saturation`` (regulariser): pulls each image's mean chroma towards a target;
- ``activation_norm`` (objective): how strongly a layer of the image tower responds (DeepDream's goal);
- ``progress_gif`` (callback): an animated GIF of the images during the run;
- ``brightness`` (analysis, ``clipforge brightness SPEC.json``): how bright and colourful the
  inversions of each prompt are;
- ``clip_classifier`` (reader): what analyses read of real images (colours, concepts present), by
  zero-shot classification with a CLIP backbone, as the toy world's analytic judge reads its images.

Everything is written against clipforge's public API only (``clipforge`` and, for the analysis,
``clipforge.analysis``), like any third-party plugin.
"""

from __future__ import annotations

from collections.abc import Callable

from clipforge import hookimpl
from clipforge_extras.activation import ActivationNorm
from clipforge_extras.brightness import Brightness
from clipforge_extras.classifier import ClipClassifier
from clipforge_extras.gif import ProgressGif
from clipforge_extras.noise import GaussianNoise
from clipforge_extras.saturation import Saturation

__version__ = "0.1.0"

# The clipforge public API this plugin was written for: clipforge refuses to load it when its own
# API_VERSION has another major number, or an older minor one. 1.3: objectives (``activation_norm``).
CLIPFORGE_API = "1.5"

__all__ = [
    "CLIPFORGE_API",
    "ActivationNorm",
    "Brightness",
    "ClipClassifier",
    "GaussianNoise",
    "ProgressGif",
    "Saturation",
]


@hookimpl
def register_augmentations(register: Callable[[type], None]) -> None:
    register(GaussianNoise)


@hookimpl
def register_regularizers(register: Callable[[type], None]) -> None:
    register(Saturation)


@hookimpl
def register_objectives(register: Callable[[type], None]) -> None:
    register(ActivationNorm)


@hookimpl
def register_callbacks(register: Callable[[type], None]) -> None:
    register(ProgressGif)


@hookimpl
def register_analyses(register: Callable[[type], None]) -> None:
    register(Brightness)


@hookimpl
def register_readers(register: Callable[[type], None]) -> None:
    register(ClipClassifier)
