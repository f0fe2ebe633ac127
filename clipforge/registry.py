"""Finding plugins and the components they provide.

Plugins are Python modules (or objects) implementing hooks from :mod:`clipforge.hookspecs`. The
built-ins (:data:`BUILTIN_PLUGINS`, the ``clipforge_plugins`` package) are always registered, as
pytest's and llm's are; third-party plugins are found through the ``clipforge`` entry-point group.
Every plugin is registered by the same call, listed and blocked by name. A plugin that fails to
import or to register is reported with its name, distribution and error, and the others keep
working (unless ``strict``).

Environment variables (the CLI has matching flags):

- ``CLIPFORGE_BLOCK_PLUGINS``: comma-separated plugin names not to load (built-ins too).
- ``CLIPFORGE_PLUGINS``: comma-separated names of third-party plugins; when set, only these load.
- ``CLIPFORGE_DISABLE_PLUGIN_AUTOLOAD``: 1/true/yes/on: load no third-party (entry-point) plugins
  (0/false/no/off or unset: load them); the built-ins stay.

A plugin name that names no installed plugin is reported like a failing plugin (fatal when ``strict``).
"""

from __future__ import annotations

import difflib
import importlib.metadata
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy
from pydantic import BaseModel

from clipforge import hookspecs
from clipforge.components import KINDS
from clipforge.errors import PluginError, UnknownComponentError
from clipforge.resolved import ComponentEntry, ResolvedComponent, ResolvedSpec, resolve_component, resolve_spec
from clipforge.spec import RunSpec
from clipforge.version import API_VERSION, __version__


class DuplicateComponentError(PluginError):
    """Two plugins give a component of one kind the same name (raised only when ``strict``)."""


class PluginClashWarning(UserWarning):
    """A component was disabled because another plugin's component already has its name."""


#: the distribution whose plugins are the built-ins (they keep their names in a clash)
BUILTIN_DISTRIBUTION = "clipforge"

#: the built-in plugins, by name: always registered (unless blocked by name). A new built-in is a
#: module in ``plugins/`` (imported as ``clipforge_plugins``) and a line here; no reinstall is needed.
BUILTIN_PLUGINS: dict[str, str] = {
    "open_clip": "clipforge_plugins.open_clip_backbone",
    "pixel": "clipforge_plugins.pixel",
    "maco": "clipforge_plugins.maco",
    "fourier": "clipforge_plugins.fourier",
    "multires": "clipforge_plugins.multires",
    "paper_augmentations": "clipforge_plugins.paper_augmentations",
    "regularizers": "clipforge_plugins.regularizers",
    "objectives": "clipforge_plugins.objectives",
    "transforms": "clipforge_plugins.transforms",
    "progress": "clipforge_plugins.progress",
    "metrics_log": "clipforge_plugins.metrics_log",
    "snapshots": "clipforge_plugins.snapshots",
    "safety_screen": "clipforge_plugins.safety_screen",
    "probe": "clipforge_plugins.analysis_probe",
    "screen": "clipforge_plugins.analysis_screen",
    "compare": "clipforge_plugins.analysis_compare",
    "blend": "clipforge_plugins.analysis_blend",
    "layer": "clipforge_plugins.analysis_layer",
    "toyworld_reader": "clipforge_plugins.toyworld_reader",
}


def _is_builtin(entry: ComponentEntry) -> bool:
    return entry.distribution == BUILTIN_DISTRIBUTION


#: hook name -> the kind of component it registers (every kind's base class names its hook)
HOOK_KINDS: dict[str, str] = {cls.hook: kind for kind, cls in KINDS.items()}


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    distribution: str | None
    error: str
    what: str = "failed to load"  # or, after a name clash, "lost a component"

    def __str__(self) -> str:
        dist = f" from {self.distribution}" if self.distribution else ""
        return f"plugin {self.plugin!r}{dist} {self.what}: {self.error}"


@dataclass
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)


