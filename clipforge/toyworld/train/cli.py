"""Reproducible training of small open_clip CLIP models on the toy world.

Examples (run from the repository root with ``PYTHONPATH=.``)::

    python -m clipforge.toyworld.train --all                      # retrain every shipped model
    python -m clipforge.toyworld.train --recipe toyworld-vit      # one shipped model
    python -m clipforge.toyworld.train --arch vit --seed 3 --train-size 8000 --steps 300 --out /tmp/m
    python -m clipforge.toyworld.train --arch vit --steps 300 --lr 3e-4 --adv-eps 0.016 \
        --init-from clipforge/toyworld/models/toyworld-vit --out /tmp/robust   # adversarial fine-tune

Each output folder is loadable with ``open_clip.create_model("local-dir:<folder>")``
and holds ``open_clip_config.json``, ``open_clip_model.safetensors`` (fp16),
``tokenizer.json`` and ``train_info.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import torch

from clipforge.toyworld.models import load_model_dir, model_home
from clipforge.toyworld.train.architectures import ARCHS, model_config, save_model
from clipforge.toyworld.train.config import Recipe, TrainConfig, check_recipe
from clipforge.toyworld.train.evaluate import planted_report, zero_shot_report
from clipforge.toyworld.train.loop import train_recipe
from clipforge.toyworld.train.recipes import RECIPES
from clipforge.toyworld.world import World, WorldConfig

#: what an --arch run takes for the options that a recipe must give
ARCH_RUN_DEFAULTS: dict[str, Any] = {"seed": 0, "train_size": 32000, "steps": 600}


def run(recipe: Recipe, out: Path, name: str = "") -> dict[str, Any]:
    """Train a recipe, save it, reload it through open_clip (fp16 round trip) and record its zero-shot
    accuracy and planted associations."""
    model, tokenizer, info = train_recipe(recipe)
    info["name"] = name or out.name
    world = World(WorldConfig(**info["world_config"]))
    eval_seed = 10_000 + recipe.seed
    info["zero_shot_fp32"] = zero_shot_report(model, tokenizer, world, 2000, eval_seed)
    save_model(model, tokenizer, model_config(recipe.arch, tokenizer.vocab_size), info, out)
    reloaded, tok = load_model_dir(out)
    info["zero_shot"] = zero_shot_report(reloaded, tok, world, 2000, eval_seed)
    info["zero_shot_accuracy"] = info["zero_shot"]["single"]
    info["planted"] = planted_report(reloaded, tok, world, 1200, eval_seed)
    info["eval"] = (
        "2000 fresh single-object images (500 per planted kind) vs all World.captions(); eval seed 10000+seed"
    )
    (out / "train_info.json").write_text(json.dumps(info, indent=2))
    print(
        json.dumps({k: info[k] for k in ("name", "train_seconds", "zero_shot_fp32", "zero_shot", "planted")}, indent=1)
    )
    return info


def _add_option_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrainConfig`` option (``--adv-eps`` for ``adv_eps``) with its type, default and
    description; the world's overrides come one at a time from ``--world``."""
    group = parser.add_argument_group("an --arch run's options (TrainConfig's fields)")
    for name, field in TrainConfig.model_fields.items():
        if name == "world_overrides":
            continue
        flag, kind = "--" + name.replace("_", "-"), field.annotation
        if name == "arch":  # no default: giving it asks for an --arch run
            group.add_argument(flag, choices=sorted(ARCHS), help=field.description)
        elif get_origin(kind) is Literal:
            group.add_argument(flag, choices=get_args(kind), default=field.default, help=field.description)
        else:
            kind = (get_args(kind) or (kind,))[0]  # Path | None -> Path
            default = ARCH_RUN_DEFAULTS.get(name, field.default)
            group.add_argument(flag, type=kind, default=default, help=field.description)
    group.add_argument(
        "--world",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="WorldConfig override, e.g. position_grid=1 or 'single_radius=[12,22]'",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m clipforge.toyworld.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--all", action="store_true", help="retrain every model in RECIPES (one after another)")
    p.add_argument("--recipe", action="append", help="retrain the named shipped model (repeatable)")
    p.add_argument(
        "--out-root",
        type=Path,
        default=None,
        help="where recipe models are written (default: each model's home: clipforge's folder, or clipforge-zoo's)",
    )
    p.add_argument("--recipe-json", help="train a recipe given as JSON (the form of RECIPES' values) into --out")
    p.add_argument("--out", type=Path, help="output folder for --recipe-json and --arch runs")
    p.add_argument("--threads", type=int, default=2, help="torch threads (train_info.json records the number used)")
    _add_option_flags(p)
    return p


def _world_overrides(p: argparse.ArgumentParser, items: list[str]) -> dict[str, Any]:
    """The ``--world KEY=JSON`` flags as WorldConfig overrides, each checked as it is read."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError("expected KEY=JSON")
            overrides[key] = json.loads(value)
            WorldConfig(**overrides)
        except ValueError as exc:
            p.error(f"--world {item!r}: {exc}")
    return overrides


def _json_recipe(p: argparse.ArgumentParser, args: argparse.Namespace) -> Recipe | None:
    """The ``--recipe-json`` recipe, validated; None without that flag."""
    if not args.recipe_json:
        return None
    if args.out is None:
        p.error("--recipe-json needs --out")
    try:
        return check_recipe(json.loads(args.recipe_json))
    except ValueError as exc:
        p.error(f"--recipe-json: {exc}")


def _arch_recipe(p: argparse.ArgumentParser, args: argparse.Namespace, world: dict[str, Any]) -> Recipe | None:
    """The recipe of an ``--arch`` run: the option flags' values, validated; None without ``--arch``."""
    if not args.arch:
        return None
    if args.out is None:
        p.error("--arch needs --out")
    options = {name: getattr(args, name) for name in TrainConfig.model_fields if name != "world_overrides"}
    try:
        return check_recipe({**options, "world_overrides": world})
    except ValueError as exc:
        p.error(str(exc))


def main(argv: list[str] | None = None) -> None:
    """Check every requested run before the first one trains, then train them one after another."""
    p = _parser()
    args = p.parse_args(argv)
    world = _world_overrides(p, args.world)
    json_recipe, arch_recipe = _json_recipe(p, args), _arch_recipe(p, args, world)
    names = list(RECIPES) if args.all else (args.recipe or [])
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        p.error(f"unknown recipe(s) {unknown}; available: {list(RECIPES)}")
    if not names and json_recipe is None and arch_recipe is None:
        p.error("give --all, --recipe NAME, --recipe-json JSON --out DIR or --arch ARCH --out DIR")
    torch.set_num_threads(args.threads)
    for name in names:
        print(f"=== {name}: {RECIPES[name]}", flush=True)
        run(check_recipe(RECIPES[name]), args.out_root / name if args.out_root else model_home(name), name)
    if json_recipe is not None:
        run(json_recipe, args.out)
    if arch_recipe is not None:
        run(arch_recipe, args.out)
