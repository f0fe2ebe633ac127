"""``clipforge blend``: concept blending. Do inversions of a combination of two prompts show both concepts?

For each pair (A, B), A alone, B alone and their blend are inverted over the same seeds, and the
report compares how often the judge finds both concepts in the images of each. A concept is
"present" in an image either when its caption is among the judge's top-k candidate captions (the
default, k = 2), or, when ``controls`` are given, when the judge finds the image closer to the
concept than to every control caption: captions of things in neither prompt. The first asks for
the exact concept; the second asks whether the image shows the concept rather than something else,
which also counts partial renderings (the right colour but not the right shape, say).

When the spec's reader reads every concept, it reads presence too, from the objects it finds in each
image (``Reader.concepts_present``). The default reader, the toy world's analytic judge, reads the
offline world's single-object captions: a concept is present when some object has its colour and its
shape, or a shape the judge cannot name. One object can then never count for two concepts, which a
presence rule against control captions allows (any red image is closer to "a blue square" than to
green, yellow, magenta and cyan controls). ``controls: "reader"`` (``"toyworld"``, its older name)
asks the reader for each pair's control captions (the toy world's: its captions that share no colour
and no shape with the pair).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator
from rich.table import Table

from clipforge import (
    API_VERSION,
    Analysis,
    AnalysisRun,
    AnalysisSpec,
    Backbone,
    ComponentRef,
    InversionResult,
    Judge,
    Reader,
    ReaderChoice,
    RunSpec,
    SpecError,
    choose_reader,
    default_registry,
    hookimpl,
    reader_field,
)
from clipforge.analysis import candidate_captions, markdown_table, wilson_interval, with_ci, write_grid

#: the values of ``controls`` that ask the reader for each pair's controls ("toyworld": the older name, which
#: is still read as "reader" and warned of when a spec is read; it goes in clipforge 0.3)
READER_CONTROLS = ("reader",)

CLIPFORGE_API = API_VERSION  # a built-in is written against the API of the clipforge it comes with


class BlendSpec(AnalysisSpec):
    pairs: list[tuple[str, str]] = Field(min_length=1, description="Concept pairs (A, B).")
    combine: Literal["embedding", "losses", "text"] = Field(
        "embedding",
        description="How the blend is made: the mean embedding, the sum of both losses, or the text 'A and B'.",
    )
    captions: list[str] | Literal["world", "toyworld"] | None = Field(
        None,
        description="The judge's candidate captions, or 'world': those of the world the judge's model was trained "
        "on (the offline models'; 'toyworld' is the older name); the concepts are added.",
    )
    top_k: int = Field(2, ge=1, description="A concept is present when it is among the judge's top k captions.")
    controls: list[str] | Literal["reader", "toyworld"] | None = Field(
        None,
        description="If set, a concept is present when the judge finds the image closer to it than to every "
        "control caption (ignoring captions and top_k); 'reader' ('toyworld' is the older name): per pair, the "
        "reader's control captions (the toy world's: its captions in the concepts' template that share no colour "
        "and no shape with either concept, on their background, if stated).",
    )
    reader: ComponentRef | None = reader_field(
        description="The reader of the concepts' presence (and of 'reader' controls): a component of kind 'reader'. "
        "Left out: the toy world's ('toyworld'), which reads the offline world's single-object captions where every "
        "concept is one; a reader named here must read every concept."
    )

    @field_validator("controls", mode="before")
    @classmethod
    def _controls_old_name(cls, value: Any) -> Any:
        """``"toyworld"``, the older name of ``"reader"``: read as ``"reader"``, and warned of."""
        if value == "toyworld":
            # clipforge.compat's wording; a built-in imports only public names, so it warns itself
            warnings.warn("blend's controls: 'toyworld' goes in 0.3: write 'reader'", DeprecationWarning, stacklevel=3)
            return "reader"
        return value

    @model_validator(mode="after")
    def _controls_fit(self) -> BlendSpec:
        concepts = {c for pair in self.pairs for c in pair}
        if isinstance(self.controls, list):
            if not self.controls:
                raise ValueError("controls: give at least one control caption, or leave it out")
            clash = [c for c in self.controls if c in concepts]
            if clash:
                raise ValueError(f"controls: {clash[0]!r} is also a concept of a pair")
        return self

    def pair_controls(self, a: str, b: str, reader: Reader | None = None) -> list[str]:
        """The pair's control captions: the spec's list, or ``reader``'s for ``"reader"`` controls."""
        if self.controls in READER_CONTROLS:
            if reader is None:
                raise ValueError(f"controls {self.controls!r}: the reader gives them, and there is none")
            return reader.control_captions(a, b)
        return list(self.controls or [])

    def presence_rule(self) -> str:
        if self.controls is None:
            return f"its caption is among the judge's top {self.top_k} captions"
        return "the judge finds the image closer to it than to every control caption" + (
            " (the reader's control captions for the pair)" if self.controls == "reader" else ""
        )

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


