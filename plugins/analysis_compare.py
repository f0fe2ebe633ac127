"""``clipforge compare``: model comparison (the paper's data-scale analysis): the same prompts and seeds inverted on
several backbones, every inversion scored by one judge.

Backbones are ranked by judge accuracy by default (how often the judge's top caption is the
prompt), ties broken by the judge margin. Because every backbone inverts the same prompts with the
same seeds, neighbours in the ranking are also compared image by image: the paired difference of
margins with its 95 % interval, and a sign test on the images that one gets right and the other
wrong. A ranking is only as good as those comparisons say.

Where the spec's reader reads every prompt (the default reader, the toy world's analytic judge, reads
its full single-object captions: colour, shape and background by rule), each image is also checked
against its prompt by the reader, reported beside the judge's accuracy (``"analytic"``), and
``rank_by: "analytic_accuracy"`` ranks by it.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
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
    RunSpec,
    Verdicts,
    choose_reader,
    default_registry,
    hookimpl,
    reader_field,
)
from clipforge.analysis import (
    candidate_captions,
    markdown_table,
    mean_interval,
    sign_test,
    wilson_interval,
    with_ci,
    write_grid,
)

CLIPFORGE_API = API_VERSION  # a built-in is written against the API of the clipforge it comes with


#: what a comparison's ranking orders by
RankBy = Literal["accuracy", "judge_margin", "judge_similarity", "analytic_accuracy"]


class CompareSpec(AnalysisSpec):
    prompts: list[str] = Field(min_length=1, description="Prompts every backbone inverts.")
    backbones: dict[str, ComponentRef] = Field(min_length=2, description="Label -> backbone to invert.")
    captions: list[str] | Literal["world", "toyworld"] | None = Field(
        None,
        description="The judge's candidate captions, or 'world': those of the world the judge's model was trained "
        "on (the offline models'; 'toyworld' is the older name); prompts are added.",
    )
    rank_by: RankBy = Field(
        "accuracy",
        description="What the ranking orders by (accuracy ties are broken by the judge margin); 'analytic_accuracy': "
        "the reader's, which must read every prompt.",
    )
    reader: ComponentRef | None = reader_field(
        description="The reader that checks each image against its prompt (a component of kind 'reader'). Left "
        "out: the toy world's ('toyworld'), where the prompts are its full single-object captions ('a red circle on "
        "a gray background'); a reader named here must read every prompt."
    )

    def inversion_specs(self) -> dict[str, RunSpec]:
        return {
            f"backbones.{label}": self.run_spec(self.prompts, [ref.model_dump()], where=f"backbones.{label}")
            for label, ref in self.backbones.items()
        }


class Compare(Analysis):
    name = "compare"
    description = "the same prompts and seeds on several backbones, scored by one judge"
    Options = CompareSpec

    reading: ReaderChoice | None = None  # chosen by check(), with the spec

    def check(self, registry: Any) -> None:
        """The reader, which must read every prompt when named or when the ranking is by its accuracy."""
        spec = self.options

        def needs(reader: Reader) -> str | None:
            unread = [p for p in spec.prompts if not reader.reads_caption(p)]
            if not unread:
                return None
            why = " (rank_by 'analytic_accuracy')" if spec.rank_by == "analytic_accuracy" else ""
            return f"reads every prompt{why}, {unread[0]!r} too"

        required = spec.rank_by == "analytic_accuracy"
        self.reading = choose_reader(registry, spec.reader, "compare", needs, required=required)

    def reader(self, run: AnalysisRun) -> Reader | None:
        """The reader chosen with the spec, built to read the run's images (chosen now if analyse() came unchecked)."""
        if self.reading is None:
            self.check(getattr(run, "registry", None) or default_registry())
        return self.reading.build(run)

    def progress_label(self) -> str:
        return f"comparing {len(self.options.backbones)} backbones"

    def analyse(self, run: AnalysisRun) -> dict[str, Any]:
        spec = self.options
        results = {label: run.results[f"backbones.{label}"] for label in spec.backbones}
        judge = Judge(run.judge, candidate_captions(spec.captions, spec.prompts, run.judge))
        summary, ranking, paired = compare_results(spec, results, judge, self.reader(run))
        return {
            **({"reader": spec.reader.model_dump()} if spec.reader is not None else {}),
            "judge": spec.judge.model_dump(),
            "prompts": spec.prompts,
            "seeds": spec.seed_list(),
            "backbones": {k: v.model_dump() for k, v in spec.backbones.items()},
            "results": summary,
            "rank_by": spec.rank_by,
            "ranking": ranking,
            "paired": paired,
        }

    def write_report(self, report: dict[str, Any], run: AnalysisRun, out: Path) -> None:
        spec, choice = self.options, self.reading or ReaderChoice(label="the reader")
        summary, ranking, paired = report["results"], report["ranking"], report["paired"]
        analytic = all("analytic" in s for s in summary.values())
        who = "analytic judge" if choice.toyworld else choice.label
        rows_out = [run.results[f"backbones.{label}"].images for label in spec.backbones]
        write_grid(out / "grid.png", torch.cat(rows_out), rows_out[0].shape[0])
        header, table = results_table(summary, analytic, who)
        pair_header, pair_rows = pairs_table(paired, analytic, who, choice.toyworld)
        judges = f"Judge: `{spec.judge.model_dump()}`" + (
            (
                "; and the analytic judge (colour, shape and background read by rule)"
                if choice.toyworld
                else f"; and {who}"
            )
            if analytic
            else ""
        )
        md = [
            "# Model comparison",
            "",
            judges + ".",
            "",
            markdown_table(header, table),
            "",
            f"Ranking by {spec.rank_by.replace('_', ' ')}: " + " > ".join(ranking),
            "",
            "Neighbours in the ranking, image by image (same prompts and seeds):",
            "",
            markdown_table(pair_header, pair_rows),
            "",
            "One row per backbone, in the order of the first table; columns are prompts x seeds.",
            "",
            "![grid](grid.png)",
            "",
        ]
        (out / "report.md").write_text("\n".join(md), encoding="utf-8")

    def table(self, report: dict[str, Any]) -> Table:
        return compare_table(report)


