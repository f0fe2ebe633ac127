"""Concept blending: do inversions of a combination of two prompts show both concepts?

For each pair (A, B), A alone, B alone and their blend are inverted over the same seeds. A concept
is "present" in an image when its caption is among the judge's top-k captions (k = 2 by default);
the report compares how often both are present for each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from rich.table import Table

from clipforge.analyses.common import (
    AnalysisSpec, SharedProgress, markdown_table, prepare, run_inversions, wilson_interval, write_grid,
    write_json,
)
from clipforge.analyses.compare import candidate_captions
from clipforge.judge import Judge, load_backbone
from clipforge.registry import Registry, default_registry
from clipforge.spec import RunSpec


class BlendSpec(AnalysisSpec):
    pairs: list[tuple[str, str]] = Field(min_length=1, description="Concept pairs (A, B).")
    combine: Literal["embedding", "losses", "text"] = Field(
        "embedding", description="How the blend is made: the mean embedding, the sum of both losses, or the "
        "text 'A and B'.")
    captions: list[str] | str | None = Field(None, description="The judge's candidate captions ('toyworld' for the "
                                             "offline world's); the concepts are added.")
    top_k: int = Field(2, ge=1, description="A concept is present when it is among the judge's top k captions.")

    def prompts(self) -> list[Any]:
        """A alone, B alone and their blend, for every pair."""
        out: list[Any] = []
        for a, b in self.pairs:
            out += [a, b, _blend_prompt(a, b, self.combine)]
        return out

    def inversion_specs(self) -> dict[str, RunSpec]:
        return {"run": self.run_spec(self.prompts())}


def _blend_prompt(a: str, b: str, combine: str) -> Any:
    if combine == "text":
        return {"text": f"{a} and {b}", "label": f"{a} + {b}"}
    return {"terms": [a, b], "combine": "losses" if combine == "losses" else "embedding", "label": f"{a} + {b}"}


def run_blend(spec: BlendSpec, out_dir: str | Path | None, registry: Registry | None = None,
              show_progress: bool = True) -> dict[str, Any]:
    registry = registry or default_registry()
    spec.check(registry)
    run_spec = spec.inversion_specs()["run"]
    out = prepare(out_dir) if out_dir is not None else None
    with SharedProgress(run_spec.steps, f"blending {len(spec.pairs)} pair(s)", show_progress) as bar:
        result = run_inversions(run_spec, registry, bar)
    concepts = [c for pair in spec.pairs for c in pair]
    judge = Judge(load_backbone(spec.judge, result.device, registry), candidate_captions(spec.captions, concepts))
    sims = judge.similarities(result.images)
    top = sims.topk(spec.top_k, dim=1).indices
    index = {c: i for i, c in enumerate(judge.captions)}

    def present(row_index: int, concept: str) -> bool:
        return index[concept] in top[row_index].tolist()

    pairs_out, totals = [], {"a": [0, 0], "b": [0, 0], "blend": [0, 0]}
    for p, (a, b) in enumerate(spec.pairs):
        entry: dict[str, Any] = {"a": a, "b": b}
        for role, offset in (("a", 0), ("b", 1), ("blend", 2)):
            rows = [r for r in result.rows if r.prompt_index == 3 * p + offset]
            both = sum(present(r.index, a) and present(r.index, b) for r in rows)
            entry[role] = {"both_present": both, "images": len(rows), "rate": both / len(rows),
                           "a_present": sum(present(r.index, a) for r in rows) / len(rows),
                           "b_present": sum(present(r.index, b) for r in rows) / len(rows)}
            totals[role][0] += both
            totals[role][1] += len(rows)
        pairs_out.append(entry)
    summary = {role: {"both_present": k, "images": n, "rate": k / n, "ci95": list(wilson_interval(k, n))}
               for role, (k, n) in totals.items()}
    report = {"analysis": "blend", "combine": spec.combine, "top_k": spec.top_k, "judge": spec.judge.model_dump(),
              "seeds": spec.seed_list(), "pairs": pairs_out, "summary": summary}
    if out is not None:
        write_json(out / "report.json", report)
        md = ["# Concept blending", "",
              f"A concept is present when it is among the judge's top {spec.top_k} captions; blends by '{spec.combine}'.", "",
              markdown_table(["images", "both present (rate, 95 % CI)"], [
                  [role, f"{s['rate']:.2f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}] of {s['images']}"]
                  for role, s in summary.items()]), ""]
        for p, (a, b) in enumerate(spec.pairs):
            rows = [r.index for r in result.rows if r.prompt_index in (3 * p, 3 * p + 1, 3 * p + 2)]
            write_grid(out / f"pair_{p:02d}.png", result.images[rows], len(spec.seed_list()))
            md += [f"## {a} + {b}", "", "Rows: A alone, B alone, blend.", "", f"![pair](pair_{p:02d}.png)", ""]
        (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    return report


def blend_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"concept blending (top-{report['top_k']}, {report['combine']})")
    for col in ("images of", "both concepts present", "95% CI"):
        table.add_column(col)
    for role, s in report["summary"].items():
        table.add_row(role, f"{s['both_present']}/{s['images']} ({s['rate']:.2f})", f"[{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]")
    return table
