"""Pixel, Fourier and multi-resolution parameterisations side by side on the offline world.

Every parameterisation inverts the same prompts x seeds with the paper's setup scaled to the
world (see toyworld_eval.py); only the parameterisation (and its learning rate) differs. The pixel
one with the paper's settings is the baseline. Every ``--eval-every`` steps the judge classifies
the current images, which gives a curve of transfer accuracy against steps, and so the steps and
seconds each parameterisation needs to reach the baseline's final accuracy. The analytic judge
(``clipforge.toyworld.analytic_judge``: colour, background and shape read by rule) reads the same
images, which adds its caption and shape accuracy to every point of the curve
(``analytic_caption``, ``analytic_shape``) and its final reading under ``"analytic"``.

    python -m benchmarks.compare_parameterizations --json --out benchmarks/results/parameterizations
    python -m benchmarks.compare_parameterizations --speed-only --json   # random ViT-B/16, paper shapes

Writes ``table.md``, ``sheet.png`` (one row per parameterisation, the same prompts),
``accuracy.png`` (judge accuracy against steps) and ``analytic_accuracy.png`` (the analytic
judge's caption accuracy against steps) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

from benchmarks.speed import PeakMemory, PhaseClock
from benchmarks.toyworld_eval import draw_prompts, scaled_paper_spec
from clipforge import Callback, Options, image_grid, invert, save_png, to_display
from clipforge.judge import Judge, load_backbone
from clipforge.toyworld import World
from clipforge.toyworld.analytic_judge import read_images, verdicts
from clipforge.toyworld.models import DEFAULT_MODEL, JUDGE_MODEL

VARIANTS: dict[str, dict[str, Any]] = {
    "pixel (paper)": {"parameterization": {"name": "pixel"}, "lr": 0.1},
    "fourier": {"parameterization": {"name": "fourier"}, "lr": 0.05},
    "multires": {"parameterization": {"name": "multires"}, "lr": 0.05},
}


class JudgeCurve(Callback):
    """Transfer accuracy of the current images every N steps (learned judge), with the analytic
    judge's caption and shape accuracy; ``analytic`` holds the analytic judge's latest summary."""

    name = "judge_curve"

    def __init__(self, judge: Judge, prompts: list[str], every: int):
        super().__init__(Options())
        self.judge, self.prompts, self.every = judge, prompts, every
        self.points: list[dict[str, float]] = []
        self.judge_seconds = 0.0
        self.analytic: dict[str, Any] = {}

    def on_run_start(self, run) -> None:
        self.start = time.perf_counter()
        self.row_prompts = [self.prompts[r.prompt_index] for r in run.rows]

    def on_step_end(self, run, state) -> None:
        if state.step % self.every and state.step != run.total_steps:
            return
        t = time.perf_counter()
        elapsed = t - self.start - self.judge_seconds  # optimisation time only, judging excluded
        images = state.images()
        learned = self.judge.judge(images, self.row_prompts)
        analytic = verdicts(read_images(images), self.row_prompts)
        self.judge_seconds += time.perf_counter() - t
        summary = analytic.summary()
        self.analytic = {**{k: v for k, v in summary.items() if k != "n"}, "readings": analytic.caption}
        self.points.append(
            {
                "step": state.step,
                "seconds": elapsed,
                "accuracy": learned.accuracy,
                "margin": learned.mean_margin,
                "analytic_caption": summary["caption"],
                "analytic_shape": summary["shape"],
            }
        )


def first_reaching(points: list[dict[str, float]], target: float) -> dict[str, float] | None:
    for p in points:
        if p["accuracy"] >= target:
            return p
    return None


def line_plot(
    curves: dict[str, list[dict[str, float]]],
    path: Path,
    width: int = 640,
    height: int = 400,
    key: str = "accuracy",
    title: str = "judge transfer accuracy",
) -> None:
    """A curve's ``key`` (judge accuracy) against steps, one line per parameterisation (drawn with PIL)."""
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    left, right, top, bottom = 50, width - 170, 20, height - 40
    max_step = max(p["step"] for pts in curves.values() for p in pts)
    d.rectangle([left, top, right, bottom], outline="black")
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        y = bottom - frac * (bottom - top)
        d.line([left - 4, y, left, y], fill="black")
        d.text((5, y - 6), f"{frac:.2f}", fill="black")
    d.text((left, bottom + 10), "0", fill="black")
    d.text((right - 30, bottom + 10), str(max_step), fill="black")
    d.text(((left + right) // 2 - 40, bottom + 22), "steps", fill="black")
    d.text((5, 2), title, fill="black")
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    for i, (label, pts) in enumerate(curves.items()):
        xy = [(left + p["step"] / max_step * (right - left), bottom - p[key] * (bottom - top)) for p in pts]
        if len(xy) > 1:
            d.line(xy, fill=colours[i % len(colours)], width=2)
        d.text((right + 10, top + 16 * i), label, fill=colours[i % len(colours)])
    img.save(path)


def quality(args: argparse.Namespace) -> dict[str, Any]:
    prompts = draw_prompts(args.prompts, args.prompt_seed)
    seeds = list(range(args.seeds))
    judge = Judge(load_backbone({"name": "open_clip", "options": {"model": args.judge}}), World.captions())
    results: dict[str, Any] = {}
    sheet_rows = []
    for label, variant in VARIANTS.items():
        spec = scaled_paper_spec(args.model, prompts, args.steps, seeds)
        spec["parameterization"] = variant["parameterization"]
        spec["optimizer"] = {"lr": variant["lr"]}
        curve = JudgeCurve(judge, prompts, args.eval_every)
        start = time.perf_counter()
        with PeakMemory(torch.device("cpu")) as mem:
            result = invert(spec, callbacks=[curve])
        seconds = time.perf_counter() - start - curve.judge_seconds
        final = curve.points[-1]
        results[label] = {
            "parameterization": variant["parameterization"],
            "lr": variant["lr"],
            "transfer_accuracy": final["accuracy"],
            "judge_margin": final["margin"],
            "model_similarity": sum(result.metrics[-1]["similarity"]) / len(result.rows),
            "seconds_per_step": seconds / args.steps,
            "peak_memory_mib": round(mem.peak / 2**20, 1),
            "curve": curve.points,
            "analytic": curve.analytic,
        }
        first = sorted(result.rows, key=lambda r: (r.seed, r.prompt_index))[: args.sheet_columns]
        sheet_rows.append(to_display(result.images[[r.index for r in first]], "minmax"))
        print(
            f"{label}: transfer accuracy {final['accuracy']:.3f}, analytic caption accuracy "
            f"{final['analytic_caption']:.3f}",
            file=sys.stderr,
        )
    baseline = results["pixel (paper)"]["transfer_accuracy"]
    for r in results.values():
        hit = first_reaching(r["curve"], baseline)
        r["steps_to_baseline"] = hit["step"] if hit else None
        r["seconds_to_baseline"] = round(hit["seconds"], 2) if hit else None
    report = {
        "benchmark": "compare_parameterizations",
        "model": args.model,
        "judge": args.judge,
        "prompts": len(prompts),
        "seeds": seeds,
        "steps": args.steps,
        "eval_every": args.eval_every,
        "baseline_transfer_accuracy": baseline,
        "results": results,
    }
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        save_png(image_grid(torch.cat(sheet_rows), args.sheet_columns), args.out / "sheet.png")
        line_plot({k: v["curve"] for k, v in results.items()}, args.out / "accuracy.png")
        line_plot(
            {k: v["curve"] for k, v in results.items()},
            args.out / "analytic_accuracy.png",
            key="analytic_caption",
            title="analytic judge caption accuracy",
        )
        rows = [
            "| parameterisation | lr | transfer accuracy | judge margin | steps to baseline | seconds to baseline "
            "| s/step | peak MiB | analytic caption / colour / shape / background | analytic no object |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, r in results.items():
            a = r["analytic"]
            rows.append(
                f"| {label} | {r['lr']} | {r['transfer_accuracy']:.3f} | {r['judge_margin']:+.3f} | "
                f"{r['steps_to_baseline']} | {r['seconds_to_baseline']} | {r['seconds_per_step']:.3f} | "
                f"{r['peak_memory_mib']} | {a['caption']:.3f} / {a['colour']:.3f} / {a['shape']:.3f} / "
                f"{a['background']:.3f} | {a['no_object']:.3f} |"
            )
        (args.out / "table.md").write_text("\n".join(rows) + "\n", encoding="utf-8")
        (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def speed_only(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per step of each parameterisation on a random-weight ViT-B/16 at the paper's shapes."""
    specs = {
        label: {
            "prompts": ["a photo of a dog"],
            "steps": args.speed_steps,
            "callbacks": [],
            "device": args.device,
            "backbones": [{"name": "open_clip", "options": {"model": "ViT-B-16", "pretrained": "random"}}],
            "resolution": [{"step": 0, "size": 224}],
            "parameterization": variant["parameterization"],
        }
        for label, variant in VARIANTS.items()
    }
    for spec in specs.values():  # warm up every variant first, so that the first timed one is not penalised
        invert({**spec, "steps": 1})
    results = {}
    for label, spec in specs.items():
        clock = PhaseClock(torch.device(args.device), args.speed_steps)  # one phase: the steps, not the set-up
        with PeakMemory(torch.device(args.device)) as mem:
            invert(spec, callbacks=[clock])
        seconds = sum(clock.times)
        results[label] = {"seconds_per_step": seconds / args.speed_steps, "peak_memory_mib": round(mem.peak / 2**20, 1)}
        print(f"{label}: {results[label]['seconds_per_step']:.2f} s/step", file=sys.stderr)
    return {
        "benchmark": "compare_parameterizations (speed only)",
        "model": "ViT-B-16, random weights",
        "image": 224,
        "copies": 13,
        "device": args.device,
        "steps": args.speed_steps,
        "note": "steps only (model building excluded); memory includes building the model",
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--judge", default=JUDGE_MODEL)
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--prompt-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=340)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--sheet-columns", type=int, default=12)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--speed-steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = speed_only(args) if args.speed_only else quality(args)
    if args.json:
        print(json.dumps(report))
    else:
        for label, r in report["results"].items():
            shown = {k: v for k, v in r.items() if k != "curve"}
            if "analytic" in shown:  # the quality report: the analytic judge's accuracies, not its readings
                shown["analytic"] = {k: v for k, v in shown["analytic"].items() if k != "readings"}
            print(label, shown)


if __name__ == "__main__":
    main()