def results_table(summary: dict[str, Any], analytic: bool, who: str) -> tuple[list[str], list[list[Any]]]:
    """report.md's first table: a row per backbone (the judge's similarity, accuracy and margin, each
    with its interval), with ``analytic`` a column of ``who``'s (the reader's) caption accuracy and parts."""
    header = ["backbone", "images", "judge similarity (95 % CI)", "accuracy (95 % CI)", "judge margin (95 % CI)"]
    table = [
        [
            label,
            s["images"],
            with_ci(s["judge_similarity"], s["judge_similarity_ci95"], 3),
            with_ci(s["accuracy"], s["accuracy_ci95"], 2),
            with_ci(s["judge_margin"], s["judge_margin_ci95"], 3),
        ]
        for label, s in summary.items()
    ]
    if analytic:
        parts = [k for k in next(iter(summary.values()))["analytic"] if k not in ("caption", "no_object")]
        header.append(f"{who}: caption accuracy (95 % CI)" + (f"; {' / '.join(parts)}" if parts else ""))
        for row, s in zip(table, summary.values()):
            a = s["analytic"]
            row.append(
                f"{with_ci(s['analytic_accuracy'], s['analytic_accuracy_ci95'], 2)}"
                + (f"; {' / '.join(f'{a[k]:.2f}' for k in parts)}" if parts else "")
            )
    return header, table


