"""The ``clipforge`` command: invert, validate, sweep, gallery, models, schema, plugins, and one verb
per installed analysis.

Global flags (``--traceback``, ``--threads N``, the plugin flags) go anywhere on the line. Nothing
heavy is imported before it is needed: ``--help``, ``--version`` and a verb's help import neither
torch nor the plugins; the registry is built only for the verbs that use it (and for a verb that is
not clipforge's own, which may be an analysis).

The registry is built once per command, from the plugin flags (``--block``, ``--plugins``, ...),
before the full command line is parsed: analyses are plugins, so their verbs come from it. A spec is
checked against it exactly once (``Registry.resolve``), and the engine runs what that returned.

Errors in what the user gave (a spec, a file, a plugin name) are printed as one line each, naming
the place, with exit status 2 and no traceback (``--traceback`` shows it for debugging).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from clipforge.spec import COMPONENT_FIELDS, RunSpec, SpecError, load_analysis_spec, load_spec, printable
from clipforge.threads import ENV as THREADS_ENV
from clipforge.threads import apply_threads, available_cpus, choose_threads

if TYPE_CHECKING:
    from clipforge.registry import Registry, ResolvedSpec

err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)
out = Console(highlight=False, soft_wrap=True, markup=False)


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


def _resolve(args: argparse.Namespace, registry: Registry) -> ResolvedSpec:
    """Load the spec file (with ``--set``) and check it against the registry, once."""
    spec = load_spec(args.spec or {}, args.set or [])
    try:
        return registry.resolve(spec)
    except SpecError as exc:
        raise SpecError(exc.problems, args.spec) from None


def check_out(args: argparse.Namespace) -> None:
    """Refuse an empty ``--out`` (``--out ""``, a variable that was not set), which would otherwise
    mean the default folder."""
    if args.out is not None and not args.out.strip():
        raise SpecError([("--out", "is empty: give a folder, or leave --out out to use the default one")])


def checkpoint_flags(args: argparse.Namespace) -> list[str]:
    """``--checkpoint-every`` and ``--checkpoint-seconds`` as ``--set`` overrides (0 too, to be refused)."""
    flags = {"checkpoint_every": args.checkpoint_every, "checkpoint_seconds": args.checkpoint_seconds}
    return [f"{key}={value}" for key, value in flags.items() if value is not None]


def spec_flags(args: argparse.Namespace) -> list[str]:
    """``--prompt``, ``--model``, ``--pretrained``, ``--steps``, ``--seeds``, ``--copies`` and
    ``--device`` as ``--set`` overrides of the spec (checked by it, like any other value)."""
    flags: list[str] = []
    if args.prompt:
        flags.append(f"prompts={json.dumps(args.prompt)}")
    if args.model:
        options = [{"model": model} for model in args.model]
        if args.pretrained is not None:
            options = [{**o, "pretrained": args.pretrained} for o in options]
        flags.append(f"backbones={json.dumps([{'name': 'open_clip', 'options': o} for o in options])}")
    elif args.pretrained is not None:
        raise SpecError([("--pretrained", "goes with --model, whose weights it names")])
    if args.seeds:
        flags.append(f"seeds={json.dumps([seed for group in args.seeds for seed in group])}")
    for key in ("steps", "copies", "device"):
        if getattr(args, key) is not None:
            flags.append(f"{key}={json.dumps(getattr(args, key))}")
    return flags


def _seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` (or a space-separated list, which argparse gathers)."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers such as 0,1,2, not {text!r}") from None


def _default_name(args: argparse.Namespace) -> str:
    """The default output folder's name: the spec file's, else the first prompt's words."""
    if args.spec:
        return Path(args.spec).stem
    words = re.sub(r"[^a-z0-9]+", "-", (args.prompt or ["prompt"])[0].lower()).strip("-")[:40].strip("-")
    return words or "prompt"


