"""The verbs of the ``clipforge`` command: each parses nothing (the arguments come from
:mod:`clipforge.cli`), asks the library and prints.

Nothing heavy is imported before a verb runs: the verbs import what they need.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from clipforge.errors import SpecError, printable, problems_of
from clipforge.files import slug
from clipforge.spec import COMPONENT_FIELDS, RunSpec, load_spec
from clipforge.specfile import apply_overrides_within, read_object, validate

if TYPE_CHECKING:
    from clipforge.registry import Registry, ResolvedComponent, ResolvedSpec

err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)
out = Console(highlight=False, soft_wrap=True, markup=False)


def _resolve(args: argparse.Namespace, registry: Registry) -> ResolvedSpec:
    """Load the spec file (with ``--set``) and check it against the registry, once."""
    spec = load_spec(args.spec or {}, args.set or [])
    try:
        return registry.resolve(spec)
    except SpecError as exc:
        raise exc.within(args.spec) from None


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


def _default_name(args: argparse.Namespace) -> str:
    """The default output folder's name: the spec file's, else the first prompt's words."""
    if args.spec:
        return Path(args.spec).stem
    return slug((args.prompt or ["prompt"])[0], 40).strip("-") or "prompt"


def cmd_invert(args: argparse.Namespace, registry: Registry) -> int:
    from clipforge.engine import Engine
    from clipforge.outputs import check_resumable, refuse_python_objects
    from clipforge.resolved import ComponentStartError

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
        refuse_python_objects(Path(args.resume))
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
                out.print(f"  {row.slug}: {final_figure(final, row.index)}")
    return 0


def final_figure(record: dict[str, Any], index: int) -> str:
    """An image's last similarity, or its goal (minus the data term) where no objective reports one."""
    similarity = record["similarity"][index]
    return f"similarity {similarity:.3f}" if similarity is not None else f"goal {-record['data'][index]:.3f}"


def cmd_validate(args: argparse.Namespace, registry: Registry) -> int:
    resolved = _resolve(args, registry)
    spec = resolved.spec
    try:
        unchecked = check_start(resolved)
    except SpecError as exc:
        raise exc.within(args.spec) from None
    images = len(spec.prompts) * len(spec.seeds)
    names = ", ".join(b.options.get("model", b.name) if b.options else b.name for b in spec.backbones)
    out.print(printable(f"ok: {args.spec} is valid ({images} image(s), {spec.steps} steps, backbones: {names})", 2000))
    for note in unchecked:
        out.print(printable(f"  not checked: {note}", 2000))
    return 0


def check_start(resolved: ResolvedSpec) -> list[str]:
    """What a run's start would refuse, found without running: each backbone built on the CPU, and
    every objective built against it as the engine builds it (:meth:`Engine.check`), so a wrong
    layer, a channel or position out of range, a direction of the wrong length or a backbone index
    beyond the list is refused now, with its JSON path. A backbone whose weights are not on this
    machine is not built (nothing is downloaded to validate a spec): the objectives on it are left
    to the run's start, and the returned notes say which. Raises :class:`SpecError`."""
    import torch

    from clipforge.engine import Engine
    from clipforge.resolved import ComponentStartError

    backbones: list[Any] = []
    problems: list[tuple[str, str]] = []
    unchecked: list[str] = []
    for i, component in enumerate(resolved.components["backbones"]):
        where = resolved.path(f"backbones[{i}]")
        missing = weights_not_here(component)
        if missing is not None:
            backbones.append(None)
            unchecked.append(
                f"the objectives on {where} ({missing}), whose weights are not on this machine (validate "
                "downloads nothing): its layers, channels and embedding size are checked when a run starts"
            )
            continue
        try:
            backbones.append(component.build(torch.device("cpu"), where=where))
        except ComponentStartError as exc:
            entry = component.entry
            problems.append((where, f"{exc.__cause__ or exc} [{entry.kind} {entry.name!r} from {entry.provider}]"))
            backbones.append(None)
    problems += Engine(resolved).check(backbones)
    if problems:
        raise SpecError(problems)
    return unchecked


