"""The hooks a clipforge plugin can implement.

Each hook receives a ``register`` callback and calls it once for every component class the plugin
provides. clipforge owns the bookkeeping: names, duplicates, which plugin provided what. A plugin
implements only the hooks it needs, marking each with :data:`clipforge.hookimpl`::

    from clipforge import Regularizer, hookimpl

    class Brightness(Regularizer):
        name = "brightness"
        def __call__(self, images):
            return images.mean(dim=(1, 2, 3))

    @hookimpl
    def register_regularizers(register):
        register(Brightness)

Hooks are called once, when the registry is built, never inside the optimisation loop.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT = "clipforge"
ENTRY_POINT_GROUP = "clipforge"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[type], None]


@hookspec
def register_backbones(register: Register) -> None:
    """Register :class:`clipforge.Backbone` subclasses (models that embed images and texts).

    :param register: call ``register(BackboneClass)`` for each backbone.
    """


@hookspec
def register_parameterizations(register: Register) -> None:
    """Register :class:`clipforge.Parameterization` subclasses (how variables become images).

    :param register: call ``register(ParameterizationClass)`` for each parameterisation.
    """


@hookspec
def register_augmentations(register: Register) -> None:
    """Register :class:`clipforge.Augmentation` subclasses (random transforms of the copies).

    :param register: call ``register(AugmentationClass)`` for each augmentation.
    """


@hookspec
def register_regularizers(register: Register) -> None:
    """Register :class:`clipforge.Regularizer` subclasses (penalties on the images).

    :param register: call ``register(RegularizerClass)`` for each regulariser.
    """


@hookspec
def register_objectives(register: Register) -> None:
    """Register :class:`clipforge.Objective` subclasses (what a run maximises: prompts, channels, ...).

    :param register: call ``register(ObjectiveClass)`` for each objective.
    """


@hookspec
def register_callbacks(register: Register) -> None:
    """Register :class:`clipforge.Callback` subclasses (observers of a run).

    :param register: call ``register(CallbackClass)`` for each callback.
    """


@hookspec
def register_analyses(register: Register) -> None:
    """Register :class:`clipforge.Analysis` subclasses (studies run as ``clipforge <name> SPEC.json``).

    :param register: call ``register(AnalysisClass)`` for each analysis.
    """


@hookspec
def register_readers(register: Register) -> None:
    """Register :class:`clipforge.Reader` subclasses (what analyses read of images: colours, objects, a marker).

    :param register: call ``register(ReaderClass)`` for each reader.
    """
