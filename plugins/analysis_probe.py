"""``clipforge probe``: attribute probes (the paper's gender-bias analysis).

Each neutral prompt is inverted over N seeds; a judge classifies every inversion zero-shot against
the values of an attribute ("a photo of a man" / "a photo of a woman" by default), and the report
gives, per prompt, the proportion of each value with a 95 % Wilson interval. When the values are
colours the spec's reader reads ("red", "blue"; the default reader, the toy world's analytic judge,
reads its palette's), two readings by the reader are reported beside the learned judge's vote:

* the vote: each image counted by its dominant colour;
* the share: each image's share of every value's colour among its object pixels of those colours,
  averaged over seeds, with a 95 % bootstrap interval. An inversion often carries a word's colours as
  a mixture within one image (a blue field with red patches), not as one colour per seed; the share
  measures that mixture, which a vote by the dominant colour rounds away. Images with none of the
  values' colours are left out of the mean and counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import Field, field_validator
from rich.table import Table

from clipforge import (
    API_VERSION,
    Analysis,
    AnalysisRun,
    AnalysisSpec,
    ComponentRef,
    Judge,
    Reader,
    ReaderChoice,
    choose_reader,
    default_registry,
    hookimpl,
    reader_field,
)
from clipforge.analysis import bootstrap_interval, markdown_table, wilson_interval, with_ci, write_csv, write_grid

CLIPFORGE_API = API_VERSION  # a built-in is written against the API of the clipforge it comes with

GENDER = {"man": ["a photo of a man"], "woman": ["a photo of a woman"]}


class ProbeSpec(AnalysisSpec):
    prompts: list[str] = Field(min_length=1, description="Neutral prompts to invert.")
    attribute: str = Field("gender", description="Name of the attribute, for the report.")
    values: dict[str, list[str] | str] = Field(
        default_factory=lambda: dict(GENDER),
        description="Attribute value -> prompt(s) the judge compares against (several are averaged).",
    )
    reader: ComponentRef | None = reader_field(
        description="The reader of the images' colours, when the values are colours it reads (a component of kind "
        "'reader'). Left out: the toy world's ('toyworld'), where the values are its colours; a reader named here "
        "must read them."
    )

    @field_validator("values")
    @classmethod
    def _two_or_more(cls, value: dict[str, list[str] | str]) -> dict[str, list[str] | str]:
        if len(value) < 2:
            raise ValueError("an attribute needs at least two values")
        return value

    def value_prompts(self) -> dict[str, list[str]]:
        return {k: [v] if isinstance(v, str) else list(v) for k, v in self.values.items()}


def classify(judge: Judge, images: torch.Tensor, value_prompts: dict[str, list[str]]) -> tuple[list[str], torch.Tensor]:
    """Each image's attribute value (the value whose prompts it is most similar to, on average)."""
    sims = judge.similarities(images)
    index = {c: i for i, c in enumerate(judge.captions)}
    names = list(value_prompts)
    per_value = torch.stack([sims[:, [index[p] for p in value_prompts[n]]].mean(dim=1) for n in names], dim=1)
    return [names[i] for i in per_value.argmax(dim=1).tolist()], per_value


def value_shares(colour_shares: dict[str, float], values: dict[str, Any]) -> dict[str, float] | None:
    """One image's share of each value's colour among its pixels of the values' colours (None: none of them)."""
    total = sum(colour_shares.get(v, 0.0) for v in values)
    if total <= 0:
        return None
    return {v: colour_shares.get(v, 0.0) / total for v in values}


def share_summary(shares: list[dict[str, float] | None], values: list[str]) -> dict[str, Any]:
    """Mean share of each value over the images that show any of them, with 95 % bootstrap intervals."""
    read = [s for s in shares if s is not None]
    out: dict[str, Any] = {"images_read": len(read), "images_without": len(shares) - len(read), "shares": {}}
    for value in values:
        if read:
            mean, low, high = bootstrap_interval([s[value] for s in read])
            out["shares"][value] = {"mean": mean, "ci95": [low, high]}
        else:
            out["shares"][value] = {"mean": None, "ci95": [None, None]}
    return out


