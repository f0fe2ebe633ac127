"""The ``clipforge`` command: invert, validate, sweep, gallery, models, schema, plugins, spectrum, and
one verb per installed analysis.

Global flags (``--traceback``, ``--threads N``, the plugin flags) go anywhere on the line. Nothing
heavy is imported before it is needed: ``--help``, ``--version`` and a verb's help import neither
torch nor the plugins; the registry is built only for the verbs that use it (and for a verb that is
not clipforge's own, which may be an analysis). ``--help`` lists the analyses all the same: the
built-ins from :data:`BUILTIN_ANALYSES` (a test keeps it equal to them), the installed ones from
their distributions' ``clipforge.analyses`` entry points (metadata: nothing is imported).

What each verb does is :mod:`clipforge.commands`'; this module parses the line. The registry is
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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from clipforge.commands import (
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
from clipforge.threads import ENV as THREADS_ENV
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


def _seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` (or a space-separated list, which argparse gathers)."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers such as 0,1,2, not {text!r}") from None


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

GLOBAL_FLAGS = (
    "global flags, accepted anywhere on the line: --traceback, --threads N, --block PLUGIN, --plugins A,B, "
    "--no-autoload, --strict-plugins"
)


def _schema_kind(text: str) -> str:
    """``clipforge schema --kind``: run, sweep, analysis or analysis:VERB (the verb is checked
    against the installed analyses when the schema is made)."""
    kind, colon, name = text.partition(":")
    if (kind in ("run", "sweep") and not colon) or (kind == "analysis" and (not colon or name)):
        return text
    raise argparse.ArgumentTypeError(f"expected run, sweep, analysis or analysis:VERB, not {text!r}")


def _threads_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads (1 or more), not {text!r}")
    return value


def _add_plugin_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--block", action="append", metavar="PLUGIN", help="do not load this plugin, built-in or not (repeatable)"
    )
    parser.add_argument("--plugins", metavar="A,B", help="load only these third-party plugins (the built-ins stay)")
    parser.add_argument(
        "--no-autoload", action="store_true", help="load no third-party plugins (the built-ins stay; --block drops one)"
    )
    parser.add_argument("--strict-plugins", action="store_true", help="a plugin that fails to load is fatal")
    parser.add_argument("--traceback", action="store_true", help="show tracebacks of errors")
    parser.add_argument(
        "--threads",
        type=_threads_count,
        metavar="N",
        help=f"CPU threads for torch (default: ${THREADS_ENV}, else $OMP_NUM_THREADS, else the CPUs this "
        "process may use, shared among the ranks of torchrun or Slurm on this node)",
    )


def _verb_parser(sub: Any, name: str, help: str, description: str, examples: Sequence[str]) -> Any:
    """A verb's parser: its one-line help, a description and examples on its help page."""
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples) + f"\n\n{GLOBAL_FLAGS}"
    return sub.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog.replace("%", "%%"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


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


def _invert_parser(sub: Any) -> None:
    p = _verb_parser(
        sub,
        "invert",
        "run an inversion: from a spec file, or from --prompt",
        "Optimise images until the backbones embed them like the prompts, one image per prompt and seed.\n"
        "The spec comes from a JSON file, from the flags below (--prompt, --model, --steps, --seeds, ...), or\n"
        "both (the flags win); the output folder gets the full resolved spec as spec.json, the images, the\n"
        "metrics and run.json. A stopped run continues with --resume.",
        [
            'clipforge invert --prompt "a red circle" --model toyworld-rn --steps 200 --seeds 0,1',
            'clipforge invert --prompt "a photo of a cat" --model ViT-B-32 --pretrained openai --out runs/cat',
            "clipforge invert examples/quickstart.json --set steps=100 --out runs/quick",
            "clipforge invert --resume runs/quick",
        ],
    )
    p.add_argument("spec", nargs="?", help="a JSON run spec (optional with --prompt)")
    p.add_argument("--prompt", action="append", metavar="TEXT", help="a text prompt (repeatable); replaces the spec's")
    p.add_argument(
        "--model",
        action="append",
        metavar="NAME",
        help="an open_clip model or a bundled one (see 'clipforge models'); repeatable: the losses are averaged",
    )
    p.add_argument("--pretrained", metavar="TAG", help="the pretrained tag (or weights file) of the --model")
    p.add_argument("--steps", type=int, metavar="N", help="optimisation steps")
    p.add_argument("--seeds", type=_seeds, nargs="+", metavar="S", help="seeds, e.g. 0,1,2 (one image per seed)")
    p.add_argument("--copies", type=int, metavar="N", help="augmented copies of each image per step")
    p.add_argument("--device", metavar="DEV", help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    p.add_argument("--out", help="output directory (must not exist or be empty)")
    p.add_argument("--resume", metavar="DIR", help="continue the stopped run in DIR from its last checkpoint")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help="write images and the optimisation state every N steps (default: every 5%% of the run)",
    )
    p.add_argument(
        "--checkpoint-seconds",
        metavar="S",
        help="also write them whenever S seconds of wall time have passed since the last time (default: 300), "
        "so that a killed run loses at most S seconds of work",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a spec value, e.g. steps=100 or regularizers[0].options.weight=0.01",
    )
    p.set_defaults(func=cmd_invert)


def _validate_parser(sub: Any) -> None:
    p = _verb_parser(
        sub,
        "validate",
        "check a spec without running it",
        "Check a run spec against the installed plugins (every component and option) without running it.",
        ["clipforge validate spec.json", "clipforge validate spec.json --set steps=100"],
    )
    p.add_argument("spec")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_validate)