def weights_not_here(component: ResolvedComponent) -> str | None:
    """The model and tag of an ``open_clip`` backbone that would fetch its weights to be built (a
    pretrained tag or an ``hf-hub:`` model whose files are not in the cache, as ``clipforge models``
    tells), or None when it can be built here without a network (bundled models, files, configs and
    ``local-dir:`` folders too). Other backbones are built as they are."""
    from clipforge.catalog import weights_cached
    from clipforge.toyworld import bundled_models

    options: Any = component.options
    if component.entry.name != "open_clip" or getattr(options, "config", None) is not None:
        return None
    model, weights = options.model, options.weights()
    if model.startswith("hf-hub:"):
        config = {"hf_hub": model.removeprefix("hf-hub:") + "/"}
    elif ":" in model or model in bundled_models() or weights is None or Path(weights).is_file():
        return None
    else:
        import open_clip

        config = open_clip.get_pretrained_cfg(model.replace("/", "-"), weights) or {}
    if weights_cached(config, options.cache_dir):
        return None
    return model if model.startswith("hf-hub:") else f"{model}, pretrained {weights!r}"


#: the keys of an analysis spec's ``run`` that the analysis sets itself
ANALYSIS_SETS = ("prompts", "seeds")


def _set_keys(overrides: list[str]) -> list[str]:
    return [item.split("=", 1)[0] for item in overrides]


def _top(key: str) -> str:
    return re.split(r"[.\[]", key, maxsplit=1)[0]


def _related(path: str, key: str) -> bool:
    """Whether the JSON path ``path`` is at, inside or around the ``--set`` key ``key``."""
    inner, outer = (path, key) if len(path) >= len(key) else (key, path)
    return bool(outer) and (inner == outer or inner.startswith((outer + ".", outer + "[")))


def _check_set_values(run: dict[str, Any], overrides: list[str]) -> None:
    """Refuse, naming ``--set`` and its key, what the ``--set`` overrides put in an analysis's ``run``
    block that no run spec takes: a key the analysis sets, an unknown key, a value of the wrong type
    or out of range (a component's options are checked with the rest of the spec)."""
    problems: list[tuple[str, str]] = []
    keys = _set_keys(overrides)
    for key in keys:
        if _top(key) in ANALYSIS_SETS:
            problems.append((f"--set {key}", f"'run' must not set {_top(key)!r}: the analysis sets it"))
    if problems:
        raise SpecError(problems)
    try:
        RunSpec.model_validate(run, context={"base_dir": None})
    except ValidationError as exc:
        for path, msg in problems_of(exc):
            key = next((k for k in keys if _related(path, k)), None)
            if key is not None:
                problems.append((f"--set {key}", f"run.{path}: {msg}"))
    if problems:
        raise SpecError(problems)


def _blame_set(exc: SpecError, overrides: list[str]) -> SpecError:
    """``exc`` with each problem in what a ``--set`` key of the ``run`` block set saying so."""
    keys = _set_keys(overrides)
    problems = []
    for path, msg in exc.problems:
        key = next((k for k in keys if path.startswith(("run.", "run[")) and _related(path, f"run.{k}")), None)
        problems.append((path, f"{msg} (set by --set {key})" if key is not None else msg))
    return SpecError(problems, exc.source)


def load_analysis_spec(model: type[BaseModel], source: str, overrides: list[str] | None = None) -> Any:
    """An analysis spec from its JSON file, with ``--set KEY=VALUE`` overrides of its ``run`` block
    (parsed as invert's ``--set``; a key the block lacks starts from the run spec's default). A bad
    key or value is refused naming ``--set`` and the key."""
    data, name = read_object(source)
    if overrides:
        try:
            data = apply_overrides_within(data, "run", overrides, RunSpec)
            _check_set_values(data["run"], overrides)
        except SpecError as exc:
            raise exc.within(name) from None
    try:
        return validate(model, data, name)
    except SpecError as exc:
        raise _blame_set(exc, overrides or []) from None