def present_against_controls(sims: torch.Tensor, concept: int, controls: list[int]) -> torch.Tensor:
    """(N,) bool from (N, C) similarities: is each image closer to caption ``concept`` than to every
    caption in ``controls``? (A tie is not presence.)"""
    return sims[:, concept] > sims[:, controls].max(dim=1).values


class Blend(Analysis):
    name = "blend"
    description = "do inversions of combined prompts show both concepts?"
    Options = BlendSpec

    reading: ReaderChoice | None = None  # chosen by check(), with the spec

    def check(self, registry: Any) -> None:
        """The reader: one named must read every concept; with 'reader' controls, one must give each pair's."""
        spec = self.options
        concepts = list(dict.fromkeys(c for pair in spec.pairs for c in pair))
        controls = spec.controls in READER_CONTROLS
        problems: list[tuple[str, str]] = []

        def needs(reader: Reader) -> str | None:
            if controls:
                for i, (a, b) in enumerate(spec.pairs):
                    try:
                        reader.control_captions(a, b)
                    except ValueError as exc:
                        problems.append((f"pairs[{i}]", f"controls {spec.controls!r}: {exc}"))
                if problems:
                    return None  # said at each pair, below
                if spec.reader is None:
                    return None  # the default reader reads presence where it reads the concepts
            return _reads_concepts(reader, concepts)

        self.reading = choose_reader(registry, spec.reader, "blend", needs, required=controls)
        if problems:
            raise SpecError(problems)

    def reader(self, run: AnalysisRun) -> Reader | None:
        """The reader chosen with the spec, built to read the run's images (chosen now if analyse() came unchecked)."""
        if self.reading is None:
            self.check(getattr(run, "registry", None) or default_registry())
        return self.reading.build(run)

    def progress_label(self) -> str:
        return f"blending {len(self.options.pairs)} pair(s)"

    def analyse(self, run: AnalysisRun) -> dict[str, Any]:
        return blend_report(self.options, run.result, run.judge, self.reader(run))

    def write_report(self, report: dict[str, Any], run: AnalysisRun, out: Path) -> None:
        spec, result, pairs_out, summary = self.options, run.result, report["pairs"], report["summary"]
        md = [
            "# Concept blending",
            "",
            f"A concept is present when {spec.presence_rule()}; blends by '{spec.combine}'.",
            "",
            markdown_table(
                ["images", "both present (rate, 95 % CI)"],
                [[role, f"{with_ci(s['rate'], s['ci95'])} of {s['images']}"] for role, s in summary.items()],
            ),
            "",
        ]
        if "analytic_summary" in report:
            choice = self.reading or ReaderChoice(label="the reader")
            md += [
                "The analytic judge: a concept is present when an object of its colour is found whose shape is "
                "the concept's or cannot be named (one object never counts for two concepts):"
                if choice.toyworld
                else f"{choice.label[:1].upper()}{choice.label[1:]}: which concepts it finds in the images:",
                "",
                markdown_table(
                    ["images", "both present (rate, 95 % CI)"],
                    [
                        [role, f"{with_ci(s['rate'], s['ci95'])} of {s['images']}"]
                        for role, s in report["analytic_summary"].items()
                    ],
                ),
                "",
            ]
        for p, (a, b) in enumerate(spec.pairs):
            rows = [r.index for r in result.rows if r.prompt_index in (3 * p, 3 * p + 1, 3 * p + 2)]
            write_grid(out / f"pair_{p:02d}.png", result.images[rows], len(spec.seed_list()))
            entry = pairs_out[p]
            md += [
                f"## {a} + {b}",
                "",
                markdown_table(
                    ["images", "A present", "B present", "both present"]
                    + (["analytic: A / B / both"] if "analytic" in entry["a"] else []),
                    [
                        [
                            role,
                            f"{entry[role]['a_present']:.2f}",
                            f"{entry[role]['b_present']:.2f}",
                            f"{entry[role]['both_present']}/{entry[role]['images']}",
                        ]
                        + (
                            [_analytic_cell(entry[role]["analytic"], entry[role]["images"])]
                            if "analytic" in entry[role]
                            else []
                        )
                        for role in ("a", "b", "blend")
                    ],
                ),
                "",
            ]
            if "controls" in entry:
                md += [f"Controls: {', '.join(entry['controls'])}.", ""]
            md += ["Rows: A alone, B alone, blend.", "", f"![pair](pair_{p:02d}.png)", ""]
        (out / "report.md").write_text("\n".join(md), encoding="utf-8")

    def table(self, report: dict[str, Any]) -> Table:
        return blend_table(report)