def _analysis_parser(sub: Any, entry: Any) -> None:
    help_text = entry.cls.description or f"the {entry.name} analysis"
    p = _verb_parser(
        sub,
        entry.name,
        help_text.replace("%", "%%"),
        f"{help_text} (the analysis {entry.name!r} from {entry.provider}).\n"
        "It runs the inversions its spec asks for and writes report.md, report.json and its figures.\n"
        "--set KEY=VALUE overrides a key of the spec's 'run' block (its inversion settings; keys are\n"
        "within it, as in a run spec: steps, optimizer.lr, regularizers[0].options.weight).",
        [
            f"clipforge {entry.name} {entry.name}.json --check",
            f"clipforge {entry.name} {entry.name}.json --set steps=100 --set device=cuda --check",
            f"clipforge {entry.name} {entry.name}.json --out runs/{entry.name}",
        ],
    )
    p.add_argument("spec", help=f"a JSON {entry.name} spec")
    p.add_argument("--out", help="output directory (must not exist or be empty)")
    p.add_argument("--check", action="store_true", help="validate the spec without running it")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a key of the spec's 'run' block, parsed as invert's --set (repeatable): steps=100 "
        "sets run.steps; 'prompts' and 'seeds' are the analysis's own",
    )
    p.set_defaults(func=cmd_analysis)


def _sweep_parser(sub: Any) -> None:
    p = _verb_parser(
        sub,
        "sweep",
        "run a study (grid points x prompts x seeds); run again to continue it",
        "Run every item of a sweep spec (grid points x prompts x seeds) into one folder, in blocks; running\n"
        "the same command again continues it. Shards split it among processes: --shard I/N, torchrun's\n"
        "RANK/WORLD_SIZE, or Slurm's SLURM_PROCID/SLURM_NTASKS (see docs/studies.md).",
        [
            "clipforge sweep study.json --plan",
            "clipforge sweep study.json --out runs/study",
            "clipforge sweep runs/study --status",
            "srun clipforge sweep study.json --out runs/study   # one shard per Slurm task",
        ],
    )
    p.add_argument("target", help="a JSON sweep spec; with --status, a sweep folder")
    p.add_argument("--out", help="the sweep folder (default: runs/<spec name>); the same --out continues a sweep")
    p.add_argument("--status", action="store_true", help="print what is done, failed and left in a sweep folder")
    p.add_argument("--plan", action="store_true", help="print the grid points and blocks without running")
    p.add_argument("--shard", metavar="I/N", help="run only shard I of N (0-based): a Slurm array task, a node")
    p.set_defaults(func=cmd_sweep)


