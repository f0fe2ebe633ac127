"""A sweep spec and what it expands to: grid points (each with its resolved run spec), items (one
image each) and blocks (the items one engine run optimises together)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from clipforge.errors import SpecError, json_type, problems_of
from clipforge.files import slug
from clipforge.registry import Registry, ResolvedSpec, default_registry
from clipforge.resolved import ResolvedComponent, resolve_prompt_goals, with_prompts
from clipforge.spec import Prompt, RunSpec, parse_spec
from clipforge.specbase import LIMITS, DistinctSeeds, StrictModel, seed_list
from clipforge.specfile import apply_overrides, read_object, read_spec_file, validate

#: run-spec fields a grid may not vary: the sweep sets them for every block, so a grid over them
#: would be silently ignored
NOT_GRIDDED = {
    "prompts": "the sweep's 'prompts' set the prompts of every grid point; list them there",
    "seeds": "the sweep's 'seeds' set the seeds of every grid point; list them there",
    "callbacks": "a sweep's blocks run without callbacks (the sweep writes their images and index lines)",
    "output_dir": "a sweep writes into its own folder (--out)",
    "checkpoint_every": "a sweep's blocks run in memory and write no checkpoints (a block is the unit of resuming)",
    "checkpoint_seconds": "a sweep's blocks run in memory and write no checkpoints (a block is the unit of resuming)",
}

#: what a point's hash leaves out: the sweep sets the prompts and seeds, writes where it writes, and a
#: block writes no checkpoints (so a point's hash stays what it was before runs had ``checkpoint_seconds``)
NOT_IN_POINT = {"prompts", "seeds", "output_dir", "checkpoint_seconds"}


class SweepSpec(StrictModel):
    """What ``clipforge sweep SWEEP.json`` runs."""

    base: dict[str, Any] | str = Field(
        default_factory=dict,
        description="The run settings every item shares: a run spec (without prompts and seeds), inline or a path.",
    )
    prompts: list[Any] | str = Field(
        description="Prompts: a list (as in a run spec), or a .txt (one per line), .csv or .jsonl file "
        "(columns or keys text, label, weight).",
    )
    seeds: DistinctSeeds = Field(1, description="Seeds per prompt: a count (0..N-1) or a list.")
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Run-spec paths (the --set syntax) and the values each takes; every combination is a grid point.",
    )
    batch_size: int = Field(16, ge=1, le=LIMITS["images"], description="Items optimised together in one engine run.")
    snapshots: int | None = Field(
        None,
        ge=1,
        description="Save each item's image every N steps too, as snapshots/<point>/<item>_step_<N>.png in the "
        "sweep folder; each item's index record then lists them under 'snapshots' (paths relative to the sweep "
        "folder, in step order). Null: none.",
    )

    @field_validator("grid")
    @classmethod
    def _values(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in value.items():
            if not values:
                raise ValueError(f"grid {key!r} has no values")
            top = re.split(r"[.\[]", key, maxsplit=1)[0]
            if top in NOT_GRIDDED:
                raise ValueError(f"grid {key!r}: {NOT_GRIDDED[top]}")
            seen: dict[str, int] = {}
            for i, v in enumerate(values):
                same = seen.setdefault(_value_key(v), i)
                if same != i:
                    raise ValueError(
                        f"grid {key!r} gives the value {json.dumps(v)} twice ([{same}] and [{i}]): its grid points "
                        "would be the same runs under two labels; give each value once"
                    )
        return value

    def seed_list(self) -> list[int]:
        return seed_list(self.seeds)

    def record(self) -> dict[str, Any]:
        """The spec as ``sweep.json`` keeps it (an option left unset is left out)."""
        return self.model_dump(mode="json", exclude={"snapshots"} if self.snapshots is None else set())


def _value_key(value: Any) -> str:
    """A grid value as the run sees it: numbers by value (1 and 1.0 are one learning rate), the rest
    as canonical JSON."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(float(value))
    return json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class GridPoint:
    """One combination of the grid's values, with the run spec it gives (resolved once, without
    prompts, seeds or callbacks: a block adds its own)."""

    settings: dict[str, Any]  # run-spec path (--set syntax) -> value
    resolved: ResolvedSpec
    where: str = "base"  # how errors name it: "base", or "grid point lr=0.1, ..."

    @property
    def spec(self) -> RunSpec:
        return self.resolved.spec

    @cached_property
    def run(self) -> dict[str, Any]:
        """The run spec as ``sweep.json`` shows it (and as its hash digests it)."""
        return self.spec.model_dump(mode="json", exclude=NOT_IN_POINT)

    @cached_property
    def hash(self) -> str:
        return self.spec.digest(exclude=NOT_IN_POINT)

    def record(self) -> dict[str, Any]:
        return {"settings": self.settings, "run": self.run, "hash": self.hash}

    def describe(self) -> str:
        return describe_settings(self.settings)


