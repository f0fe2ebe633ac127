"""Model comparison (the paper's data-scale analysis): the same prompts and seeds inverted on
several backbones, every inversion scored by one judge."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from rich.table import Table

from clipforge.analyses.common import (
    AnalysisSpec, SharedProgress, markdown_table, prepare, run_inversions, wilson_interval, write_grid,
    write_json,
)
from clipforge.judge import Judge, load_backbone
from clipforge.registry import Registry, default_registry
from clipforge.spec import ComponentRef, RunSpec


def candidate_captions(value: list[str] | str | None, prompts: list[str]) -> list[str]:
    """The judge's candidates: a list, ``"toyworld"`` (every caption of the offline world), or the prompts."""
    if value == "toyworld":
        from clipforge.toyworld import World

        return World.captions()
    captions = list(value) if value else []
    return captions + [p for p in prompts if p not in captions]


class CompareSpec(AnalysisSpec):
    prompts: list[str] = Field(min_length=1)
    backbones: dict[str, ComponentRef] = Field(min_length=2, description="Label -> backbone to invert.")
    captions: list[str] | str | None = Field(
        None, description="The judge's candidate captions ('toyworld' for the offline world's); prompts are added.")


    def inversion_specs(self) -> dict[str, RunSpec]:
        return {f"backbones.{label}": self.run_spec(self.prompts, [ref.model_dump()], where=f"backbones.{label}")
                for label, ref in self.backbones.items()}


def run_compare(spec: CompareSpec, out_dir: str | Path | None, registry: Registry | None = None,
                show_progress: bool = True) -> dict[str, Any]:
    registry = registry or default_registry()
    spec.check(registry)
    run_specs = dict(zip(spec.backbones, spec.inversion_specs().values()))
    out = prepare(out_dir) if out_dir is not None else None
    total = sum(rs.steps for rs in run_specs.values())
    results = {}
    with SharedProgress(total, f"comparing {len(run_specs)} backbones", show_progress) as bar:
        for label, rs in run_specs.items():
            results[label] = run_inversions(rs, registry, bar)
    device = next(iter(results.values())).device
    judge = Judge(load_backbone(spec.judge, device, registry), candidate_captions(spec.captions, spec.prompts))
    rows_out, summary = [], {}
    for label, result in results.items():
        verdicts = judge.judge(result.images, [spec.prompts[r.prompt_index] for r in result.rows])
        n = len(verdicts.correct)
        k = sum(verdicts.correct)
        sims = verdicts.similarity
        sd = statistics.stdev(sims) if n > 1 else 0.0
        summary[label] = {
            "images": n, "judge_similarity": statistics.fmean(sims),
            "judge_similarity_ci95": [statistics.fmean(sims) - 1.96 * sd / n ** 0.5,
                                      statistics.fmean(sims) + 1.96 * sd / n ** 0.5],
            "accuracy": k / n, "accuracy_ci95": list(wilson_interval(k, n)), "judge_margin": verdicts.mean_margin,
            "model_similarity": statistics.fmean(result.metrics[-1]["similarity"]),
        }
        rows_out.append(result.images)
    ranking = sorted(summary, key=lambda label: summary[label]["judge_similarity"], reverse=True)
    report = {"analysis": "compare", "judge": spec.judge.model_dump(), "prompts": spec.prompts,
              "seeds": spec.seed_list(), "backbones": {k: v.model_dump() for k, v in spec.backbones.items()},
              "results": summary, "ranking_by_judge_similarity": ranking}
    if out is not None:
        write_json(out / "report.json", report)
        write_grid(out / "grid.png", torch.cat(rows_out), rows_out[0].shape[0])
        header = ["backbone", "images", "judge similarity (95 % CI)", "accuracy (95 % CI)", "judge margin"]
        table = [[label, s["images"],
                  f"{s['judge_similarity']:.3f} [{s['judge_similarity_ci95'][0]:.3f}, {s['judge_similarity_ci95'][1]:.3f}]",
                  f"{s['accuracy']:.2f} [{s['accuracy_ci95'][0]:.2f}, {s['accuracy_ci95'][1]:.2f}]", s["judge_margin"]]
                 for label, s in summary.items()]
        md = ["# Model comparison", "", f"Judge: `{spec.judge.model_dump()}`.", "", markdown_table(header, table), "",
              "Ranking by judge similarity: " + " > ".join(ranking), "",
              "One row per backbone, in the order above; columns are prompts x seeds.", "", "![grid](grid.png)", ""]
        (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    return report


def compare_table(report: dict[str, Any]) -> Table:
    table = Table(title="model comparison")
    for col in ("backbone", "images", "judge similarity", "accuracy (95% CI)", "margin"):
        table.add_column(col)
    for label, s in report["results"].items():
        table.add_row(label, str(s["images"]), f"{s['judge_similarity']:.3f}",
                      f"{s['accuracy']:.2f} [{s['accuracy_ci95'][0]:.2f}, {s['accuracy_ci95'][1]:.2f}]",
                      f"{s['judge_margin']:+.3f}")
    return table
