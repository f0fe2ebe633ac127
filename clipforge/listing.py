"""The verbs of the ``clipforge`` command that show what there is, rather than run anything: a
folder's gallery, the models one can invert, a model's layers, the spec schemas, the installed
plugins, and a folder's image spectrum; with the JSON Schemas ``clipforge schema`` prints.

They are apart from :mod:`clipforge.commands` (the verbs that run: invert, validate, sweep and the
analyses) because none of them checks or runs a spec: each asks the library one question and prints
the answer. As there, each parses nothing (the arguments come from :mod:`clipforge.cli`) and imports
what it needs when it runs.
"""

from __future__ import annotations

import argparse
import copy
import json
from typing import TYPE_CHECKING, Any

from rich.table import Table

from clipforge.console import out
from clipforge.errors import SpecError, printable
from clipforge.spec import COMPONENT_FIELDS, RunSpec

if TYPE_CHECKING:
    from clipforge.registry import Registry

#: the keys of an analysis spec's ``run`` that the analysis sets itself
ANALYSIS_SETS = ("prompts", "seeds")


def cmd_gallery(args: argparse.Namespace, registry: Registry) -> int:
    from clipforge.gallery import write_gallery

    out.print(f"gallery: {write_gallery(args.folder)}")
    return 0


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