def cmd_analysis(args: argparse.Namespace, registry: Registry) -> int:
    from clipforge import analysis as analyses
    from clipforge.resolved import ComponentStartError

    check_out(args)
    entry = registry.get("analysis", args.command)
    spec = load_analysis_spec(entry.cls.Options, args.spec, args.set)
    try:
        plan = analyses.plan_analysis(entry.cls(spec), registry)
    except SpecError as exc:
        raise _blame_set(exc, args.set or []).within(args.spec) from None
    if args.check:
        out.print(f"ok: {args.spec} is a valid {args.command} spec")
        return 0
    out_dir = args.out or spec.output_dir or f"runs/{Path(args.spec).stem}"
    try:
        report = analyses.run_analysis(plan, out_dir, registry)
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
        problems: list[tuple[str, str]] = []  # grid points whose runs would be refused at their start
        for line in sweeps.plan_lines(sweep, problems):
            out.print(printable(line, 2000))
        if problems:
            raise SpecError(problems, sweep.source)
        return 0
    shard = sweeps.parse_shard(args.shard) if args.shard else sweeps.shard_from_environment()
    folder = args.out or f"runs/{Path(args.target).stem}"
    with sweeps.process_group(shard) as distributed:
        counts = sweeps.run_sweep(sweep, folder, shard=shard)
    if distributed:  # every rank has finished: the counts are the whole sweep's
        counts = sweeps.status_counts(sweep, sweeps.read_index(Path(folder)))
    out.print(
        f"{folder}: {counts['done']} done, {counts['failed']} failed, {counts['left']} left of "
        f"{counts['items']} items" + (f" (shard {shard[0]}/{shard[1]})" if shard[1] > 1 else "")
    )
    return 1 if counts["failed"] else 0


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
    # a prompt's own goal is a list of objectives too, with the same options as the spec's
    for variant in defs.get("Prompt", {}).get("properties", {}).get("objectives", {}).get("anyOf", []):
        if variant.get("type") == "array":
            variant["items"] = {"$ref": "#/$defs/ObjectiveRef"}
    return schema


def _run_settings(run: dict[str, Any], description: str, leave_out: tuple[str, ...]) -> dict[str, Any]:
    """The run spec's schema ``run`` (from :func:`full_schema`) as a block of settings: its
    properties but ``leave_out``, none required."""
    return {
        "type": "object",
        "description": description,
        "properties": {k: v for k, v in run["properties"].items() if k not in leave_out},
        "additionalProperties": False,
    }


def sweep_schema(registry: Registry) -> dict[str, Any]:
    """The sweep spec's JSON Schema; its ``base`` (inline) is a run spec without prompts and seeds,
    with the options of every installed component."""
    from clipforge.sweep.spec import SweepSpec

    run = full_schema(registry)
    schema = SweepSpec.model_json_schema()
    defs = schema.setdefault("$defs", {})
    defs.update(run["$defs"])
    defs["RunBase"] = _run_settings(run, "A run spec without its prompts and seeds.", ("prompts", "seeds"))
    base = schema["properties"]["base"]
    base["anyOf"] = [{"$ref": "#/$defs/RunBase"} if v.get("type") == "object" else v for v in base.get("anyOf", [base])]
    return schema


def analysis_schemas(registry: Registry) -> dict[str, dict[str, Any]]:
    """Each installed analysis's spec schema, by name: its ``Options``, with ``run`` the run spec's
    settings (without prompts and seeds) and ``judge`` a backbone, with every component's options."""
    run = full_schema(registry)
    schemas = {}
    for entry in sorted(registry.entries["analysis"].values(), key=lambda e: e.name):
        schema = entry.cls.Options.model_json_schema()
        defs = schema.setdefault("$defs", {})
        for name, definition in run["$defs"].items():
            defs.setdefault(name, copy.deepcopy(definition))
        defs["RunSettings"] = _run_settings(
            run,
            "Inversion settings, as in a run spec (without prompts and seeds, which the analysis sets).",
            ANALYSIS_SETS,
        )
        props = schema["properties"]
        props["run"] = {"$ref": "#/$defs/RunSettings", "description": props["run"].get("description", "")}
        if "judge" in props:
            props["judge"] = json.loads(
                json.dumps(props["judge"]).replace('"#/$defs/ComponentRef"', '"#/$defs/BackboneRef"')
            )
        schema["description"] = f"The {entry.name!r} analysis ({entry.provider}): {entry.cls.description}".strip()
        schemas[entry.name] = schema
    return schemas