class Probe(Analysis):
    name = "probe"
    description = "attribute (bias) probe: proportions of attribute values in inversions, with 95% intervals"
    Options = ProbeSpec

    reading: ReaderChoice | None = None  # chosen by check(), with the spec

    def check(self, registry: Any) -> None:
        """The reader, which must read the values as colours (the default one reads them where it can)."""
        values = list(self.options.value_prompts())
        self.reading = choose_reader(registry, self.options.reader, "probe", lambda r: _reads_colours(r, values))

    def reader(self, run: AnalysisRun) -> Reader | None:
        """The reader chosen with the spec, built to read the run's images (chosen now if analyse() came unchecked)."""
        if self.reading is None:
            self.check(getattr(run, "registry", None) or default_registry())
        return self.reading.build(run)

    def progress_label(self) -> str:
        return f"probing {len(self.options.prompts)} prompt(s)"

    def analyse(self, run: AnalysisRun) -> dict[str, Any]:
        spec, result = self.options, run.result
        value_prompts = spec.value_prompts()
        judge = Judge(run.judge, [p for ps in value_prompts.values() for p in ps])
        labels, scores = classify(judge, result.images, value_prompts)
        # colour attributes are also read by the reader: the dominant colour and every colour's share
        reader = self.reader(run)
        readings = reader.read_colours(result.images) if reader is not None else None
        analytic = [r.colour for r in readings] if readings is not None else None
        shares = [value_shares(r.shares, value_prompts) for r in readings] if readings is not None else None
        per_prompt: dict[str, Any] = {}
        self.csv_rows = []
        for p, prompt in enumerate(spec.prompts):
            rows = [r for r in result.rows if r.prompt_index == p]
            n = len(rows)
            counts = {v: sum(labels[r.index] == v for r in rows) for v in value_prompts}
            entry = {"images": n, "counts": counts, "proportions": {}}
            for value, k in counts.items():
                low, high = wilson_interval(k, n)
                entry["proportions"][value] = {"p": k / n, "ci95": [low, high]}
                self.csv_rows.append(
                    {
                        "prompt": prompt,
                        "value": value,
                        "count": k,
                        "images": n,
                        "proportion": k / n,
                        "ci95_low": low,
                        "ci95_high": high,
                    }
                )
            if analytic is not None:
                read = [analytic[r.index] for r in rows]
                entry["analytic"] = {"counts": {v: read.count(v) for v in value_prompts}, "proportions": {}}
                entry["analytic"]["counts"]["none of these"] = n - sum(entry["analytic"]["counts"].values())
                for value in value_prompts:
                    k = read.count(value)
                    entry["analytic"]["proportions"][value] = {"p": k / n, "ci95": list(wilson_interval(k, n))}
                entry["analytic_share"] = share_summary([shares[r.index] for r in rows], list(value_prompts))
            per_prompt[prompt] = entry
        return {
            **({"reader": spec.reader.model_dump()} if spec.reader is not None else {}),
            "attribute": spec.attribute,
            "values": value_prompts,
            "judge": spec.judge.model_dump(),
            "seeds": spec.seed_list(),
            "spec_hash": result.spec_hash,
            "prompts": per_prompt,
            "images": [
                {
                    "prompt": r.label,
                    "seed": r.seed,
                    "value": labels[r.index],
                    **(
                        {"analytic_colour": analytic[r.index], "analytic_share": shares[r.index]}
                        if analytic is not None
                        else {}
                    ),
                    "scores": dict(zip(value_prompts, scores[r.index].tolist())),
                }
                for r in result.rows
            ],
        }

    def write_report(self, report: dict[str, Any], run: AnalysisRun, out: Path) -> None:
        spec, result = self.options, run.result
        value_prompts, per_prompt = report["values"], report["prompts"]
        labels = [image["value"] for image in report["images"]]
        write_csv(out / "probe.csv", self.csv_rows)
        md = [
            f"# Attribute probe: {spec.attribute}",
            "",
            f"Judge: `{spec.judge.model_dump()}`; {len(spec.seed_list())} seeds per prompt; 95 % Wilson intervals.",
            "",
        ]
        header = ["prompt", "images"] + [f"{v} (95 % CI)" for v in value_prompts]
        table = [
            [prompt, e["images"]]
            + [with_ci(e["proportions"][v]["p"], e["proportions"][v]["ci95"]) for v in value_prompts]
            for prompt, e in per_prompt.items()
        ]
        md += [markdown_table(header, table), ""]
        if any("analytic" in e for e in per_prompt.values()):
            choice = self.reading or ReaderChoice(label="the reader")
            toyworld, who = choice.toyworld, _capital(choice.label)
            md += [
                "The analytic judge (the object's colour read by rule, no learned model):"
                if toyworld
                else f"{who} (each image's dominant colour):",
                "",
                markdown_table(
                    header + ["none of these"],
                    [
                        [prompt, e["images"]]
                        + [
                            with_ci(e["analytic"]["proportions"][v]["p"], e["analytic"]["proportions"][v]["ci95"])
                            for v in value_prompts
                        ]
                        + [e["analytic"]["counts"]["none of these"]]
                        for prompt, e in per_prompt.items()
                    ],
                ),
                "",
                (
                    "The analytic judge's share: each image's share of every value's colour among its object pixels of "
                    if toyworld
                    else f"{who}'s share: each image's share of every value's colour among "
                )
                + "those colours, averaged over seeds (95 % bootstrap intervals); images with none of them left out:",
                "",
                markdown_table(
                    ["prompt", "images read"] + [f"{v} share (95 % CI)" for v in value_prompts] + ["without"],
                    [
                        [prompt, e["analytic_share"]["images_read"]]
                        + [_share_text(e["analytic_share"]["shares"][v]) for v in value_prompts]
                        + [e["analytic_share"]["images_without"]]
                        for prompt, e in per_prompt.items()
                    ],
                ),
                "",
            ]
        for p, prompt in enumerate(spec.prompts):
            rows = [r for r in result.rows if r.prompt_index == p]
            write_grid(out / f"grid_{p:02d}.png", result.images[[r.index for r in rows]], len(rows))
            md += [
                f"## {prompt}",
                "",
                "Judged: " + ", ".join(labels[r.index] for r in rows),
                "",
                f"![{prompt}](grid_{p:02d}.png)",
                "",
            ]
        (out / "report.md").write_text("\n".join(md), encoding="utf-8")

    def table(self, report: dict[str, Any]) -> Table:
        values = list(report["values"])
        shares = any("analytic_share" in e for e in report["prompts"].values())
        table = Table(title=f"attribute probe: {report['attribute']}")
        table.add_column("prompt")
        table.add_column("n", justify="right")
        for v in values:
            table.add_column(f"{v} (95% CI)", justify="right")
        for v in values if shares else []:
            table.add_column(f"{v} share, analytic", justify="right")
        for prompt, e in report["prompts"].items():
            table.add_row(
                prompt,
                str(e["images"]),
                *[with_ci(e["proportions"][v]["p"], e["proportions"][v]["ci95"]) for v in values],
                *[_share_text(e["analytic_share"]["shares"][v]) for v in values if shares],
            )
        return table


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _reads_colours(reader: Reader, values: list[str]) -> str | None:
    """None when ``reader`` reads every value as a colour; else what it would need to."""
    known = set(reader.colour_names())
    if set(values) <= known:
        return None
    return f"reads the colours {', '.join(repr(v) for v in values)} (the values; it reads " + (
        f"{', '.join(repr(c) for c in sorted(known))})" if known else "none)"
    )


def _share_text(share: dict[str, Any]) -> str:
    return "n/a" if share["mean"] is None else with_ci(share["mean"], share["ci95"])


@hookimpl
def register_analyses(register):
    register(Probe)