def pairs_table(
    paired: list[dict[str, Any]], analytic: bool, who: str, toyworld: bool
) -> tuple[list[str], list[list[Any]]]:
    """report.md's second table: a row per pair of neighbours in the ranking (their paired margin
    difference and sign tests), with ``analytic`` the same of ``who``'s (the reader's) readings;
    ``toyworld``: the reader is the toy world's, whose colour column is named as before."""
    pair_header = [
        "ranked",
        "paired margin difference (95 % CI)",
        "larger margin in the first / in the second, sign test p",
        "right only in the first / only in the second",
        "sign test p",
    ]
    pair_rows = [
        [
            f"{c['higher']} > {c['lower']}",
            with_ci(c["margin_difference"], c["margin_difference_ci95"], 3),
            f"{c['margin_larger_in_higher']} / {c['margin_larger_in_lower']}, p = {c['margin_sign_test_p']:.2g}",
            f"{c['only_higher_right']} / {c['only_lower_right']}",
            f"{c['sign_test_p']:.3f}",
        ]
        for c in paired
    ]
    if analytic:
        pair_header += [
            f"{who}: right only in the first / only in the second",
            "sign test p",
            ("analytic colour" if toyworld else f"{who}, colour")
            + ": right only in the first / in the second, sign test p",
        ]
        for row, c in zip(pair_rows, paired):
            a = c["analytic"]
            row += [f"{a['only_higher_right']} / {a['only_lower_right']}", f"{a['sign_test_p']:.3f}"]
            colour = (
                a.get("colour_only_higher_right"),
                a.get("colour_only_lower_right"),
                a.get("colour_sign_test_p"),
            )
            row.append(f"{colour[0]} / {colour[1]}, p = {colour[2]:.2g}" if colour[2] is not None else "")
    return pair_header, pair_rows


def compare_results(
    spec: CompareSpec, results: dict[str, Any], judge: Judge, reader: Reader | None = None
) -> tuple[dict, list[str], list[dict]]:
    """Per-backbone summary, ranking (best first) and neighbours' paired comparisons; with ``reader``
    (one that reads every prompt), each image checked against its prompt by the reader too."""
    analytic = reader is not None
    summary, verdicts, analytic_correct, analytic_colour = {}, {}, {}, {}
    for label, result in results.items():
        row_prompts = [spec.prompts[r.prompt_index] for r in result.rows]
        verdicts[label] = v = judge.judge(result.images, row_prompts)
        n, k = len(v.correct), sum(v.correct)
        sim, sim_lo, sim_hi = mean_interval(v.similarity)
        margin, margin_lo, margin_hi = mean_interval(v.margin)
        summary[label] = {
            "images": n,
            "judge_similarity": sim,
            "judge_similarity_ci95": [sim_lo, sim_hi],
            "accuracy": k / n,
            "accuracy_ci95": list(wilson_interval(k, n)),
            "judge_margin": margin,
            "judge_margin_ci95": [margin_lo, margin_hi],
            "model_similarity": statistics.fmean(result.metrics[-1]["similarity"]),
        }
        if analytic:  # the reader checks each image against its prompt (the toy world's: colour, shape, background)
            a = reader.read_captions(result.images, row_prompts)
            analytic_correct[label] = a.correct
            if "colour" in a.parts:
                analytic_colour[label] = a.parts["colour"]
            hits = sum(a.correct)
            summary[label].update(
                {
                    "analytic_accuracy": hits / n,
                    "analytic_accuracy_ci95": list(wilson_interval(hits, n)),
                    "analytic": dict(a.summary),
                }
            )
    images = {label: [(r.prompt_index, r.seed) for r in result.rows] for label, result in results.items()}
    if any(keys != next(iter(images.values())) for keys in images.values()):  # the engine orders rows the same way
        raise RuntimeError("compare: backbones' inversions are not in the same prompt and seed order")
    ranking = rank_backbones(summary, spec.rank_by)
    paired = [
        paired_comparison(
            higher,
            lower,
            verdicts[higher],
            verdicts[lower],
            analytic_correct.get(higher),
            analytic_correct.get(lower),
            analytic_colour.get(higher),
            analytic_colour.get(lower),
        )
        for higher, lower in zip(ranking, ranking[1:])
    ]
    return summary, ranking, paired


