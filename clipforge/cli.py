"""The ``clipforge`` command: invert, validate, schema, plugins, and one verb per installed analysis.

The registry is built once per command, from the plugin flags (``--block``, ``--plugins``, ...),
before the full command line is parsed: analyses are plugins, so their verbs come from it. A spec is
checked against it exactly once (``Registry.resolve``), and the engine runs what that returned.

Errors in what the user gave (a spec, a file, a plugin name) are printed as one line each, naming
the place, with exit status 2 and no traceback (``--traceback`` shows it for debugging).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from clipforge.outputs import NothingToResumeError, check_resumable
from clipforge.registry import ComponentStartError, PluginError, Registry, ResolvedSpec, build_registry
from clipforge.spec import COMPONENT_FIELDS, RunSpec, SpecError, load_analysis_spec, load_spec, printable

err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)
out = Console(highlight=False, soft_wrap=True, markup=False)


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
    spec = load_spec(args.spec, args.set or [])
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


def cmd_invert(args: argparse.Namespace, registry: Registry) -> int:
    from clipforge.engine import Engine

    check_out(args)
    if args.resume:
        if args.spec or args.set or args.out is not None or checkpoint_flags(args):
            raise SpecError(
                [
                    (
                        "--resume",
                        "continues the run as its folder's spec.json says: give no spec, "
                        "--set, --out, --checkpoint-every or --checkpoint-seconds with it",
                    )
                ]
            )
        check_resumable(Path(args.resume))
        args.spec = str(Path(args.resume) / "spec.json")
        out_dir = args.resume
    elif not args.spec:
        raise SpecError([("", "give a spec file to run, or --resume DIR")])
    args.set = [*(args.set or []), *checkpoint_flags(args)]  # checked by the spec, with the flag's name
    resolved = _resolve(args, registry)
    spec = resolved.spec
    if not args.resume:
        out_dir = args.out or spec.output_dir or f"runs/{Path(args.spec).stem}-{spec.settings_hash()}"
    try:
        result = Engine(resolved, registry=registry, out_dir=out_dir, resume=bool(args.resume)).run()
    except ComponentStartError as exc:
        raise ComponentStartError(f"{args.spec}: {exc}") from exc
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


#: the verbs clipforge itself provides; an analysis cannot take one of these names
COMMANDS = ("invert", "validate", "sweep", "gallery", "schema", "plugins")


def _add_plugin_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--block", action="append", metavar="PLUGIN", help="do not load this plugin (repeatable)")
    parser.add_argument("--plugins", metavar="A,B", help="load only these entry-point plugins")
    parser.add_argument("--no-autoload", action="store_true", help="load no entry-point plugins")
    parser.add_argument("--strict-plugins", action="store_true", help="a plugin that fails to load is fatal")
    parser.add_argument("--traceback", action="store_true", help="show tracebacks of errors")


def build_parser(registry: Registry) -> argparse.ArgumentParser:
    """The full command line: clipforge's own verbs and one per analysis in ``registry``."""
    parser = argparse.ArgumentParser(prog="clipforge", description="Invert CLIP models.")
    _add_plugin_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("invert", help="run the inversion described by a spec file")
    p.add_argument("spec", nargs="?", help="a JSON run spec")
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

    p = sub.add_parser("validate", help="check a spec without running it")
    p.add_argument("spec")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_validate)

    for entry in sorted(registry.entries["analysis"].values(), key=lambda e: e.name):
        if entry.name in COMMANDS:
            err.print(
                f"warning: analysis {entry.name!r} from {entry.provider} is not available: "
                f"{entry.name!r} is a clipforge command"
            )
            continue
        help_text = (entry.cls.description or f"the {entry.name} analysis").replace("%", "%%")
        p = sub.add_parser(entry.name, help=help_text)
        p.add_argument("spec", help=f"a JSON {entry.name} spec")
        p.add_argument("--out", help="output directory (must not exist or be empty)")
        p.add_argument("--check", action="store_true", help="validate the spec without running it")
        p.set_defaults(func=cmd_analysis)

    p = sub.add_parser("sweep", help="run a study (grid points x prompts x seeds); run again to continue it")
    p.add_argument("target", help="a JSON sweep spec; with --status, a sweep folder")
    p.add_argument("--out", help="the sweep folder (default: runs/<spec name>); the same --out continues a sweep")
    p.add_argument("--status", action="store_true", help="print what is done, failed and left in a sweep folder")
    p.add_argument("--plan", action="store_true", help="print the grid points and blocks without running")
    p.add_argument("--shard", metavar="I/N", help="run only shard I of N (0-based): a Slurm array task, a node")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("gallery", help="write DIR/index.html, a page to browse a run, a sweep or a report")
    p.add_argument("folder", help="a run, sweep or analysis report folder")
    p.set_defaults(func=cmd_gallery)

    p = sub.add_parser("schema", help="print the JSON Schema of run specs, with every installed plugin's options")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("plugins", help="list installed components and analyses, and the plugins providing them")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = argparse.ArgumentParser(add_help=False)
    _add_plugin_flags(flags)
    plugin_args, _ = flags.parse_known_args(argv)
    try:
        registry = _registry(plugin_args)
    except PluginError as exc:
        err.print(f"error: {printable(exc, 2000)}")
        return 2
    args = build_parser(registry).parse_args(argv)
    try:
        return args.func(args, registry)
    except SpecError as exc:
        for line in exc.format().splitlines():
            err.print(f"error: {line}")
        return 2
    except (PluginError, FileExistsError, NothingToResumeError) as exc:
        err.print(f"error: {printable(exc, 2000)}")
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception as exc:
        if args.traceback:
            raise
        err.print(f"error: {type(exc).__name__}: {printable(exc, 2000)}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