def blend_report(
    spec: BlendSpec, result: InversionResult, judge_backbone: Backbone, reader: Reader | None = None
) -> dict[str, Any]:
    """Which concepts the judge finds in the images of A alone, B alone and each blend; and, where
    ``reader`` reads every concept, which ones it finds."""
    concepts = [c for pair in spec.pairs for c in pair]
    if spec.controls is None:
        captions = candidate_captions(spec.captions, concepts, judge_backbone)
    else:
        captions = list(dict.fromkeys(concepts + [c for a, b in spec.pairs for c in spec.pair_controls(a, b, reader)]))
    judge = Judge(judge_backbone, captions)
    sims = judge.similarities(result.images)
    index = {c: i for i, c in enumerate(judge.captions)}
    if spec.controls is None:
        top = sims.topk(min(spec.top_k, sims.shape[1]), dim=1).indices
        in_top = torch.zeros_like(sims, dtype=torch.bool).scatter_(1, top, True)

    analytic = None
    if reader is not None and _reads_concepts(reader, concepts) is None:
        found = reader.concepts_present(result.images, list(dict.fromkeys(concepts)))
        analytic = {c: torch.tensor(found[c], dtype=torch.bool) for c in dict.fromkeys(concepts)}
    pairs_out, totals = [], {"a": [0, 0], "b": [0, 0], "blend": [0, 0]}
    analytic_totals = {"a": [0, 0], "b": [0, 0], "blend": [0, 0]}
    for p, (a, b) in enumerate(spec.pairs):
        # "a", "b" and "blend" below are the images of A alone, B alone and the blend; the concepts
        # themselves are named apart, so the report says which pair an entry is
        entry: dict[str, Any] = {"concepts": [a, b]}
        if spec.controls is None:
            present = {c: in_top[:, index[c]] for c in (a, b)}  # (N,) bool per concept
        else:
            entry["controls"] = spec.pair_controls(a, b, reader)
            controls = [index[c] for c in entry["controls"]]
            present = {c: present_against_controls(sims, index[c], controls) for c in (a, b)}
        for role, offset in (("a", 0), ("b", 1), ("blend", 2)):
            rows = [r.index for r in result.rows if r.prompt_index == 3 * p + offset]
            has_a, has_b = present[a][rows], present[b][rows]
            both = int((has_a & has_b).sum())
            entry[role] = {
                "both_present": both,
                "images": len(rows),
                "rate": both / len(rows),
                "a_present": int(has_a.sum()) / len(rows),
                "b_present": int(has_b.sum()) / len(rows),
            }
            totals[role][0] += both
            totals[role][1] += len(rows)
            if analytic is not None:
                has_a, has_b = analytic[a][rows], analytic[b][rows]
                both = int((has_a & has_b).sum())
                entry[role]["analytic"] = {
                    "both_present": both,
                    "a_present": int(has_a.sum()) / len(rows),
                    "b_present": int(has_b.sum()) / len(rows),
                }
                analytic_totals[role][0] += both
                analytic_totals[role][1] += len(rows)
        pairs_out.append(entry)
    summary = _summary(totals)
    return {
        **({"reader": spec.reader.model_dump()} if spec.reader is not None else {}),
        "combine": spec.combine,
        "presence": spec.presence_rule(),
        "top_k": spec.top_k if spec.controls is None else None,
        "judge": spec.judge.model_dump(),
        "seeds": spec.seed_list(),
        "pairs": pairs_out,
        "summary": summary,
        **({"analytic_summary": _summary(analytic_totals)} if analytic is not None else {}),
    }


def _reads_concepts(reader: Reader, concepts: list[str]) -> str | None:
    """None when ``reader`` reads every concept's presence; else what it would need to."""
    unread = [c for c in concepts if not reader.reads_concept(c)]
    return f"reads every concept, {unread[0]!r} too" if unread else None


def _summary(totals: dict[str, list[int]]) -> dict[str, Any]:
    return {
        role: {"both_present": k, "images": n, "rate": k / n, "ci95": list(wilson_interval(k, n))}
        for role, (k, n) in totals.items()
    }


def _analytic_cell(analytic: dict[str, Any], images: int) -> str:
    return f"{analytic['a_present']:.2f} / {analytic['b_present']:.2f} / {analytic['both_present']}/{images}"


def blend_table(report: dict[str, Any]) -> Table:
    rule = f"top-{report['top_k']}" if report["top_k"] else "against controls"
    analytic = report.get("analytic_summary")
    table = Table(title=f"concept blending ({rule}, {report['combine']})")
    for col in ("images of", "both concepts present", "95% CI") + (("analytic judge", "95% CI") if analytic else ()):
        table.add_column(col)
    for role, s in report["summary"].items():
        cells = [f"{s['both_present']}/{s['images']} ({s['rate']:.2f})", f"[{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]"]
        if analytic:
            t = analytic[role]
            cells += [
                f"{t['both_present']}/{t['images']} ({t['rate']:.2f})",
                f"[{t['ci95'][0]:.2f}, {t['ci95'][1]:.2f}]",
            ]
        table.add_row(role, *cells)
    return table


@hookimpl
def register_analyses(register):
    register(Blend)