def rank_backbones(summary: dict[str, dict[str, Any]], rank_by: RankBy) -> list[str]:
    """Labels from best to worst; accuracy ties are broken by the judge margin, full ties keep spec order."""
    if rank_by in ("accuracy", "analytic_accuracy"):
        return sorted(
            summary, key=lambda label: (summary[label][rank_by], summary[label]["judge_margin"]), reverse=True
        )
    return sorted(summary, key=lambda label: summary[label][rank_by], reverse=True)


def paired_comparison(
    higher: str,
    lower: str,
    higher_verdicts: Verdicts,
    lower_verdicts: Verdicts,
    higher_analytic: list[bool] | None = None,
    lower_analytic: list[bool] | None = None,
    higher_colour: list[bool] | None = None,
    lower_colour: list[bool] | None = None,
) -> dict[str, Any]:
    """Image-by-image comparison of two backbones ranked next to each other, on the same prompts and
    seeds in the same order: is the higher one's lead more than noise? With the analytic judge's
    per-image correctness (the whole caption, and the colour alone), its sign tests are reported too
    (under ``"analytic"``)."""
    pairs = list(zip(higher_verdicts.margin, lower_verdicts.margin, strict=True))
    diff, lo, hi = mean_interval([x - y for x, y in pairs])
    correct = list(zip(higher_verdicts.correct, lower_verdicts.correct, strict=True))
    only_higher = sum(x and not y for x, y in correct)
    only_lower = sum(y and not x for x, y in correct)
    # the paired sign test on margins: in how many images is the higher backbone's margin the larger one?
    # It needs no verdict to differ, so it also separates backbones whose images are all judged wrong
    margin_higher = sum(x > y for x, y in pairs)
    margin_lower = sum(y > x for x, y in pairs)
    out = {
        "higher": higher,
        "lower": lower,
        "margin_difference": diff,
        "margin_difference_ci95": [lo, hi],
        "margin_larger_in_higher": margin_higher,
        "margin_larger_in_lower": margin_lower,
        "margin_sign_test_p": sign_test(margin_higher, margin_lower),
        "only_higher_right": only_higher,
        "only_lower_right": only_lower,
        "sign_test_p": sign_test(only_higher, only_lower),
    }
    if higher_analytic is not None and lower_analytic is not None:
        both = list(zip(higher_analytic, lower_analytic, strict=True))
        a_higher, a_lower = sum(x and not y for x, y in both), sum(y and not x for x, y in both)
        out["analytic"] = {
            "only_higher_right": a_higher,
            "only_lower_right": a_lower,
            "sign_test_p": sign_test(a_higher, a_lower),
        }
    if higher_colour is not None and lower_colour is not None and "analytic" in out:
        both = list(zip(higher_colour, lower_colour, strict=True))
        c_higher, c_lower = sum(x and not y for x, y in both), sum(y and not x for x, y in both)
        out["analytic"].update(
            {
                "colour_only_higher_right": c_higher,
                "colour_only_lower_right": c_lower,
                "colour_sign_test_p": sign_test(c_higher, c_lower),
            }
        )
    return out


def compare_table(report: dict[str, Any]) -> Table:
    table = Table(
        title=f"model comparison, best first by {report['rank_by'].replace('_', ' ')}",
        caption="vs next: paired margin difference (95% CI), sign-test p on margins; "
        "and sign-test p on images only one gets right",
    )
    for col in ("backbone", "images", "judge similarity", "accuracy (95% CI)", "margin", "vs next"):
        table.add_column(col)
    paired = {c["higher"]: c for c in report["paired"]}
    for label in report["ranking"]:
        s, c = report["results"][label], paired.get(label)
        table.add_row(
            label,
            str(s["images"]),
            f"{s['judge_similarity']:.3f}",
            with_ci(s["accuracy"], s["accuracy_ci95"], 2),
            f"{s['judge_margin']:+.3f}",
            f"{with_ci(c['margin_difference'], c['margin_difference_ci95'], 3)}, p={c['margin_sign_test_p']:.2g}; "
            f"p={c['sign_test_p']:.2f}"
            if c
            else "",
        )
    return table


@hookimpl
def register_analyses(register):
    register(Compare)