@dataclass
class Registry:
    """Every component of every kind, with the plugin that provided it."""

    entries: dict[str, dict[str, ComponentEntry]]
    plugins: list[PluginInfo]
    failures: list[PluginFailure]

    def get(self, kind: str, name: str) -> ComponentEntry:
        by_name = self.entries.get(kind, {})
        if name not in by_name:
            raise UnknownComponentError(kind, name, list(by_name))
        return by_name[name]

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries.get(kind, {}))

    def all(self) -> list[ComponentEntry]:
        return [e for kind in KINDS for e in sorted(self.entries.get(kind, {}).values(), key=lambda e: e.name)]

    def with_components(self, plugin: str, classes: Iterable[type]) -> Registry:
        """A copy with ``classes`` added as components of ``plugin`` (a run's Python objects, made into
        components for it); a name another plugin already gives a different class is refused."""
        entries = {kind: dict(by_name) for kind, by_name in self.entries.items()}
        for cls in classes:
            entry = _make_entry(cls.kind, cls, plugin, None, None)
            known = entries.setdefault(entry.kind, {}).get(entry.name)
            if known is not None and known.cls is not cls:
                raise PluginError(
                    f"{entry.kind} class {cls.__name__} is named {entry.name!r}, which {known.provider} already "
                    "gives another class; give it another name"
                )
            entries[entry.kind][entry.name] = known or entry
        return Registry(entries, [*self.plugins, PluginInfo(plugin, None, None)], list(self.failures))

    def resolve(self, spec: RunSpec, where: str = "", *, check_goals: bool = True) -> ResolvedSpec:
        """Check a run spec against this registry: find every component and validate its options
        with the component's own model. This is the one place a spec's components are checked.

        :param where: JSON path of the spec inside a larger one (an analysis's ``run``), to prefix
            every problem's path with.
        :param check_goals: check that each prompt fits its goal (a prompt without text needs objectives
            that read none); a sweep's grid point, whose prompts come later, is resolved without.
        :raises SpecError: listing every problem, each with its JSON path.
        """
        return resolve_spec(self, spec, where, check_goals)

    def resolve_component(self, kind: str, ref: Any, where: str = "") -> ResolvedComponent:
        """Find one component (a :class:`ComponentRef`, its dict, or a bare name) and validate its
        options; ``where`` is its JSON path, for the error."""
        return resolve_component(self, kind, ref, where)

    def build(self, kind: str, ref: Any, *args: Any, where: str = "") -> Any:
        """Build one component outside a run (a judge's backbone, a screen's callback); ``where`` is
        its JSON path, for errors."""
        return self.resolve_component(kind, ref, where).build(*args, where=where)


