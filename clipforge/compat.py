"""Compatibility shims, all of them here: each one warns (:class:`DeprecationWarning`) and says in
which version it goes, so that nothing old is accepted in silence.

    Engine(spec dict, path or RunSpec[, registry=...])   goes in 0.3: :func:`resolve_for_engine`
    "toyworld" for a judge's world captions (``"world"``)   goes in 0.3: :func:`world_captions_name`
"""

from __future__ import annotations

import warnings
from typing import Any

#: the version in which the shims below go
GOES_IN = "0.3"


def deprecated(what: str, instead: str, stacklevel: int = 3) -> None:
    """Warn that ``what`` goes in :data:`GOES_IN`, saying what to do ``instead``."""
    warnings.warn(f"{what} goes in {GOES_IN}: {instead}", DeprecationWarning, stacklevel=stacklevel + 1)


def resolve_for_engine(spec: Any, registry: Any = None) -> Any:
    """``Engine(spec)`` given a spec that is not resolved (a path, a dict, a :class:`RunSpec`):
    resolved here, with ``registry`` (the default one without), and warned of."""
    from clipforge.registry import default_registry
    from clipforge.spec import load_spec

    deprecated("Engine(spec dict)", "resolve first with Registry.resolve or call clipforge.invert", stacklevel=3)
    return (registry or default_registry()).resolve(load_spec(spec))


def world_captions_name(value: Any, where: str = "captions") -> Any:
    """``"toyworld"``, the older name of ``"world"`` (a judge's world captions): ``"world"``, warned of."""
    if value == "toyworld":
        deprecated(f"{where}: 'toyworld'", "write 'world'", stacklevel=3)
        return "world"
    return value