def describe_settings(settings: dict[str, Any]) -> str:
    """A grid point's settings as one line (``optimizer.lr=0.1, steps=5``), or ``the base``."""
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in settings.items()) or "the base"


@dataclass(frozen=True)
class Item:
    """One image of the sweep."""

    id: str
    point: int
    prompt_index: int
    prompt: Any
    seed: int


@dataclass(frozen=True)
class Block:
    """Items of one grid point optimised together: ``prompts`` x ``seeds``."""

    index: int
    point: int
    items: list[Item]


@dataclass
class Sweep:
    """A sweep spec expanded: its grid points and items."""

    spec: SweepSpec
    points: list[GridPoint]
    blocks: list[Block]
    source: str | None = None
    goals: dict[int, list[ResolvedComponent]] = field(default_factory=dict)  # prompts' own objectives, by index

    @property
    def items(self) -> list[Item]:
        return [item for block in self.blocks for item in block.items]

    def record(self) -> dict[str, Any]:
        """``sweep.json``: the sweep as resolved, every grid point's run spec."""
        return {
            "spec": self.spec.record(),
            "points": [point.record() for point in self.points],
            "items": len(self.items),
            "blocks": len(self.blocks),
        }


def read_prompts(value: list[Any] | str, base_dir: Path | None) -> list[Any]:
    """Prompts from a list or a file: .txt (one a line), .csv (text, label, weight), .jsonl. A
    problem in a file is named with the file and its line; a UTF-8 byte order mark (Excel's) is
    ignored."""
    if isinstance(value, list):
        return value
    path = Path(value)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([("prompts", f"cannot read {str(path)!r}: {exc}")]) from None
    if path.suffix == ".txt":
        return [line.strip() for line in text.splitlines() if line.strip()]

    def row(data: Any, where: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise SpecError(
                [(where, f"a prompt is an object with 'text' (and 'label', 'weight'), not {json_type(data)}")]
            )
        unknown = set(data) - {"text", "label", "weight"}
        if unknown or not data.get("text"):
            raise SpecError([(where, f"a prompt needs 'text' (and may have 'label', 'weight'), not {sorted(data)}")])
        for key in ("text", "label"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise SpecError([(where, f"'{key}' must be a string, not {json_type(data[key])}")])
        out = {"text": data["text"]}
        if data.get("label"):
            out["label"] = data["label"]
        weight = data.get("weight")
        if weight not in (None, ""):
            try:
                if isinstance(weight, bool):
                    raise ValueError
                out["weight"] = float(weight)
                if not math.isfinite(out["weight"]):
                    raise ValueError
            except (TypeError, ValueError):
                raise SpecError([(where, f"'weight' must be a finite number, not {weight!r}")]) from None
        return out

    if path.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""), restkey=_EXTRA, restval=_MISSING)
        rows = []
        for record in reader:
            where = f"prompts: {str(path)!r} line {reader.line_num}"
            if _EXTRA in record:
                raise SpecError([(where, f"more fields than the header's {len(reader.fieldnames or [])}")])
            if _MISSING in record.values():
                raise SpecError([(where, f"fewer fields than the header's {len(reader.fieldnames or [])}")])
            rows.append(row(record, where))
        return rows
    if path.suffix == ".jsonl":
        rows = []
        for i, line in enumerate(text.splitlines()):
            if line.strip():
                where = f"prompts: {str(path)!r} line {i + 1}"
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SpecError([(where, f"invalid JSON: {exc.msg}")]) from None
                rows.append(row(data, where))
        return rows
    raise SpecError([("prompts", f"{path.name}: a prompts file ends in .txt, .csv or .jsonl")])


_EXTRA, _MISSING = "\x00extra", "\x00missing"  # markers of a ragged CSV row


def check_prompts(prompts: list[Any], where: str) -> None:
    """Each prompt as a run spec takes it (a string, or an object with 'text', 'image' or 'terms'),
    refused with its place (``prompts[3]``, or the file and line it came from)."""
    for i, prompt in enumerate(prompts):
        try:
            Prompt.model_validate(prompt)
        except ValidationError as exc:
            problems = problems_of(exc, f"prompts[{i}]")
            raise SpecError([(f"{where} ({path})" if where else path, msg) for path, msg in problems]) from None