def cmd_schema(args: argparse.Namespace, registry: Registry) -> int:
    kind = getattr(args, "kind", "run")
    if kind == "run":
        schema: Any = full_schema(registry)
    elif kind == "sweep":
        schema = sweep_schema(registry)
    else:
        schema = analysis_schemas(registry)
        name = kind.partition(":")[2]
        if name:
            if name not in schema:
                installed = ", ".join(schema) or "none"
                raise SpecError([("--kind", f"no analysis is named {name!r}; installed: {installed}")])
            schema = schema[name]
    print(json.dumps(schema, indent=2))
    return 0


def cmd_layers(args: argparse.Namespace, registry: Registry) -> int:
    import torch

    from clipforge.judge import load_backbone
    from clipforge.layers import list_layers

    options = {"model": args.model, **({"pretrained": args.pretrained} if args.pretrained else {})}
    backbone = load_backbone({"name": "open_clip", "options": options}, torch.device("cpu"))
    layers = list_layers(backbone)
    if args.json:
        print(json.dumps([{"name": x.name, "kind": x.kind, "shape": list(x.shape)} for x in layers], indent=2))
        return 0
    rows = [("LAYER", "CLASS", "OUTPUT SHAPE")] + [(x.name, x.kind, " x ".join(map(str, x.shape))) for x in layers]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for row in rows:
        out.print(printable(f"{row[0].ljust(widths[0])}  {row[1].ljust(widths[1])}  {row[2]}", 400))
    out.print(f"{len(layers)} layer(s) of {backbone.label}'s image tower")
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


def cmd_spectrum(args: argparse.Namespace, registry: Registry | None) -> int:
    """A spectrum file from a folder of images (:mod:`clipforge.spectrum`); a bad folder, image or
    --out is one line naming it, and nothing is written."""
    from clipforge.spectrum import SpectrumError, check_out_file, folder_spectrum, write_spectrum

    if not args.out.strip():
        raise SpecError([("--out", "is empty: give the spectrum file to write (.npy)")])
    try:
        check_out_file(args.out)  # before the work
        spectrum = folder_spectrum(args.folder, args.size)
        digest = write_spectrum(args.out, spectrum)
    except (SpectrumError, ValueError) as exc:
        raise SpecError([("", str(exc))]) from None
    out.print(
        printable(f"wrote {args.out}: spectrum of {spectrum.shape[1]} x {spectrum.shape[1]} images, sha256 {digest}")
    )
    return 0


def cmd_models(args: argparse.Namespace, registry: Registry | None) -> int:
    from clipforge.catalog import list_models
    from clipforge.toyworld.models import ZOO_INSTALL

    entries = list_models(open_clip_models=not args.bundled, cache_dir=args.cache_dir)
    if args.offline:
        entries = [e for e in entries if e.offline]
    if args.json:
        print(json.dumps([e.__dict__ for e in entries], indent=2))
        return 0

    def offline(e: Any) -> str:
        if e.source == "bundled":
            return "yes (bundled)"
        if e.source == "not installed":
            return f"no: in {e.package} (not installed)"
        return "yes (cached)" if e.offline else "no"

    def source(e: Any) -> str:  # a bundled model's package, where it is not clipforge
        return e.package if e.source != "open_clip" and e.package not in (None, "clipforge") else e.source

    # plain columns, whatever the width: a listing to read, grep and paste into --model / --pretrained
    rows = [("MODEL", "PRETRAINED", "SOURCE", "WEIGHTS OFFLINE")]
    for e in entries:
        rows.append((e.model, e.tag or "-", source(e), offline(e)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        out.print(printable("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3], 400))
    cached = sum(e.offline for e in entries if e.source == "open_clip")
    out.print(
        f"{len(entries)} model(s); {cached} open_clip weight(s) in the cache. Weights not here are downloaded "
        "on first use (unless HF_HUB_OFFLINE is set)."
    )
    missing = sorted({e.package for e in entries if e.source == "not installed"})
    for package in missing:
        count = sum(e.package == package for e in entries if e.source == "not installed")
        out.print(f"{count} model(s) are in the {package} package, which is not installed: {ZOO_INSTALL}.")
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