def _listing_parsers(sub: Any) -> None:
    """The verbs that show what there is: gallery, models, layers, schema, plugins; and spectrum."""
    p = _verb_parser(
        sub,
        "gallery",
        "write DIR/index.html, a page to browse a run, a sweep or a report",
        "Write DIR/index.html: one self-contained page to browse a run's, a sweep's or a report's images.",
        ["clipforge gallery runs/quick", "clipforge gallery runs/study"],
    )
    p.add_argument("folder", help="a run, sweep or analysis report folder")
    p.set_defaults(func=cmd_gallery)

    p = _verb_parser(
        sub,
        "models",
        "list the models one can invert, and whether their weights are here offline",
        "List the models clipforge can invert: the bundled offline models, and open_clip's pretrained\n"
        "models with their tags, each with whether its weights can be loaded without a network (bundled:\n"
        "always; open_clip: when the file is in the Hugging Face cache). Nothing is downloaded.",
        ["clipforge models", "clipforge models --offline", "clipforge models --json"],
    )
    p.add_argument("--offline", action="store_true", help="only the models whose weights are here")
    p.add_argument("--bundled", action="store_true", help="only the bundled models (does not import open_clip)")
    p.add_argument("--cache-dir", metavar="DIR", help="the hub cache to look in (default: huggingface_hub's)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)

    p = _verb_parser(
        sub,
        "layers",
        "list a model's layers by name, with their output shapes",
        "List the layers of a model's image tower by name, as in its module tree, with each one's class\n"
        "and output shape for one image: the names a feature visualisation refers to.",
        ["clipforge layers toyworld-rn", "clipforge layers ViT-B-16 --pretrained openai --json"],
    )
    p.add_argument("model", help="a bundled model, an open_clip model name, hf-hub:... or local-dir:...")
    p.add_argument("--pretrained", metavar="TAG", help="open_clip's pretrained tag (or a checkpoint file)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_layers)

    p = _verb_parser(
        sub,
        "schema",
        "print the JSON Schema of run, sweep or analysis specs, with every installed plugin's options",
        "Print the JSON Schema of run specs (--kind run, the default), sweep specs (--kind sweep) or\n"
        "analysis specs (--kind analysis: an object of each installed analysis's schema, by verb;\n"
        "--kind analysis:VERB: that one's), with the options of every installed component (for editors).",
        [
            "clipforge schema > runspec.schema.json",
            "clipforge schema --kind sweep > sweep.schema.json",
            "clipforge schema --kind analysis:probe > probe.schema.json",
        ],
    )
    p.add_argument(
        "--kind",
        type=_schema_kind,
        default="run",
        metavar="KIND",
        help="run (default), sweep, analysis (every analysis's, by verb) or analysis:VERB",
    )
    p.set_defaults(func=cmd_schema)

    p = _verb_parser(
        sub,
        "plugins",
        "list installed components and analyses, and the plugins providing them",
        "List the installed components (backbones, parameterizations, augmentations, regularizers,\n"
        "callbacks) and analyses, with the plugin and distribution that provide each.",
        ["clipforge plugins", "clipforge plugins --json", "clipforge --block safety_screen plugins"],
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = _verb_parser(
        sub,
        "spectrum",
        "average a folder's images' Fourier magnitudes: a spectrum file for the maco parameterisation",
        "Write FILE (.npy): the mean Fourier magnitude of every PNG and JPEG image in DIR, each resized to\n"
        "N x N and its colours decorrelated, as the maco parameterisation's 'spectrum' option reads it\n"
        "(MACO fixes each image's magnitude to it). Use images like those the model was trained on.",
        ["clipforge spectrum photos/ --out photos_224.npy --size 224", "clipforge spectrum renders/ --out toy.npy"],
    )
    p.add_argument("folder", metavar="DIR", help="a folder of images (.png, .jpg, .jpeg; not its subfolders)")
    p.add_argument("--out", required=True, metavar="FILE", help="the spectrum file to write (.npy)")
    p.add_argument("--size", type=int, default=64, metavar="N", help="the images' size, N x N (default: 64)")
    p.set_defaults(func=cmd_spectrum)


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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
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