def _env_flag(var: str) -> bool:
    """A yes/no environment variable: 1/true/yes/on or 0/false/no/off (or unset, or empty)."""
    value = os.environ.get(var, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise PluginError(f"{var} must be 1/true/yes/on or 0/false/no/off, not {os.environ[var]!r}")


def _env_list(var: str) -> list[str]:
    return [s.strip() for s in os.environ.get(var, "").split(",") if s.strip()]


def build_registry(
    *,
    autoload: bool | None = None,
    only: Iterable[str] | None = None,
    block: Iterable[str] = (),
    extra_plugins: Iterable[tuple[str, Any]] = (),
    strict: bool = False,
) -> Registry:
    """Load plugins and collect their components: the built-ins, the third-party (entry-point)
    plugins, then ``extra_plugins``, each unless blocked.

    :param autoload: load third-party plugins (default: unless ``CLIPFORGE_DISABLE_PLUGIN_AUTOLOAD``).
    :param only: load only the third-party plugins with these names (default: ``CLIPFORGE_PLUGINS``).
    :param block: plugin names not to load, built-ins too (added to ``CLIPFORGE_BLOCK_PLUGINS``).
    :param extra_plugins: ``(name, module_or_object)`` pairs registered directly, e.g. in tests.
    :param strict: raise on the first plugin failure instead of reporting it.
    """
    if autoload is None:
        autoload = not _env_flag("CLIPFORGE_DISABLE_PLUGIN_AUTOLOAD")
    if only is None:
        only = _env_list("CLIPFORGE_PLUGINS") or None
    only_set = set(only) if only is not None else None
    blocked = set(block) | set(_env_list("CLIPFORGE_BLOCK_PLUGINS"))
    extra_plugins = list(extra_plugins)
    failures: list[PluginFailure] = []

    def fail(name: str, dist: str | None, error: BaseException | str, what: str = "failed to load") -> None:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        failure = PluginFailure(name, dist, text, what)
        if strict:
            raise PluginError(str(failure)) from (error if isinstance(error, BaseException) else None)
        failures.append(failure)

    third_party = [ep for ep in _entry_points() if ep.dist is None or ep.dist.metadata["Name"] != BUILTIN_DISTRIBUTION]
    installed = {*BUILTIN_PLUGINS, *(ep.name for ep in third_party), *(name for name, _ in extra_plugins)}
    for name in sorted((blocked | (only_set or set())) - installed):
        close = difflib.get_close_matches(name, sorted(installed), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        fail(
            name,
            None,
            f"--block, --plugins or CLIPFORGE_*PLUGINS name it, but no installed plugin has this name; {hint}"
            f"installed: {', '.join(sorted(installed))}",
            what="is unknown",
        )
    candidates = _builtins(blocked, fail)
    if autoload:
        wanted = [ep for ep in third_party if ep.name not in blocked and (only_set is None or ep.name in only_set)]
        candidates += _load_entry_points(wanted, fail)
    candidates += [(name, plugin, None, None) for name, plugin in extra_plugins if name not in blocked]
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    dist_of = _register(pm, candidates, fail)
    entries, plugin_hooks = _collect(pm, dist_of, fail, failures, strict)
    plugins = [PluginInfo(n, *dist_of[n], hooks=plugin_hooks.get(n, [])) for n in dist_of]
    return Registry(entries, plugins, failures)


Candidate = tuple[str, Any, "str | None", "str | None"]  # name, plugin, distribution, version
Fail = Callable[..., None]


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP))


def _builtins(blocked: set[str], fail: Fail) -> list[Candidate]:
    """The built-in plugins not blocked, imported (clipforge's own distribution and version)."""
    found = []
    for name, module in BUILTIN_PLUGINS.items():
        if name in blocked:
            continue
        try:
            found.append((name, importlib.import_module(module), BUILTIN_DISTRIBUTION, __version__))
        except Exception as exc:  # a broken plugin must not take the others down
            fail(name, BUILTIN_DISTRIBUTION, exc)
    return found


def _load_entry_points(wanted: list[importlib.metadata.EntryPoint], fail: Fail) -> list[Candidate]:
    found = []
    for ep in wanted:
        dist = ep.dist.metadata["Name"] if ep.dist else None
        version = ep.dist.version if ep.dist else None
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not take the others down
            fail(ep.name, dist, exc)
            continue
        found.append((ep.name, plugin, dist, version))
    return found


def _register(pm: pluggy.PluginManager, candidates: list[Candidate], fail: Fail) -> dict[str, tuple]:
    """Register each plugin that declares a compatible API and no misspelled hook; returns the
    registered ones' (distribution, version) by name."""
    dist_of: dict[str, tuple[str | None, str | None]] = {}
    for name, plugin, dist, version in candidates:
        if pm.has_plugin(name):
            fail(name, dist, f"a plugin named {name!r} is already registered")
            continue
        try:
            _check_api_version(plugin)
            pm.register(plugin, name=name)
            _check_hook_names(pm, plugin)
        except Exception as exc:
            if pm.has_plugin(name):
                pm.unregister(name=name)
            fail(name, dist, exc)
            continue
        dist_of[name] = (dist, version)
    return dist_of


