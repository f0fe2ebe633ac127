"""``clipforge screen``: safety screening of inversions, and the paper's text-side analysis.

Benign prompts (and names) are inverted over N seeds with the ``safety_screen`` callback on: the
report gives each prompt's flag rate with a 95 % interval. The text-side table gives the cosine
similarity between the text embeddings of the prompts and words (names, controls) and the concept
prompts, in the inverted model's own text space.

When a concept is a marker the spec's reader reads (the default reader, the toy world's analytic
judge, reads the offline world's marker caption: its checkerboard drawn anywhere in the image, by
rule), each prompt's rate of images showing it is reported beside the learned screen's flag rate; so
is, where the reader measures it, the share of each image's brightness at the marker's fundamental
grating (how a robust model draws a checkerboard), present above ``grating_threshold``. The reader
reads the images as the screen left them, so use ``action: "flag"`` to read every image raw.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from rich.table import Table

from clipforge import (
    API_VERSION,
    Analysis,
    AnalysisRun,
    AnalysisSpec,
    Backbone,
    Callback,
    ComponentRef,
    Reader,
    ReaderChoice,
    Registry,
    choose_reader,
    default_registry,
    hookimpl,
    reader_field,
)
from clipforge.analysis import markdown_table, wilson_interval, with_ci, write_grid

CLIPFORGE_API = API_VERSION  # a built-in is written against the API of the clipforge it comes with


class ScreenSpec(AnalysisSpec):
    prompts: list[str] = Field(min_length=1, description="Prompts to invert and screen.")
    concepts: list[str] = Field(min_length=1, description="Concept prompts screened for.")
    references: list[str] = Field(default_factory=list, description="Benign descriptions (see safety_screen).")
    threshold: float = Field(0.0, description="Flag images whose score exceeds this (as in safety_screen).")
    action: Literal["blur", "withhold", "flag"] = Field("blur", description="What happens to a flagged image.")
    words: list[str] = Field(default_factory=list, description="Extra rows of the text-side table (names, controls).")
    grating_periods: tuple[float, float] | None = Field(
        None,
        description="Periods (px) of the marker's fundamental grating, for the reader's reading (default: the "
        "reader's; the toy world's: 6.5-9.5 px).",
    )
    grating_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="The marker's grating is read as drawn when its share of an image's brightness power exceeds "
        "this (default: the reader's; the toy world's was fixed on inversions of a prompt that never carries the "
        "marker).",
    )
    reader: ComponentRef | None = reader_field(
        description="The reader of a marker among the concepts (a component of kind 'reader'). Left out: the toy "
        "world's ('toyworld'), which reads its marker caption where it is a concept; a reader named here must "
        "read one of the concepts as a marker."
    )

    def marker(self, reader: Reader) -> str | None:
        """The first concept ``reader`` reads as a marker (None: none)."""
        names = set(reader.marker_names())
        return next((c for c in self.concepts if c in names), None)


def text_table(backbone: Backbone, rows: list[str], concepts: list[str]) -> torch.Tensor:
    with torch.no_grad():
        a = F.normalize(backbone.encode_text(rows).float(), dim=-1)
        b = F.normalize(backbone.encode_text(concepts).float(), dim=-1)
    return (a @ b.T).cpu()


def _rate(hits: int, images: int) -> dict[str, Any]:
    """How many of a prompt's images, as a rate with its 95 % interval (a report's row)."""
    return {"images": images, "rate": hits / images, "ci95": list(wilson_interval(hits, images))}


class Screen(Analysis):
    name = "screen"
    description = "safety screen of inversions, with flag rates and the text-side similarity table"
    Options = ScreenSpec

    reading: ReaderChoice | None = None  # chosen by check(), with the spec

    def check(self, registry: Any) -> None:
        """The reader, which must read a concept as a marker (the default one reads the world's, where it is one)."""
        spec = self.options

        def needs(reader: Reader) -> str | None:
            if spec.marker(reader) is not None:
                return None
            known = ", ".join(repr(m) for m in reader.marker_names()) or "none"
            return f"reads one of the concepts as a marker (it reads {known})"

        self.reading = choose_reader(registry, spec.reader, "screen", needs)

    def reader(self, run: AnalysisRun) -> Reader | None:
        """The reader chosen with the spec, built to read the run's images (chosen now if analyse() came unchecked)."""
        if self.reading is None:
            self.check(getattr(run, "registry", None) or default_registry())
        return self.reading.build(run)

    def progress_label(self) -> str:
        return f"screening {len(self.options.prompts)} prompt(s)"

    def callbacks(self, registry: Registry) -> list[Callback]:
        spec = self.options
        self.screen = registry.build(
            "callback",
            {
                "name": "safety_screen",
                "options": {
                    "concepts": spec.concepts,
                    "references": spec.references,
                    "threshold": spec.threshold,
                    "action": spec.action,
                    "judge": spec.judge.model_dump(),
                },
            },
        )
        return [self.screen]

    def analyse(self, run: AnalysisRun) -> dict[str, Any]:
        spec = self.options
        per_prompt = {}
        screened = self.screen.report()
        for prompt, r in screened["flag_rates"].items():
            per_prompt[prompt] = {**r, "ci95": list(wilson_interval(r["flagged"], r["images"]))}
        # the inverted model, its options already checked with the run spec
        inverted = run.specs["run"].components["backbones"][0].build(torch.device(run.result.device))
        analytic = grating = None
        periods, threshold = spec.grating_periods, spec.grating_threshold
        reader = self.reader(run)
        if reader is not None:  # a concept is a marker the reader reads (checked with the spec)
            defaults = reader.marker_grating()
            if defaults is not None:
                periods = periods if periods is not None else defaults[0]
                threshold = threshold if threshold is not None else defaults[1]
            readings = reader.read_markers(run.result.images, spec.marker(reader), periods)
            analytic = {}
            grating = {} if periods is not None and threshold is not None else None
            for p, prompt in enumerate(spec.prompts):
                mine = [r.index for r in run.result.rows if r.prompt_index == p]
                scores = [readings[i].score for i in mine]
                marked = sum(readings[i].present for i in mine)
                analytic[prompt] = {"marked": marked, **_rate(marked, len(mine)), "marker_scores": scores}
                if grating is not None and all(readings[i].grating_share is not None for i in mine):
                    drawn_shares = [round(readings[i].grating_share, 5) for i in mine]
                    drawn = sum(share > threshold for share in drawn_shares)
                    grating[prompt] = {"drawn": drawn, **_rate(drawn, len(mine)), "shares": drawn_shares}
                else:
                    grating = None
        rows = list(dict.fromkeys(spec.prompts + spec.words))
        sims = text_table(inverted, rows, spec.concepts)
        table = {row: dict(zip(spec.concepts, sims[i].tolist())) for i, row in enumerate(rows)}
        return {
            **({"reader": spec.reader.model_dump()} if spec.reader is not None else {}),
            "concepts": spec.concepts,
            "references": spec.references,
            "threshold": spec.threshold,
            "action": spec.action,
            "judge": spec.judge.model_dump(),
            "seeds": spec.seed_list(),
            "flag_rates": per_prompt,
            "images": screened["images"],
            "text_similarity": table,
            **({"analytic_marker": analytic} if analytic is not None else {}),
            **(
                {
                    "analytic_grating": grating,
                    "grating_periods": list(periods),
                    "grating_threshold": threshold,
                }
                if grating is not None
                else {}
            ),
        }

    def write_report(self, report: dict[str, Any], run: AnalysisRun, out: Path) -> None:
        spec, result = self.options, run.result
        per_prompt, table = report["flag_rates"], report["text_similarity"]
        md = [
            "# Safety screen",
            "",
            f"Concepts: {spec.concepts}; threshold {spec.threshold}; action: {spec.action} "
            "(flagged images below are shown as the screen left them).",
            "",
            markdown_table(
                ["prompt", "flagged", "rate (95 % CI)"],
                [[p, f"{r['flagged']}/{r['images']}", with_ci(r["rate"], r["ci95"])] for p, r in per_prompt.items()],
            ),
            "",
        ]
        choice = self.reading or ReaderChoice(label="the reader")
        if "analytic_marker" in report:
            md += [
                (
                    "The analytic judge: images in which the world's marker is drawn (read by rule"
                    if choice.toyworld
                    else f"{_capital(choice.label)}: images in which the marker is drawn (its reading"
                )
                + ("" if spec.action == "flag" else "; flagged images read as the screen left them")
                + "):",
                "",
                markdown_table(
                    ["prompt", "marker drawn", "rate (95 % CI)"],
                    [
                        [p, f"{r['marked']}/{r['images']}", with_ci(r["rate"], r["ci95"])]
                        for p, r in report["analytic_marker"].items()
                    ],
                ),
                "",
            ]
        if "analytic_grating" in report:
            md += [
                f"The marker's fundamental grating (periods {report['grating_periods'][0]}-"
                f"{report['grating_periods'][1]} px, any orientation) drawn: its share of the image's brightness "
                f"power above {report['grating_threshold']}:",
                "",
                markdown_table(
                    ["prompt", "grating drawn", "rate (95 % CI)", "median share"],
                    [
                        [
                            p,
                            f"{r['drawn']}/{r['images']}",
                            with_ci(r["rate"], r["ci95"]),
                            statistics.median(r["shares"]),
                        ]
                        for p, r in report["analytic_grating"].items()
                    ],
                ),
                "",
            ]
        md += [
            "## Text-side similarity (cosine, inverted model's text space)",
            "",
            markdown_table(["text"] + spec.concepts, [[row] + [table[row][c] for c in spec.concepts] for row in table]),
            "",
        ]
        for p, prompt in enumerate(spec.prompts):
            idx = [r.index for r in result.rows if r.prompt_index == p]
            write_grid(out / f"grid_{p:02d}.png", result.images[idx], len(idx))
            md += [f"## {prompt}", "", f"![{prompt}](grid_{p:02d}.png)", ""]
        (out / "report.md").write_text("\n".join(md), encoding="utf-8")

    def table(self, report: dict[str, Any]) -> Table:
        analytic, grating = report.get("analytic_marker"), report.get("analytic_grating")
        table = Table(title="safety screen")
        for col in (
            ("prompt", "flagged", "rate (95% CI)")
            + (("marker drawn (analytic)", "rate (95% CI)") if analytic else ())
            + (("grating drawn", "rate (95% CI)") if grating else ())
        ):
            table.add_column(col)
        for p, r in report["flag_rates"].items():
            cells = [f"{r['flagged']}/{r['images']}", with_ci(r["rate"], r["ci95"])]
            if analytic:
                a = analytic[p]
                cells += [f"{a['marked']}/{a['images']}", with_ci(a["rate"], a["ci95"])]
            if grating:
                g = grating[p]
                cells += [f"{g['drawn']}/{g['images']}", with_ci(g["rate"], g["ci95"])]
            table.add_row(p, *cells)
        return table


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


@hookimpl
def register_analyses(register):
    register(Screen)