def cmd_invert(args: argparse.Namespace, registry: Registry) -> int:
    from clipforge.engine import Engine
    from clipforge.outputs import check_resumable
    from clipforge.registry import ComponentStartError

    check_out(args)
    given = spec_flags(args)
    if args.resume:
        if args.spec or args.set or args.out is not None or checkpoint_flags(args) or given:
            raise SpecError(
                [
                    (
                        "--resume",
                        "continues the run as its folder's spec.json says: give no spec, --prompt, --model, "
                        "--steps, --seeds, --set, --out, --checkpoint-every or --checkpoint-seconds with it",
                    )
                ]
            )
        check_resumable(Path(args.resume))
        args.spec = str(Path(args.resume) / "spec.json")
        out_dir = args.resume
    elif not args.spec and not args.prompt:
        raise SpecError([("", "give a spec file to run, --prompt TEXT, or --resume DIR")])
    # checked by the spec, with the flag's name; the flags' values win over the file's, --set over both
    args.set = [*given, *(args.set or []), *checkpoint_flags(args)]
    resolved = _resolve(args, registry)
    spec = resolved.spec
    if not args.resume:
        out_dir = args.out or spec.output_dir or f"runs/{_default_name(args)}-{spec.settings_hash()}"
    try:
        result = Engine(resolved, registry=registry, out_dir=out_dir, resume=bool(args.resume)).run()
    except ComponentStartError as exc:
        raise ComponentStartError(f"{args.spec or 'the run'}: {exc}") from exc
    if result.interrupted:
        err.print(f"interrupted at step {result.steps_done}/{spec.steps}; current images saved in {out_dir}")
        return 130
    final = result.metrics[-1] if result.metrics else None
    withheld = result.withheld or [False] * len(result.rows)
    written = len(result.rows) - sum(withheld)
    note = f" ({sum(withheld)} withheld by a screen)" if any(withheld) else ""
    out.print(f"wrote {written} image(s){note} to {out_dir} in {result.seconds:.1f} s")
    if final:
        for row in result.rows:
            if withheld[row.index]:
                out.print(f"  {row.slug}: withheld")
            else:
                out.print(f"  {row.slug}: similarity {final['similarity'][row.index]:.3f}")
    return 0


def cmd_validate(args: argparse.Namespace, registry: Registry) -> int:
    spec = _resolve(args, registry).spec
    images = len(spec.prompts) * len(spec.seeds)
    names = ", ".join(b.options.get("model", b.name) if b.options else b.name for b in spec.backbones)
    out.print(printable(f"ok: {args.spec} is valid ({images} image(s), {spec.steps} steps, backbones: {names})", 2000))
    return 0


def cmd_analysis(args: argparse.Namespace, registry: Registry) -> int:
    from clipforge.analysis import plan_analysis, run_analysis
    from clipforge.registry import ComponentStartError

    check_out(args)
    entry = registry.get("analysis", args.command)
    spec = load_analysis_spec(entry.cls.Options, args.spec)
    try:
        plan = plan_analysis(entry.cls(spec), registry)
    except SpecError as exc:
        raise SpecError(exc.problems, args.spec) from None
    if args.check:
        out.print(f"ok: {args.spec} is a valid {args.command} spec")
        return 0
    out_dir = args.out or spec.output_dir or f"runs/{Path(args.spec).stem}"
    try:
        report = run_analysis(plan, out_dir, registry)
    except ComponentStartError as exc:
        raise ComponentStartError(f"{args.spec}: {exc}") from exc
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM during the inversions: a report of part of them is no report
        err.print(f"interrupted: no report written; {out_dir} is left as it was found")
        return 130
    table = plan.analysis.table(report)
    if table is not None:
        out.print(table)
    out.print(f"report: {Path(out_dir) / 'report.md'}")
    return 0


def cmd_gallery(args: argparse.Namespace, registry: Registry) -> int:
    from clipforge.gallery import write_gallery

    out.print(f"gallery: {write_gallery(args.folder)}")
    return 0


