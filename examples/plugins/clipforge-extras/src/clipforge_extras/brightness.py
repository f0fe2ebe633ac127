"""``clipforge brightness``: how bright and how colourful are the inversions of each prompt?

A small analysis, to show how one is written: its spec model adds ``prompts`` to clipforge's
``AnalysisSpec``; clipforge runs the inversions (prompts x seeds) and builds the judge; ``analyse``
measures every image and asks the judge how close each one is to its prompt; ``write_report`` writes
``report.md`` with one image grid per prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import Field

import clipforge
from clipforge.analysis import markdown_table, mean_interval, with_ci, write_grid


class BrightnessSpec(clipforge.AnalysisSpec):
    prompts: list[str] = Field(min_length=1, description="Prompts to invert.")


def brightness(images: torch.Tensor) -> torch.Tensor:
    """Mean value of each (3, H, W) image in [0, 1]: (N,)."""
    return images.mean(dim=(1, 2, 3))


def chroma(images: torch.Tensor) -> torch.Tensor:
    """Mean chroma (largest channel minus smallest, per pixel) of each image: (N,)."""
    return (images.amax(dim=1) - images.amin(dim=1)).mean(dim=(1, 2))


class Brightness(clipforge.Analysis):
    name = "brightness"
    description = "mean brightness and colourfulness of inversions, per prompt, with the judge's similarity"
    Options = BrightnessSpec

    def progress_label(self) -> str:
        return f"brightness of {len(self.options.prompts)} prompt(s)"

    def analyse(self, run: clipforge.AnalysisRun) -> dict[str, Any]:
        result = run.result
        judge = clipforge.Judge(run.judge, self.options.prompts)
        verdicts = judge.judge(result.images, [self.options.prompts[r.prompt_index] for r in result.rows])
        value, colour = brightness(result.images).tolist(), chroma(result.images).tolist()
        prompts = {}
        for p, prompt in enumerate(self.options.prompts):
            rows = [r.index for r in result.rows if r.prompt_index == p]
            prompts[prompt] = {
                "images": len(rows),
                "brightness": mean_interval([value[i] for i in rows]),
                "chroma": mean_interval([colour[i] for i in rows]),
                "judge_similarity": sum(verdicts.similarity[i] for i in rows) / len(rows),
            }
        return {"judge": self.options.judge.model_dump(), "seeds": self.options.seed_list(), "prompts": prompts}

    def write_report(self, report: dict[str, Any], run: clipforge.AnalysisRun, out: Path) -> None:
        result = run.result
        rows = [
            [
                prompt,
                e["images"],
                with_ci(e["brightness"][0], e["brightness"][1:]),
                with_ci(e["chroma"][0], e["chroma"][1:]),
                e["judge_similarity"],
            ]
            for prompt, e in report["prompts"].items()
        ]
        md = [
            "# Brightness of inversions",
            "",
            "Means with 95 % intervals over the seeds.",
            "",
            markdown_table(["prompt", "images", "brightness", "chroma", "judge similarity"], rows),
            "",
        ]
        for p, prompt in enumerate(report["prompts"]):
            index = [r.index for r in result.rows if r.prompt_index == p]
            write_grid(out / f"grid_{p:02d}.png", result.images[index], len(index))
            md += [f"## {prompt}", "", f"![{prompt}](grid_{p:02d}.png)", ""]
        (out / "report.md").write_text("\n".join(md), encoding="utf-8")

    def table(self, report: dict[str, Any]) -> str:
        return "\n".join(
            f"{prompt}: brightness {e['brightness'][0]:.3f}, chroma {e['chroma'][0]:.3f}"
            for prompt, e in report["prompts"].items()
        )
