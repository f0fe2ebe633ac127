"""The verbs of the ``clipforge`` command: each parses nothing (the arguments come from
:mod:`clipforge.cli`), asks the library and prints. Here are the verbs that check or run a spec
(invert, validate, sweep, the analyses); those that show what there is (gallery, models, layers,
schema, plugins, spectrum) are in :mod:`clipforge.listing`, and importable from here too.

Nothing heavy is imported before a verb runs: the verbs import what they need.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from clipforge.console import err, out
from clipforge.errors import SpecError, printable, problems_of
from clipforge.files import slug
from clipforge.listing import (  # noqa: F401  (re-exported, those unused here: these verbs lived here)
    ANALYSIS_SETS,
    _run_settings,
    analysis_schemas,
    cmd_gallery,
    cmd_layers,
    cmd_models,
    cmd_plugins,
    cmd_schema,
    cmd_spectrum,
    full_schema,
    sweep_schema,
)
from clipforge.spec import COMPONENT_FIELDS, RunSpec, load_spec  # noqa: F401  (COMPONENT_FIELDS: re-exported)
from clipforge.specfile import apply_overrides_within, read_object, validate

if TYPE_CHECKING:
    from clipforge.registry import Registry, ResolvedComponent, ResolvedSpec


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