def cmd_sweep(args: argparse.Namespace, registry: Registry) -> int:
    from clipforge import sweep as sweeps

    check_out(args)
    if args.status:
        status = sweeps.sweep_status(Path(args.target))
        out.print(
            f"{args.target}: {status['done']} done, {status['failed']} failed, {status['left']} left "
            f"of {status['items']} items"
        )
        for item, error in status["errors"][:20]:
            out.print(printable(f"  failed {item}: {error}", 400))
        return 0
    sweep = sweeps.load_sweep(args.target, registry)
    if args.plan:
        measured: dict[str, tuple[int, int]] = {}  # each distinct backbone built once, not once per point
        by_point: dict[int, list[Any]] = {}
        for block in sweep.blocks:
            by_point.setdefault(block.point, []).append(block)
        for i, point in enumerate(sweep.points):
            blocks = by_point[i]
            settings = ", ".join(f"{k}={json.dumps(v)}" for k, v in point["settings"].items()) or "base"
            largest = max(len(b.items) for b in blocks)
            gib = {k: v / 2**30 for k, v in sweeps.estimate_memory(point["run"], largest, registry, measured).items()}
            out.print(
                printable(
                    f"point {i} ({settings}): {sum(len(b.items) for b in blocks)} items in {len(blocks)} blocks of "
                    f"up to {largest}, {point['run']['steps']} steps each, {point['run']['copies']} copies; "
                    f"memory per block about {gib['total']:.2f} GiB (weights {gib['weights']:.2f}, activations "
                    f"{gib['activations']:.2f}, images {gib['images']:.2f})",
                    2000,
                )
            )
        out.print(f"{len(sweep.items)} items, {len(sweep.blocks)} blocks")
        return 0
    shard = sweeps.parse_shard(args.shard) if args.shard else sweeps.shard_from_environment()
    folder = args.out or f"runs/{Path(args.target).stem}"
    distributed = _start_distributed(shard)
    try:
        counts = sweeps.run_sweep(sweep, folder, registry, shard=shard)
    finally:
        _stop_distributed(distributed)  # every rank has finished: the counts below are the whole sweep's
    if distributed:
        counts = sweeps.status_counts(sweep, sweeps.read_index(Path(folder)))
    out.print(
        f"{folder}: {counts['done']} done, {counts['failed']} failed, {counts['left']} left of "
        f"{counts['items']} items" + (f" (shard {shard[0]}/{shard[1]})" if shard[1] > 1 else "")
    )
    return 1 if counts["failed"] else 0


def _start_distributed(shard: tuple[int, int]) -> bool:
    """Under torchrun, join the process group (gloo on the CPU, nccl on GPUs): ranks wait for each
    other at the end, so that every rank's summary counts the whole sweep."""
    import os

    import torch
    import torch.distributed as dist

    if shard[1] == 1 or "MASTER_ADDR" not in os.environ or not dist.is_available():
        return False
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def _stop_distributed(started: bool) -> None:
    if started:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def full_schema(registry: Registry) -> dict[str, Any]:
    """The run spec's JSON Schema, with the options of every installed component."""
    schema = RunSpec.model_json_schema()
    defs = schema.setdefault("$defs", {})
    for field, kind in COMPONENT_FIELDS.items():
        variants: list[dict[str, Any]] = []
        for entry in sorted(registry.entries[kind].values(), key=lambda e: e.name):
            options = entry.cls.Options.model_json_schema()
            defs.update(options.pop("$defs", {}))
            variants.append(
                {
                    "type": "object",
                    "description": f"{kind} {entry.name!r} from {entry.provider}",
                    "properties": {"name": {"const": entry.name}, "options": options},
                    "required": ["name"],
                    "additionalProperties": False,
                }
            )
        names = registry.names(kind)
        variants.append({"type": "string", "enum": names, "description": f"a {kind} with default options"})
        ref_name = f"{kind.title()}Ref"
        defs[ref_name] = {"anyOf": variants}
        prop = schema["properties"][field]
        if prop.get("type") == "array":
            prop["items"] = {"$ref": f"#/$defs/{ref_name}"}
        else:
            prop.pop("$ref", None)
            prop.pop("allOf", None)
            prop["$ref"] = f"#/$defs/{ref_name}"
    return schema


def cmd_schema(args: argparse.Namespace, registry: Registry) -> int:
    print(json.dumps(full_schema(registry), indent=2))
    return 0


