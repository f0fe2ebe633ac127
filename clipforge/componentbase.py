"""What every component shares, whatever its kind: the :class:`Component` base (a name, a strict
``Options`` model, the validated options) and the helpers an ``Options`` model uses
(:func:`option_error`, :func:`component_option`).

It is apart from :mod:`clipforge.components` (the kinds and their contracts) so that a kind may be
defined in a module of its own (the readers, :mod:`clipforge.readers`) while
:data:`clipforge.components.KINDS` still lists every kind, without an import circle. Import these
names from :mod:`clipforge.components` (or ``clipforge``), as before.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from clipforge.specbase import StrictModel


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
