"""The ``clipforge`` command: invert, validate, sweep, gallery, models, schema, plugins, spectrum, and
one verb per installed analysis.

Global flags (``--traceback``, ``--threads N``, the plugin flags) go anywhere on the line. Nothing
heavy is imported before it is needed: ``--help``, ``--version`` and a verb's help import neither
torch nor the plugins; the registry is built only for the verbs that use it (and for a verb that is
not clipforge's own, which may be an analysis). ``--help`` lists the analyses all the same: the
built-ins from :data:`BUILTIN_ANALYSES` (a test keeps it equal to them), the installed ones from
their distributions' ``clipforge.analyses`` entry points (metadata: nothing is imported).

What each verb does is :mod:`clipforge.commands`' (and :mod:`clipforge.listing`'s); this module parses
the line, with the verbs' parsers of :mod:`clipforge.cli_parsers`. The registry is
built once per command, from the plugin flags (``--block``, ``--plugins``, ...),
before the full command line is parsed: analyses are plugins, so their verbs come from it. A spec is
checked against it exactly once (``Registry.resolve``), and the engine runs what that returned.

Errors in what the user gave (a spec, a file, a plugin name) are printed as one line each, naming
the place, with exit status 2 and no traceback (``--traceback`` shows it for debugging).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from clipforge.cli_parsers import (  # noqa: F401  (re-exported, those unused here: the parsers lived here)
    GLOBAL_FLAGS,
    _add_plugin_flags,
    _analysis_parser,
    _gallery_parser,
    _invert_parser,
    _layers_parser,
    _listing_parsers,
    _models_parser,
    _plugins_parser,
    _schema_kind,
    _schema_parser,
    _seeds,
    _spectrum_parser,
    _sweep_parser,
    _threads_count,
    _validate_parser,
    _verb_parser,
)
from clipforge.commands import (  # noqa: F401  (re-exported: cli imported every verb)
    cmd_analysis,
    cmd_gallery,
    cmd_invert,
    cmd_layers,
    cmd_models,
    cmd_plugins,
    cmd_schema,
    cmd_spectrum,
    cmd_sweep,
    cmd_validate,
    err,
)
from clipforge.errors import SpecError, printable
from clipforge.threads import ENV as THREADS_ENV  # noqa: F401  (re-exported)
from clipforge.threads import apply_threads, available_cpus, choose_threads

if TYPE_CHECKING:
    from clipforge.registry import Registry


def build_registry(**kwargs: Any) -> Registry:
    """:func:`clipforge.registry.build_registry`, imported when a command first needs it (the
    plugins import torch)."""
    from clipforge.registry import build_registry as build

    return build(**kwargs)


def _registry(args: argparse.Namespace) -> Registry:
    registry = build_registry(
        autoload=False if args.no_autoload else None,
        only=args.plugins.split(",") if args.plugins else None,
        block=args.block or (),
        strict=args.strict_plugins,
    )
    for failure in registry.failures:
        err.print(f"warning: {printable(failure, 1000)}")
    return registry


#: the verbs clipforge itself provides; an analysis cannot take one of these names
COMMANDS = ("invert", "validate", "sweep", "gallery", "models", "layers", "schema", "plugins", "spectrum")

#: the verbs that need no plugins (the registry is not built for them)
NO_REGISTRY = (cmd_gallery, cmd_models, cmd_spectrum)

#: the built-in analyses' verbs and one-line help (their classes' ``description``), for ``clipforge
#: --help``, which imports no plugin (the plugins import torch); a test keeps it equal to the registry's
BUILTIN_ANALYSES: dict[str, str] = {
    "blend": "do inversions of combined prompts show both concepts?",
    "compare": "the same prompts and seeds on several backbones, scored by one judge",
    "layer": "feature visualisation of every channel of a layer, batched: images and final activations",
    "probe": "attribute (bias) probe: proportions of attribute values in inversions, with 95% intervals",
    "screen": "safety screen of inversions, with flag rates and the text-side similarity table",
}

#: the entry-point group in which a distribution declares its analyses' verbs (name: the verb; value:
#: the plugin module, as in the ``clipforge`` group), so that ``clipforge --help`` lists them from the
#: distribution's metadata, without importing the plugin
ANALYSES_ENTRY_POINT_GROUP = "clipforge.analyses"

#: the heading of the analyses in ``clipforge --help``
ANALYSES_GROUP = "analyses (each writes report.md, report.json and its figures)"


def _analyses(registry: Registry) -> list[Any]:
    """The registry's analyses that can be verbs (warning about one that takes a command's name)."""
    usable = []
    for entry in sorted(registry.entries["analysis"].values(), key=lambda e: e.name):
        if entry.name in COMMANDS:
            err.print(
                f"warning: analysis {entry.name!r} from {entry.provider} is not available: "
                f"{entry.name!r} is a clipforge command"
            )
            continue
        usable.append(entry)
    return usable


def _env_list(var: str) -> list[str]:
    return [s.strip() for s in os.environ.get(var, "").split(",") if s.strip()]


def _dist_name(ep: Any) -> str | None:
    return ep.dist.metadata["Name"] if getattr(ep, "dist", None) is not None else None


def declared_analyses() -> list[tuple[str, str | None, str | None]]:
    """The analysis verbs that installed distributions declare in the ``clipforge.analyses``
    entry-point group, as (verb, distribution, plugin name): read from their metadata, nothing is
    imported. The plugin is the ``clipforge`` entry point of the same distribution and module (or
    the distribution's only one; None when it cannot be told)."""
    from importlib.metadata import entry_points

    plugins = list(entry_points(group="clipforge"))
    found = []
    for ep in entry_points(group=ANALYSES_ENTRY_POINT_GROUP):
        dist = _dist_name(ep)
        if dist == "clipforge":  # the built-ins are in BUILTIN_ANALYSES
            continue
        same = [p for p in plugins if _dist_name(p) == dist]
        plugin = next((p.name for p in same if getattr(p, "value", None) == getattr(ep, "value", "")), None)
        if plugin is None and len(same) == 1:
            plugin = same[0].name
        found.append((ep.name, dist, plugin))
    return sorted(set(found), key=lambda x: (x[0], x[1] or "", x[2] or ""))


def _listed_analyses(flags: argparse.Namespace | None) -> list[tuple[str, str]]:
    """The analysis verbs and their one-line help, without a registry: the built-ins from
    :data:`BUILTIN_ANALYSES`, the third-party ones from the ``clipforge.analyses`` entry points,
    each unless the plugin flags (or their environment variables) leave its plugin out."""
    block = {*(getattr(flags, "block", None) or ()), *_env_list("CLIPFORGE_BLOCK_PLUGINS")}
    only_text = getattr(flags, "plugins", None)
    only = set(only_text.split(",")) if only_text else (set(_env_list("CLIPFORGE_PLUGINS")) or None)
    no_autoload = getattr(flags, "no_autoload", False) or os.environ.get(
        "CLIPFORGE_DISABLE_PLUGIN_AUTOLOAD", ""
    ).strip().lower() in ("1", "true", "yes", "on")
    listed = {verb: text for verb, text in BUILTIN_ANALYSES.items() if verb not in block}  # plugin name = verb
    if not no_autoload:
        for verb, dist, plugin in declared_analyses():
            if verb in COMMANDS or verb in listed:  # not a verb (clipforge warns), or the built-in keeps it
                continue
            if plugin is not None and (plugin in block or (only is not None and plugin not in only)):
                continue
            listed[verb] = f"from {dist}" if dist else "from an installed plugin"
    return sorted(listed.items())


def _analyses_epilog(listed: list[tuple[str, str]]) -> str:
    """The main help page's group of analyses, and where the others are listed."""
    import shutil
    import textwrap

    lines = [f"{ANALYSES_GROUP}:"]
    width = max((len(verb) for verb, _ in listed), default=0)
    columns = max(60, shutil.get_terminal_size().columns - 2)  # as argparse wraps
    for verb, text in listed:
        lines += textwrap.wrap(
            text, columns, initial_indent=f"  {verb.ljust(width)}  ", subsequent_indent=" " * (width + 4)
        )
    lines += [] if listed else ["  (none)"]
    note = [  # lines of at most 79 characters, for the phrases tests and users look for not to be cut
        "An analysis reads a JSON spec (clipforge VERB SPEC.json [--out DIR] [--check]);",
        "--set KEY=VALUE sets a key of its 'run' block, as invert's --set sets a run",
        "spec's. Analyses of plugins that do not declare them (in the entry-point group",
        f"'{ANALYSES_ENTRY_POINT_GROUP}') are verbs too: 'clipforge plugins' lists them;",
        "'clipforge VERB --help' describes one. Global flags go anywhere on the line.",
    ]
    return "\n".join([*lines, "", *note])


class _MainParser(argparse.ArgumentParser):
    """The main parser, whose epilog (the analyses) is made only when its help is shown: finding
    the installed analyses reads every distribution's metadata, which a command need not do."""

    make_epilog: Any = None

    def format_help(self) -> str:
        if self.make_epilog is not None:
            self.epilog = self.make_epilog()
        return super().format_help()


def build_parser(registry: Registry | None = None, flags: argparse.Namespace | None = None) -> argparse.ArgumentParser:
    """The full command line: clipforge's own verbs and one per analysis in ``registry`` (none
    without one: ``clipforge --help`` loads no plugins, and lists the analyses from a table and the
    installed distributions' metadata, as the plugin ``flags`` allow)."""
    from clipforge.version import __version__

    analyses = _analyses(registry) if registry is not None else []

    def listed() -> list[tuple[str, str]]:
        if registry is None:
            return _listed_analyses(flags)
        return [
            (
                e.name,
                (e.cls.description or f"the {e.name} analysis")
                + ("" if e.distribution == "clipforge" else f" (from {e.distribution or e.provider})"),
            )
            for e in analyses
        ]

    parser = _MainParser(
        prog="clipforge",
        description="Invert CLIP models: optimise images until a frozen CLIP embeds them like a prompt.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.make_epilog = lambda: _analyses_epilog(listed())
    parser.add_argument("--version", action="version", version=f"clipforge {__version__}")
    _add_plugin_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")

    _invert_parser(sub)
    _validate_parser(sub)
    for entry in analyses:
        _analysis_parser(sub, entry)
    _sweep_parser(sub)
    _listing_parsers(sub)
    return parser


def _global_flags(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The global flags, wherever they are on the line, and the rest of it (a flag's value that looks
    like a flag is taken as the flag: ``--set --traceback`` cannot be written)."""
    flags = argparse.ArgumentParser(add_help=False, allow_abbrev=False, prog="clipforge")
    _add_plugin_flags(flags)
    if "--" in argv:  # what follows "--" is no flag
        cut = argv.index("--")
        found, rest = flags.parse_known_args(argv[:cut])
        return found, [*rest, *argv[cut:]]
    return flags.parse_known_args(argv)


def _user_error(exc: BaseException) -> bool:
    """An error in what the user gave (printed as one line, exit status 2)."""
    if isinstance(exc, FileExistsError):
        return True
    registry, outputs = sys.modules.get("clipforge.registry"), sys.modules.get("clipforge.outputs")
    return (registry is not None and isinstance(exc, registry.PluginError)) or (
        outputs is not None and isinstance(exc, outputs.NothingToResumeError)
    )


#: clipforge's own deprecations (each says the version it goes in): shown on the command line, where
#: Python hides a DeprecationWarning raised outside ``__main__``, so a spec using an old name says so
OWN_DEPRECATIONS = r".* goes in \d"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.filterwarnings("default", message=OWN_DEPRECATIONS, category=DeprecationWarning)
    plugin_args, rest = _global_flags(argv)
    try:
        threads = choose_threads(os.environ, available_cpus(), plugin_args.threads)
    except ValueError as exc:
        err.print(f"error: {exc}")
        return 2
    verb = next((a for a in rest if not a.startswith("-")), None)
    registry = None
    try:
        if verb is not None and verb not in COMMANDS:  # an analysis (or a typo, which argparse names)
            registry = _registry(plugin_args)
        args = build_parser(registry, plugin_args).parse_args(rest)
        for key, value in vars(plugin_args).items():
            setattr(args, key, value)
        if registry is None and args.func not in NO_REGISTRY:
            registry = _registry(plugin_args)
            _analyses(registry)  # the same warnings as when analyses are verbs
        if registry is not None:  # torch is imported (by the plugins), and nothing heavy has run yet
            apply_threads(threads)
    except Exception as exc:
        if not _user_error(exc):
            raise
        err.print(f"error: {printable(exc, 2000)}")
        return 2
    try:
        return args.func(args, registry)
    except SpecError as exc:
        for line in exc.format().splitlines():
            err.print(f"error: {line}")
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception as exc:
        if _user_error(exc):
            err.print(f"error: {printable(exc, 2000)}")
            return 2
        if args.traceback:
            raise
        err.print(f"error: {type(exc).__name__}: {printable(exc, 2000)}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