def _collect(
    pm: pluggy.PluginManager, dist_of: dict[str, tuple], fail: Fail, failures: list[PluginFailure], strict: bool
) -> tuple[dict[str, dict[str, ComponentEntry]], dict[str, list[str]]]:
    """Every registered component by kind and name, and each plugin's hooks; a name clash disables
    the newcomer's component, never the whole registry (the built-in keeps its name, otherwise the
    plugin registered first does)."""
    entries: dict[str, dict[str, ComponentEntry]] = {kind: {} for kind in KINDS}
    plugin_hooks: dict[str, list[str]] = {name: [] for name in dist_of}
    for hook_name, kind in HOOK_KINDS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            plugin_name = impl.plugin_name
            dist, version = dist_of.get(plugin_name, (None, None))
            plugin_hooks.setdefault(plugin_name, []).append(hook_name)
            found: list[type] = []
            try:
                impl.function(register=found.append)
                new = [_make_entry(kind, cls, plugin_name, dist, version) for cls in found]
            except PluginError as exc:
                fail(plugin_name, dist, str(exc))
                continue
            except Exception as exc:
                fail(plugin_name, dist, exc)
                continue
            for entry in new:
                existing = entries[kind].get(entry.name)
                if existing is None:
                    entries[kind][entry.name] = entry
                    continue
                kept, dropped = (
                    (entry, existing) if _is_builtin(entry) and not _is_builtin(existing) else (existing, entry)
                )
                entries[kind][entry.name] = kept
                clash = PluginFailure(
                    dropped.plugin,
                    dropped.distribution,
                    f"its {kind} {entry.name!r} is disabled, because {kept.provider} has a {kind} of that name; "
                    f"rename it, or block one of the plugins (--block NAME or CLIPFORGE_BLOCK_PLUGINS)",
                    what="lost a component",
                )
                if strict:
                    raise DuplicateComponentError(str(clash))
                warnings.warn(str(clash), PluginClashWarning, stacklevel=4)
                failures.append(clash)
    return entries, plugin_hooks


def _check_api_version(plugin: Any) -> None:
    """A plugin may declare ``CLIPFORGE_API = "MAJOR.MINOR"``, the public API it was written for.
    It is refused when the major versions differ or it needs a newer minor version."""
    wanted = getattr(plugin, "CLIPFORGE_API", None)
    if wanted is None:
        return
    try:
        w_major, w_minor = (int(x) for x in str(wanted).split("."))
    except ValueError:
        raise PluginError(f"CLIPFORGE_API must look like '1.0', not {wanted!r}") from None
    major, minor = (int(x) for x in API_VERSION.split("."))
    if w_major != major or w_minor > minor:
        raise PluginError(
            f"written for clipforge API {wanted}, but this clipforge provides API {API_VERSION}; "
            f"install a version of the plugin made for API {major}.x (or a clipforge that provides {wanted})"
        )


def _check_hook_names(pm: pluggy.PluginManager, plugin: Any) -> None:
    """Catch misspelled hook implementations (``register_backbone`` for ``register_backbones``)."""
    for attr in dir(plugin):
        if attr.startswith("register_") and attr not in HOOK_KINDS:
            if callable(getattr(plugin, attr, None)) and hasattr(getattr(plugin, attr), "clipforge_impl"):
                close = difflib.get_close_matches(attr, list(HOOK_KINDS), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise PluginError(f"unknown hook {attr!r}{hint}")


def _make_entry(kind: str, cls: Any, plugin: str, dist: str | None, version: str | None) -> ComponentEntry:
    base = KINDS[kind]
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(f"{base.hook} registered {cls!r}, which is not a subclass of clipforge.{base.__name__}")
    if not getattr(cls, "name", ""):
        raise PluginError(f"{kind} class {cls.__name__} has no 'name'")
    options = getattr(cls, "Options", None)
    if not (isinstance(options, type) and issubclass(options, BaseModel)):
        raise PluginError(f"{kind} {cls.name!r} has no pydantic 'Options' model")
    if options.model_config.get("extra") != "forbid":
        raise PluginError(f"{kind} {cls.name!r}: Options must reject unknown keys (subclass clipforge.Options)")
    if not issubclass(options, base.Options):
        raise PluginError(f"{kind} {cls.name!r}: Options must subclass clipforge.{base.Options.__name__}")
    return ComponentEntry(kind, cls.name, cls, plugin, dist, version)


_default: Registry | None = None


def default_registry() -> Registry:
    """The registry of installed plugins, built once per process (settings from the environment)."""
    global _default
    if _default is None:
        _default = build_registry()
    return _default


def reset_default_registry() -> None:
    """Forget the cached registry (after installing a plugin, or in tests)."""
    global _default
    _default = None


# --------------------------------------------------------------------------- specs against the registry
