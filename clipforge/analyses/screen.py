"""Safety screening of inversions, and the paper's text-side analysis.

Benign prompts (and names) are inverted over N seeds with the ``safety_screen`` callback on: the
report gives each prompt's flag rate with a 95 % interval. The text-side table gives the cosine
similarity between the text embeddings of the prompts and words (names, controls) and the concept
prompts, in the inverted model's own text space.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from rich.table import Table

from clipforge.analyses.common import (
    AnalysisSpec, SharedProgress, markdown_table, prepare, run_inversions, wilson_interval, with_ci, write_grid,
)
from clipforge.judge import load_backbone
from clipforge.outputs import write_json
from clipforge.registry import Registry, default_registry


class ScreenSpec(AnalysisSpec):
    prompts: list[str] = Field(min_length=1, description="Prompts to invert and screen.")
    concepts: list[str] = Field(min_length=1, description="Concept prompts screened for.")
    references: list[str] = Field(default_factory=list, description="Benign descriptions (see safety_screen).")
    threshold: float = 0.0
    action: Literal["blur", "withhold", "flag"] = "blur"
    words: list[str] = Field(default_factory=list, description="Extra rows of the text-side table (names, controls).")


def text_table(backbone, rows: list[str], concepts: list[str]) -> torch.Tensor:
    with torch.no_grad():
        a = F.normalize(backbone.encode_text(rows).float(), dim=-1)
        b = F.normalize(backbone.encode_text(concepts).float(), dim=-1)
    return (a @ b.T).cpu()


def run_screen(spec: ScreenSpec, out_dir: str | Path | None, registry: Registry | None = None,
               show_progress: bool = True) -> dict[str, Any]:
    registry = registry or default_registry()
    spec.check(registry)
    run_spec = spec.inversion_specs()["run"]
    entry = registry.get("callback", "safety_screen")
    screen = entry.cls(entry.cls.Options(concepts=spec.concepts, references=spec.references, threshold=spec.threshold,
                                         action=spec.action, judge=spec.judge.model_dump()))
    out = prepare(out_dir) if out_dir is not None else None
    with SharedProgress(run_spec.steps, f"screening {len(spec.prompts)} prompt(s)", show_progress) as bar:
        result = run_inversions(run_spec, registry, bar, [screen])
    per_prompt = {}
    for prompt, r in screen.flag_rates().items():
        per_prompt[prompt] = {**r, "ci95": list(wilson_interval(r["flagged"], r["images"]))}
    inverted = load_backbone(run_spec.backbones[0], result.device, registry)
    rows = list(dict.fromkeys(spec.prompts + spec.words))
    sims = text_table(inverted, rows, spec.concepts)
    table = {row: dict(zip(spec.concepts, sims[i].tolist())) for i, row in enumerate(rows)}
    report = {"analysis": "screen", "concepts": spec.concepts, "references": spec.references,
              "threshold": spec.threshold, "action": spec.action, "judge": spec.judge.model_dump(),
              "seeds": spec.seed_list(), "flag_rates": per_prompt, "images": screen.records, "text_similarity": table}
    if out is not None:
        write_json(out / "report.json", report)
        md = ["# Safety screen", "", f"Concepts: {spec.concepts}; threshold {spec.threshold}; action: {spec.action} "
              "(flagged images below are shown as the screen left them).", "",
              markdown_table(["prompt", "flagged", "rate (95 % CI)"], [
                  [p, f"{r['flagged']}/{r['images']}", with_ci(r["rate"], r["ci95"])]
                  for p, r in per_prompt.items()]), "",
              "## Text-side similarity (cosine, inverted model's text space)", "",
              markdown_table(["text"] + spec.concepts, [[row] + [table[row][c] for c in spec.concepts] for row in rows]),
              ""]
        for p, prompt in enumerate(spec.prompts):
            idx = [r.index for r in result.rows if r.prompt_index == p]
            write_grid(out / f"grid_{p:02d}.png", result.images[idx], len(idx))
            md += [f"## {prompt}", "", f"![{prompt}](grid_{p:02d}.png)", ""]
        (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    return report


def screen_table(report: dict[str, Any]) -> Table:
    table = Table(title="safety screen")
    for col in ("prompt", "flagged", "rate (95% CI)"):
        table.add_column(col)
    for p, r in report["flag_rates"].items():
        table.add_row(p, f"{r['flagged']}/{r['images']}", with_ci(r["rate"], r["ci95"]))
    return table