def load_sweep(source: str | Path | dict[str, Any], registry: Registry | None = None) -> Sweep:
    """Read, validate and expand a sweep spec; every problem is raised with its JSON path and file."""
    registry = registry or default_registry()
    data, name = read_object(source)
    base_dir = None if name is None else Path(name).parent
    try:
        spec = validate(SweepSpec, data)
        base = spec.base
        if isinstance(base, str):
            base = read_spec_file(Path(base) if Path(base).is_absolute() or base_dir is None else base_dir / base)
        for key in ("prompts", "seeds"):
            if key in base:
                raise SpecError([(f"base.{key}", "the sweep sets it; leave it out of the base")])
        refuse_callbacks(base.get("callbacks"))
        prompts = read_prompts(spec.prompts, base_dir)
        if not prompts:
            raise SpecError([("prompts", "no prompts")])
        check_prompts(prompts, "" if isinstance(spec.prompts, list) else f"prompts: {spec.prompts!r}")
        models = [Prompt.model_validate(p) for p in prompts]
        refuse_unused_grid_keys(spec, models)
        goals = resolve_prompt_goals(registry, models, "", None if base_dir is None else str(base_dir))
        check_size(spec, math.prod(len(v) for v in spec.grid.values()), prompts)  # counted before any is made
        points = grid_points(spec, base, registry)
        for point in points:  # every prompt fits its goal at every point, before anything runs
            try:
                with_prompts(point.resolved, models, goals)
            except SpecError as exc:
                raise exc.within(prefix=point.where, join=": ") from None
        blocks = _blocks(spec, len(points), prompts)
    except SpecError as exc:
        raise exc.within(name) from None
    return Sweep(spec, points, blocks, name, goals)


def refuse_unused_grid_keys(spec: SweepSpec, prompts: list[Prompt]) -> None:
    """A grid over the spec's ``objectives`` changes no item when every prompt names its own: its
    items would be labelled with different objectives and be the same images, so it is refused."""
    keys = [k for k in spec.grid if re.split(r"[.\[]", k, maxsplit=1)[0] == "objectives"]
    if keys and all(p.objectives is not None for p in prompts):
        raise SpecError(
            [
                (
                    f"grid.{keys[0]}",
                    "every prompt names its own objectives, so the spec's 'objectives' reach no item and this "
                    "grid key would label identical images differently: grid a prompt without its own objectives, "
                    "or give the values as prompts",
                )
            ]
        )


def refuse_callbacks(callbacks: Any) -> None:
    """A sweep's blocks run without callbacks (the sweep writes their images and index lines itself), so
    a base that names callbacks is refused, naming them, rather than run without them: a
    ``safety_screen`` dropped in silence would write the images it withholds in a run."""
    if not callbacks:
        return
    names = [c if isinstance(c, str) else c.get("name", "?") if isinstance(c, dict) else "?" for c in callbacks]
    raise SpecError(
        [
            (
                "base.callbacks",
                f"a sweep does not run its base's callbacks, so it would run without {', '.join(map(repr, names))}: "
                "leave 'callbacks' out of the base (a sweep writes every image, its index and, with "
                "'snapshots', its snapshots; screen a sweep's images with an analysis such as `clipforge screen`)",
            )
        ]
    )


def grid_points(spec: SweepSpec, base: dict[str, Any], registry: Registry) -> list[GridPoint]:
    """Every combination of the grid's values over ``base``, each resolved once (without prompts,
    seeds and callbacks, which each block sets)."""
    keys = list(spec.grid)
    points = []
    for values in itertools.product(*(spec.grid[k] for k in keys)) if keys else [()]:
        settings = dict(zip(keys, values))
        overrides = [f"{k}={json.dumps(v)}" for k, v in settings.items()]
        where = "grid point " + ", ".join(f"{k}={json.dumps(v)}" for k, v in settings.items()) if keys else "base"
        try:
            run_data = apply_overrides({**base, "prompts": ["x"], "seeds": [0]}, overrides, RunSpec)
            points.append(GridPoint(settings, registry.resolve(parse_spec(run_data, None), check_goals=False), where))
        except SpecError as exc:
            raise exc.within(prefix=where, join=": ") from None
    return points


def check_size(spec: SweepSpec, points: int, prompts: list[Any]) -> None:
    """Refuse a sweep of more than ``LIMITS["images"] * 100`` items from its counts alone: a huge grid
    or sweep must not fill the memory (or take minutes) before it is refused."""
    seeds = spec.seed_list()
    items = points * len(prompts) * len(seeds)
    if items > LIMITS["images"] * 100:
        raise SpecError(
            [
                (
                    "",
                    f"{points} grid points x {len(prompts)} prompts x {len(seeds)} seeds = {items} items in "
                    f"one sweep; at most {LIMITS['images'] * 100}",
                )
            ]
        )


def _blocks(spec: SweepSpec, points: int, prompts: list[Any]) -> list[Block]:
    seeds = spec.seed_list()
    check_size(spec, points, prompts)
    per_block = max(1, spec.batch_size // len(seeds))
    blocks = []
    for p in range(points):
        for start in range(0, len(prompts), per_block):
            block_items = [
                Item(f"p{p:03d}-{i:06d}-{_prompt_slug(prompt)}-s{seed}", p, i, prompt, seed)
                for i, prompt in enumerate(prompts[start : start + per_block], start)
                for seed in seeds
            ]
            blocks.append(Block(len(blocks), p, block_items))
    return blocks


def _prompt_slug(prompt: Any) -> str:
    text = prompt if isinstance(prompt, str) else prompt.get("label") or prompt.get("text") or "prompt"
    return slug(str(text), 40) or "prompt"