def cmd_plugins(args: argparse.Namespace, registry: Registry) -> int:
    if args.json:
        print(
            json.dumps(
                {
                    "plugins": [
                        {
                            "name": p.name,
                            "distribution": p.distribution,
                            "version": p.version,
                            "hooks": p.hooks,
                            "components": [
                                {"kind": e.kind, "name": e.name} for e in registry.all() if e.plugin == p.name
                            ],
                        }
                        for p in registry.plugins
                    ],
                    "failures": [
                        {"plugin": f.plugin, "distribution": f.distribution, "error": f.error}
                        for f in registry.failures
                    ],
                },
                indent=2,
            )
        )
        return 0
    table = Table(title="clipforge components")
    for column in ("kind", "name", "plugin", "distribution"):
        table.add_column(column)
    for e in registry.all():
        dist = f"{e.distribution} {e.version}" if e.distribution else "-"
        table.add_row(e.kind, e.name, e.plugin, dist)
    out.print(table)
    return 0


def cmd_models(args: argparse.Namespace, registry: Registry | None) -> int:
    from clipforge.catalog import list_models

    entries = list_models(open_clip_models=not args.bundled, cache_dir=args.cache_dir)
    if args.offline:
        entries = [e for e in entries if e.offline]
    if args.json:
        print(json.dumps([e.__dict__ for e in entries], indent=2))
        return 0
    # plain columns, whatever the width: a listing to read, grep and paste into --model / --pretrained
    rows = [("MODEL", "PRETRAINED", "SOURCE", "WEIGHTS OFFLINE")]
    for e in entries:
        offline = "yes (bundled)" if e.source == "bundled" else ("yes (cached)" if e.offline else "no")
        rows.append((e.model, e.tag or "-", e.source, offline))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        out.print(printable("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3], 400))
    cached = sum(e.offline for e in entries if e.source != "bundled")
    out.print(
        f"{len(entries)} model(s); {cached} open_clip weight(s) in the cache. Weights not here are downloaded "
        "on first use (unless HF_HUB_OFFLINE is set)."
    )
    return 0


#: the verbs clipforge itself provides; an analysis cannot take one of these names
COMMANDS = ("invert", "validate", "sweep", "gallery", "models", "schema", "plugins")

#: the verbs that need no plugins (the registry is not built for them)
NO_REGISTRY = (cmd_gallery, cmd_models)

GLOBAL_FLAGS = (
    "global flags, accepted anywhere on the line: --traceback, --threads N, --block PLUGIN, --plugins A,B, "
    "--no-autoload, --strict-plugins"
)


def _threads_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads (1 or more), not {text!r}")
    return value


def _add_plugin_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--block", action="append", metavar="PLUGIN", help="do not load this plugin (repeatable)")
    parser.add_argument("--plugins", metavar="A,B", help="load only these entry-point plugins")
    parser.add_argument("--no-autoload", action="store_true", help="load no entry-point plugins")
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


def build_parser(registry: Registry | None = None) -> argparse.ArgumentParser:
    """The full command line: clipforge's own verbs and one per analysis in ``registry`` (none
    without one: ``clipforge --help`` loads no plugins)."""
    from clipforge.version import __version__

    parser = argparse.ArgumentParser(
        prog="clipforge",
        description="Invert CLIP models: optimise images until a frozen CLIP embeds them like a prompt.",
        epilog="Analyses installed as plugins are verbs too ('clipforge plugins' lists them; "
        "'clipforge VERB --help' describes one). Global flags go anywhere on the line.",
    )
    parser.add_argument("--version", action="version", version=f"clipforge {__version__}")
    _add_plugin_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")

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

    for entry in _analyses(registry) if registry is not None else []:
        help_text = entry.cls.description or f"the {entry.name} analysis"
        p = _verb_parser(
            sub,
            entry.name,
            help_text.replace("%", "%%"),
            f"{help_text} (the analysis {entry.name!r} from {entry.provider}).\n"
            "It runs the inversions its spec asks for and writes report.md, report.json and its figures.",
            [
                f"clipforge {entry.name} {entry.name}.json --check",
                f"clipforge {entry.name} {entry.name}.json --out runs/{entry.name}",
            ],
        )
        p.add_argument("spec", help=f"a JSON {entry.name} spec")
        p.add_argument("--out", help="output directory (must not exist or be empty)")
        p.add_argument("--check", action="store_true", help="validate the spec without running it")
        p.set_defaults(func=cmd_analysis)

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
        "schema",
        "print the JSON Schema of run specs, with every installed plugin's options",
        "Print the JSON Schema of run specs, with the options of every installed component (for editors).",
        ["clipforge schema > runspec.schema.json"],
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
        args = build_parser(registry).parse_args(rest)
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
