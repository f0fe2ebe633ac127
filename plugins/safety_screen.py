"""A safety screen for inversions, like the concept-embedding checkers of text-to-image pipelines.

Every image is scored against a list of concept prompts by a judge backbone (by default the run's
first backbone): its score is the best concept similarity, minus the best similarity to the
``references`` (benign descriptions) when some are given. An image whose score exceeds the
threshold is flagged, and by default it is blurred before anything shows it (snapshots, final
files, the result returned to the caller); ``withhold`` drops it entirely; ``flag`` only reports,
keeping the raw image, and must be asked for. Thresholds depend on the judge: calibrate them.

The report ``safety.json`` gives every image's score and flag and the flag rate of each prompt.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from clipforge import (
    API_VERSION,
    Callback,
    Judge,
    Options,
    OutputName,
    RunInfo,
    Screened,
    component_option,
    hookimpl,
    load_backbone,
)

CLIPFORGE_API = API_VERSION  # a built-in is written against the API of the clipforge it comes with

DEFAULT_CONCEPTS = ["nudity", "a naked person", "sexual content", "pornography", "graphic violence", "gore"]


class SafetyOptions(Options):
    concepts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CONCEPTS), min_length=1, description="Concept prompts to screen for."
    )
    references: list[str] = Field(
        default_factory=list,
        description="Benign descriptions; the score is the concept similarity minus the best reference similarity.",
    )
    threshold: float = Field(0.0, description="Flag images whose score exceeds this.")
    action: Literal["blur", "withhold", "flag"] = Field(
        "blur", description="'blur' or 'withhold' flagged images; 'flag' keeps them raw and only reports."
    )
    judge: dict[str, Any] | None = component_option(
        "backbone",
        None,
        description="Backbone that scores the images (name and options); default: the run's first backbone.",
    )
    blur_sigma: float = Field(0.08, gt=0, description="Blur strength, as a fraction of the image size.")
    report: OutputName = Field("safety.json", description="Report file name in the run directory.")


def blur(images: torch.Tensor, sigma_fraction: float) -> torch.Tensor:
    """A strong separable Gaussian blur, scaled to the image size."""
    sigma = max(1.0, sigma_fraction * images.shape[-1])
    radius = int(3 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-x * x / (2 * sigma * sigma))
    kernel = (kernel / kernel.sum()).to(images.device)
    c = images.shape[1]
    out = F.pad(images, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


class SafetyScreen(Callback):
    name = "safety_screen"
    Options = SafetyOptions

    def __init__(self, options: SafetyOptions) -> None:
        super().__init__(options)
        self.judge: Judge | None = None
        self.records: list[dict[str, Any]] = []

    def on_run_start(self, run: RunInfo) -> None:
        ref = self.options.judge or run.spec.backbones[0].model_dump()
        self.judge = Judge(load_backbone(ref, run.device), self.options.concepts + self.options.references)

    def scores(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each image's score and its closest concept's index."""
        assert self.judge is not None, "the screen scores images only during a run"
        sims = self.judge.similarities(images)
        n = len(self.options.concepts)
        best, which = sims[:, :n].max(dim=1)
        if self.options.references:
            best = best - sims[:, n:].max(dim=1).values
        return best, which

    def screen(self, run: RunInfo, images: torch.Tensor, step: int, final: bool) -> Screened | None:
        if self.judge is None:
            return None
        score, which = self.scores(images)
        # fail closed: an image the judge cannot score (a NaN score) is flagged and withheld
        unscored = ~torch.isfinite(score)
        flagged = (score > self.options.threshold) | unscored
        if final:
            self.records = [
                {
                    "slug": row.slug,
                    "prompt": row.label,
                    "seed": row.seed,
                    "score": float(score[row.index]) if not unscored[row.index] else None,
                    "concept": self.options.concepts[int(which[row.index])],
                    "flagged": bool(flagged[row.index]),
                    **({"unscored": True} if unscored[row.index] else {}),
                }
                for row in run.rows
            ]
        if not flagged.any() or (self.options.action == "flag" and not unscored.any()):
            return None
        out = images.clone()
        if self.options.action == "blur":
            out[flagged] = blur(images[flagged], self.options.blur_sigma).clamp(0, 1)
            return Screened(out, unscored)
        return Screened(out, flagged if self.options.action == "withhold" else unscored)

    def flag_rates(self) -> dict[str, dict[str, Any]]:
        rates: dict[str, dict[str, Any]] = {}
        for r in self.records:
            entry = rates.setdefault(r["prompt"], {"flagged": 0, "images": 0})
            entry["flagged"] += r["flagged"]
            entry["images"] += 1
        for entry in rates.values():
            entry["rate"] = entry["flagged"] / entry["images"]
        return rates

    def report(self) -> dict[str, Any]:
        """The screen's result, as written to its report file: its settings, every image's record
        (prompt, seed, score, flagged) and each prompt's flag rate. What an analysis reads."""
        return {
            "concepts": self.options.concepts,
            "references": self.options.references,
            "threshold": self.options.threshold,
            "action": self.options.action,
            "images": [dict(r) for r in self.records],
            "flag_rates": self.flag_rates(),
        }

    def on_run_end(self, run: RunInfo, result: Any) -> None:
        if run.out_dir is None or not self.records:
            return
        text = json.dumps(self.report(), indent=2) + "\n"
        run.output_path(self.options.report).write_text(text, encoding="utf-8")


@hookimpl
def register_callbacks(register):
    register(SafetyScreen)
