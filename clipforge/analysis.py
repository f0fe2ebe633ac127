"""Running an analysis, and the tools every analysis report uses.

An analysis (a :class:`clipforge.Analysis` registered through ``register_analyses``) says which
inversions it needs, how it judges them and how it writes its report; :func:`run_analysis` does the
rest, the same way for every analysis: resolve its run specs and judge once, run the inversions
under one progress bar, build the judge, write ``report.json``, let the analysis write the rest.

This module's ``__all__`` is public API (for plugins that publish analyses), like ``clipforge``'s.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clipforge.compat import world_captions_name
from clipforge.components import Analysis, AnalysisRun, Backbone, Callback, InversionResult, Options, RunInfo, StepState
from clipforge.engine import Engine
from clipforge.files import write_json
from clipforge.images import image_grid, save_png, to_display
from clipforge.outputs import Folder
from clipforge.progressbar import progress_bar
from clipforge.registry import Registry, ResolvedComponent, ResolvedSpec, default_registry
from clipforge.spec import SpecError
from clipforge.specfile import load_model as load_analysis_spec

#: the values of an analysis spec's ``captions`` that ask the judge for its world's captions ("toyworld",
#: the older name of "world", is read as "world" and warned of: :func:`clipforge.compat.world_captions_name`)
WORLD_CAPTIONS = ("world",)

__all__ = [
    "WORLD_CAPTIONS",
    "AnalysisPlan",
    "SharedProgress",
    "bootstrap_interval",
    "candidate_captions",
    "load_analysis_spec",
    "markdown_table",
    "mean_interval",
    "plan_analysis",
    "run_analysis",
    "sign_test",
    "t_quantile",
    "wilson_interval",
    "with_ci",
    "write_csv",
    "write_grid",
    "write_json",
]


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class AnalysisPlan:
    """An analysis checked against a registry: its run specs and its judge, each resolved once."""

    analysis: Analysis
    specs: dict[str, ResolvedSpec]  # by the spec path that configures them ("run", "backbones.big", ...)
    judge: ResolvedComponent

    @property
    def total_steps(self) -> int:
        return sum(rs.spec.steps for rs in self.specs.values())


def plan_analysis(analysis: Analysis, registry: Registry) -> AnalysisPlan:
    """Check every inversion spec of ``analysis`` and its judge; every problem (all of them, each with
    its JSON path in the analysis spec) is raised in one :class:`SpecError`."""
    problems: list[tuple[str, str]] = []
    specs: dict[str, ResolvedSpec] = {}
    try:
        analysis.check(registry)
        run_specs = analysis.options.inversion_specs()
    except SpecError as exc:
        problems.extend(exc.problems)
        run_specs = {}
    for where, spec in run_specs.items():
        try:
            specs[where] = registry.resolve(spec, where)
        except SpecError as exc:
            problems.extend(exc.problems)
    judge = None
    if not (problems and analysis.options.judge_follows_the_run()):  # else the same problem, said twice
        try:
            judge = registry.resolve_component("backbone", analysis.options.judge, "judge")
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems or judge is None:
        raise SpecError(problems)
    return AnalysisPlan(analysis, specs, judge)


def run_analysis(
    analysis: Analysis | AnalysisPlan,
    out_dir: str | Path | None = None,
    registry: Registry | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run an analysis and return its report; with ``out_dir``, write ``report.json`` and whatever
    the analysis's ``write_report`` writes there. The folder is claimed as a run's is (it must not
    exist or be empty, and no other process may hold it); if the analysis fails before its report
    is written whole (``report.json`` and all that ``write_report`` writes), the folder is left as it
    was found."""
    registry = registry or default_registry()
    plan = analysis if isinstance(analysis, AnalysisPlan) else plan_analysis(analysis, registry)
    analysis = plan.analysis
    folder = Folder(Path(out_dir)) if out_dir is not None else None
    written = False
    try:
        callbacks = analysis.callbacks(registry)
        results: dict[str, InversionResult] = {}
        with SharedProgress(plan.total_steps, analysis.progress_label(), show_progress) as bar:
            for where, resolved in plan.specs.items():
                engine = Engine(resolved, callbacks=[*callbacks, bar.callback()])
                results[where] = engine.run()
                if results[where].interrupted:  # Ctrl-C or SIGTERM: no report from part of the inversions
                    raise KeyboardInterrupt
        device = next(iter(results.values())).device
        run = AnalysisRun(
            results=results,
            judge=plan.judge.build(torch.device(device), where="judge"),
            specs=plan.specs,
            registry=registry,
        )
        report = {"analysis": analysis.name, **analysis.analyse(run)}
        if folder is not None:  # all or nothing: a report cut short (Ctrl-C, a failing write_report) is undone
            write_json(folder.path / "report.json", report)
            analysis.write_report(report, run, folder.path)
            written = True
    except BaseException:
        if folder is not None and not written:
            folder.abandon()
        raise
    finally:
        if folder is not None and folder.path.exists():
            folder.release()
    return report


