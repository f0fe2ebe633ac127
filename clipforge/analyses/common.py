"""What every analysis shares: its spec's common part, running inversions under one progress bar,
confidence intervals, and writing reports."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Sequence

import torch
from pydantic import Field, field_validator
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from clipforge.components import Callback, InversionResult, Options, RunInfo, StepState
from clipforge.engine import Engine
from clipforge.outputs import image_grid, prepare_out_dir, save_png, to_display
from clipforge.registry import Registry, check_components, default_registry
from clipforge.spec import ComponentRef, RunSpec, SpecError, StrictModel, parse_spec, read_spec_file


class AnalysisSpec(StrictModel):
    """Fields every analysis spec has. ``run`` holds inversion settings (any run-spec field but
    ``prompts`` and ``seeds``, which the analysis fills in)."""

    run: dict[str, Any] = Field(default_factory=dict, description="Inversion settings, as in a run spec.")
    seeds: int | list[int] = Field(4, description="Seeds per prompt: a count (0..N-1) or a list.")
    judge: ComponentRef = Field(description="The held-out backbone that judges the inversions.")
    output_dir: str | None = None

    @field_validator("run")
    @classmethod
    def _no_prompts(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in ("prompts", "seeds"):
            if key in value:
                raise ValueError(f"'run' must not set {key!r}: the analysis sets it")
        return value

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def run_spec(self, prompts: Sequence[Any], backbones: list[dict[str, Any]] | None = None,
                 where: str = "run") -> RunSpec:
        data = {**self.run, "prompts": list(prompts), "seeds": self.seed_list(), "callbacks": []}
        if backbones is not None:
            data["backbones"] = backbones
        try:
            return parse_spec(data)
        except SpecError as exc:
            raise SpecError([(f"{where}.{p}" if p else where, m) for p, m in exc.problems]) from None


    def inversion_specs(self) -> dict[str, RunSpec]:
        """The run specs this analysis will invert, by the spec path that configures them."""
        return {"run": self.run_spec(getattr(self, "prompts"))}

    def check(self, registry: Registry) -> None:
        """Validate every inversion's components and the judge's options without running anything."""
        for where, spec in self.inversion_specs().items():
            check_run(spec, registry, where)
        entry_problems: list[tuple[str, str]] = []
        try:
            entry = registry.get("backbone", self.judge.name)
            entry.cls.Options.model_validate(self.judge.options)
        except Exception as exc:  # UnknownComponentError or ValidationError
            from pydantic import ValidationError

            from clipforge.spec import _problems

            entry_problems = _problems(exc, "judge.options") if isinstance(exc, ValidationError) else [
                ("judge.name", str(exc))]
        if entry_problems:
            raise SpecError(entry_problems)


def load_analysis_spec(cls: type[AnalysisSpec], source: str | Path | dict[str, Any]) -> AnalysisSpec:
    from pydantic import ValidationError

    from clipforge.spec import _problems

    name = None if isinstance(source, dict) else str(source)
    data = source if isinstance(source, dict) else read_spec_file(source)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems(exc), name) from None


def check_run(spec: RunSpec, registry: Registry, where: str = "run") -> None:
    try:
        check_components(spec, registry)
    except SpecError as exc:
        raise SpecError([(f"{where}.{p}", m) for p, m in exc.problems]) from None


class SharedProgress:
    """One progress bar across all of an analysis's inversions."""

    def __init__(self, total_steps: int, description: str, enabled: bool = True):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), disable=not enabled,
        )
        self.task = self.progress.add_task(description, total=total_steps)

    def __enter__(self) -> "SharedProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def callback(self) -> Callback:
        bar = self

        class Advance(Callback):
            name = "shared_progress"

            def on_step_end(self, run: RunInfo, state: StepState) -> None:
                bar.progress.advance(bar.task)

        return Advance(Options())


def run_inversions(spec: RunSpec, registry: Registry | None, progress: SharedProgress | None,
                   extra_callbacks: Sequence[Callback] = ()) -> InversionResult:
    callbacks = list(extra_callbacks) + ([progress.callback()] if progress else [])
    return Engine(spec, registry=registry or default_registry(), callbacks=callbacks).run()


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95 % by default).

    Unlike the normal approximation it stays inside [0, 1] and behaves at 0 or N successes, which
    is where small bias probes often land.
    """
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(values: Sequence[float], z: float = 1.959964) -> tuple[float, float, float]:
    """Mean and its normal-approximation 95 % interval: (mean, low, high); the bounds are NaN for a
    single value, whose spread is unknown."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan, math.nan
    half = z * math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) / math.sqrt(n)
    return mean, mean - half, mean + half


def with_ci(value: float, ci: Sequence[float], digits: int = 2) -> str:
    """``value [low, high]``, the way every analysis report prints an estimate and its interval."""
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test (ties dropped): the p-value of ``wins`` against ``losses`` under 50/50."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(0, min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        path.write_text("", encoding="utf-8")
        return
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_grid(path: Path, images: torch.Tensor, columns: int) -> None:
    save_png(image_grid(to_display(images, "clamp"), columns), path)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def prepare(out_dir: str | Path) -> Path:
    path = Path(out_dir)
    prepare_out_dir(path)
    return path
