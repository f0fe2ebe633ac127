"""The parsers of the ``clipforge`` command line: the global flags (accepted anywhere on the line)
and each of clipforge's own verbs, with its arguments, help, description and examples.

They are apart from :mod:`clipforge.cli`, which decides what to build (the registry, the analyses'
verbs) and runs a verb, because they are most of its lines and are only declarations: what the line
may say, not what happens. An analysis's verb is made here too (:func:`_analysis_parser`), from the
registry's entry that :mod:`clipforge.cli` found. Nothing heavy is imported: ``--help`` stays light.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from clipforge.commands import cmd_analysis, cmd_invert, cmd_sweep, cmd_validate
from clipforge.listing import cmd_gallery, cmd_layers, cmd_models, cmd_plugins, cmd_schema, cmd_spectrum
from clipforge.threads import ENV as THREADS_ENV


def _seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` (or a space-separated list, which argparse gathers)."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers such as 0,1,2, not {text!r}") from None


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
    for add in (_gallery_parser, _models_parser, _layers_parser, _schema_parser, _plugins_parser, _spectrum_parser):
        add(sub)


def _gallery_parser(sub: Any) -> None:
    p = _verb_parser(
        sub,
        "gallery",
        "write DIR/index.html, a page to browse a run, a sweep or a report",
        "Write DIR/index.html: one self-contained page to browse a run's, a sweep's or a report's images.",
        ["clipforge gallery runs/quick", "clipforge gallery runs/study"],
    )
    p.add_argument("folder", help="a run, sweep or analysis report folder")
    p.set_defaults(func=cmd_gallery)


def _models_parser(sub: Any) -> None:
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


def _layers_parser(sub: Any) -> None:
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


def _schema_parser(sub: Any) -> None:
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


def _plugins_parser(sub: Any) -> None:
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


def _spectrum_parser(sub: Any) -> None:
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