class SharedProgress:
    """One progress bar across all of an analysis's inversions."""

    def __init__(self, total_steps: int, description: str, enabled: bool = True):
        self.progress = progress_bar(disable=not enabled)
        self.task = self.progress.add_task(description, total=total_steps)

    def __enter__(self) -> SharedProgress:
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


# --------------------------------------------------------------------------- statistics


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


def t_quantile(level: float, df: int) -> float:
    """The two-sided ``level`` quantile of Student's t with ``df`` degrees of freedom: the t with
    P(|T| < t) = level (12.706 for 95 % at df 1, 2.262 at df 9, 1.960 as df grows). Found by bisection on
    the exact finite series of P(|T| < t) for integer df (Abramowitz & Stegun 26.7.3-4), and beyond 200
    df by the Cornish-Fisher expansion around the normal quantile (A&S 26.7.5; off by under 1e-7 there)."""
    if df < 1 or not 0 < level < 1:
        raise ValueError(f"t_quantile needs df >= 1 and 0 < level < 1, not df={df}, level={level}")
    if df > 200:
        z = statistics.NormalDist().inv_cdf((1 + level) / 2)
        g1 = (z**3 + z) / 4
        g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
        g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
        return z + g1 / df + g2 / df**2 + g3 / df**3

    def central(t: float) -> float:  # P(|T| < t)
        theta = math.atan(t / math.sqrt(df))
        c2 = math.cos(theta) ** 2
        if df % 2:  # odd df: 2/pi (theta + sin cos (1 + 2/3 c2 + 2*4/(3*5) c2^2 + ...)), df - 3 terms after 1
            term, total = 1.0, 1.0 if df > 1 else 0.0
            for k in range(1, (df - 1) // 2):
                term *= c2 * (2 * k) / (2 * k + 1)
                total += term
            return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
        term, total = 1.0, 1.0  # even df: sin (1 + 1/2 c2 + 1*3/(2*4) c2^2 + ...), up to c2^((df-2)/2)
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return math.sin(theta) * total

    low, high = 0.0, 1.0
    while central(high) < level:
        high *= 2
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if central(mid) < level else (low, mid)
    return (low + high) / 2


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and its Student-t interval (95 % by default): (mean, low, high), the t quantile taken at
    n - 1 degrees of freedom, so that small samples (a handful of seeds) get the wider interval they
    need (the normal 1.96 would cover 95 % only as n grows: at n = 3 it covers about 81 %); the bounds
    are NaN for a single value, whose spread is unknown."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(level, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def bootstrap_interval(
    values: Sequence[float], resamples: int = 4000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean and its percentile bootstrap interval (95 % by default): (mean, low, high).

    For means of bounded per-image values (a colour's share of an image, say), whose distribution is
    far from normal at small n and often piles up at 0 or 1, where a normal interval would leave
    [0, 1]. Resampled through a seeded ``torch.Generator``, so a report is reproducible."""
    n = len(values)
    if n == 0:
        raise ValueError("bootstrap_interval needs at least one value")
    x = torch.tensor([float(v) for v in values], dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    means = x[torch.randint(n, (resamples, n), generator=g)].mean(1)
    tail = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return float(x.mean()), low, high


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test (ties dropped): the p-value of ``wins`` against ``losses`` under 50/50."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(0, min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


# --------------------------------------------------------------------------- judging


def candidate_captions(value: list[str] | str | None, prompts: list[str], judge: Backbone | None = None) -> list[str]:
    """A judge's candidate captions: a list; ``"world"`` (``"toyworld"`` in older specs, warned of): the
    captions of the world the judge's model was trained on, which the judge backbone knows
    (:meth:`Backbone.captions`); or none. The prompts are added."""
    value = world_captions_name(value)
    if value in WORLD_CAPTIONS:
        captions = judge.captions() if judge is not None else None
        if captions is None:
            who = judge.label if judge is not None else "no judge"
            raise SpecError([("captions", f"{value!r} asks the judge for its world's captions, but {who} knows none; "
                             "give the captions as a list")])  # fmt: skip
        return captions
    captions = list(value) if value else []
    return captions + [p for p in prompts if p not in captions]


# --------------------------------------------------------------------------- reports


def with_ci(value: float, ci: Sequence[float], digits: int = 2) -> str:
    """``value [low, high]``, the way every analysis report prints an estimate and its interval."""
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


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
