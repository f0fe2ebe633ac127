"""Does an inversion of the offline model show its prompt? Judged by a held-out model.

Draws prompts at random (seeded, not picked by hand) from the toy world's single-object captions,
inverts them all in one batch with the paper's setup scaled to the world's 64 px (the image grows
16 -> 32 -> 64 at the same fractions of the run as the paper's 64 -> 128 -> 224 at steps 900 and
1800 of 3400; 13 copies, random affine, TV 0.005, Adam lr 0.1, gradient clip 1.0), and asks the
judge (another model, never the inverted one: by default `toyworld-judge-rn`, a clean ResNet of
another seed) to classify every inversion
against every caption of the world. The final images are also read by the analytic judge
(``clipforge.toyworld.analytic_judge``: colour, background and shape read by rule, which no
adversarial texture can fool), reported under ``"analytic"``, and read again as a person sees them,
min-max rescaled like the PNGs (``"analytic_shown"``).

    python -m benchmarks.toyworld_eval --json
    python -m benchmarks.toyworld_eval --json --models toyworld-rn-3k,toyworld-rn-10k,toyworld-rn
    python -m benchmarks.toyworld_eval --json --set parameterization.name=multires --set optimizer.lr=0.05

``--set`` changes the scaled paper spec (clipforge's ``--set`` syntax), for ablations.
Prints one JSON object: transfer accuracy, judge margin, similarity and seconds per inversion, per
model, how often the judge's top caption names the prompt's colour, shape and background, and the
analytic judge's accuracies (colour, shape, background, caption; share of images with no object)
with its reading of every image (a caption, or null for no object).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from clipforge import invert, to_display
from clipforge.judge import Judge, load_backbone
from clipforge.registry import default_registry
from clipforge.spec import RunSpec, SpecError, load_spec
from clipforge.toyworld import BACKGROUNDS, World
from clipforge.toyworld.analytic_judge import AnalyticVerdicts, read_images, verdicts
from clipforge.toyworld.models import DEFAULT_MODEL, JUDGE_MODEL


def draw_prompts(count: int, seed: int, background: str | None = None) -> list[str]:
    """``count`` full single-object captions drawn at random (seeded), on one background if given."""
    captions = World.single_object_captions()
    if background is not None:
        captions = [c for c in captions if c.endswith(f" on a {background} background")]
    order = torch.randperm(len(captions), generator=torch.Generator().manual_seed(seed))
    return [captions[i] for i in order[:count].tolist()]


def scaled_paper_spec(model: str, prompts: list[str], steps: int, seeds: list[int]) -> dict[str, Any]:
    """The paper's preset at the toy world's scale."""
    grow1, grow2 = round(steps * 900 / 3400), round(steps * 1800 / 3400)
    return {
        "prompts": prompts,
        "seeds": seeds,
        "backbones": [{"name": "open_clip", "options": {"model": model}}],
        "steps": steps,
        "resolution": [{"step": 0, "size": 16}, {"step": grow1, "size": 32}, {"step": grow2, "size": 64}],
        "callbacks": [],
        "device": "cpu",
    }


def attribute_accuracy(prompts: list[str], judged: list[str]) -> dict[str, float]:
    """Fraction of inversions whose judged caption states the prompt's colour, shape, background."""
    hits = {"colour": 0, "shape": 0, "background": 0}
    for prompt, top in zip(prompts, judged):
        facts = World.caption_facts(top)
        for fact in World.caption_facts(prompt):
            key = fact.split("=")[0]
            if key in hits and fact in facts:
                hits[key] += 1
    return {k: v / len(prompts) for k, v in hits.items()}


def checked_spec(model: str, prompts: list[str], steps: int, seeds: list[int], overrides: list[str]) -> RunSpec:
    """The scaled paper spec with ``--set`` overrides, fully validated (plugins' options too)."""
    spec = load_spec(scaled_paper_spec(model, prompts, steps, seeds), overrides)
    return default_registry().resolve(spec).spec


def analytic_report(judged: AnalyticVerdicts) -> dict[str, Any]:
    """The analytic judge's accuracies, its reading of every image (a caption, or None), and the mean
    brightness of the border (the measured background) of the images whose prompt names each background."""
    brightness: dict[str, list[float]] = {}
    for prompt, reading in zip(judged.prompts, judged.readings):
        background = dict(f.split("=", 1) for f in World.caption_facts(prompt))
        brightness.setdefault(background["background"], []).append(sum(reading.background_rgb) / 3)
    return {
        **{k: v for k, v in judged.summary().items() if k != "n"},
        "background_brightness": {b: round(sum(v) / len(v), 4) for b, v in sorted(brightness.items())},
        "readings": judged.caption,
    }


def evaluate(model: str, spec: RunSpec, judge: Judge, prompts: list[str]) -> dict[str, Any]:
    start = time.perf_counter()
    result = invert(spec)
    seconds = time.perf_counter() - start
    row_prompts = [prompts[row.prompt_index] for row in result.rows]
    learned = judge.judge(result.images, row_prompts)
    analytic = verdicts(read_images(result.images), row_prompts)
    # what a person sees: the PNG, each image min-max rescaled as the paper shows it (spec.output.rescale)
    shown = verdicts(read_images(to_display(result.images, spec.output.rescale)), row_prompts)
    final = result.metrics[-1]
    return {
        "model": model,
        "inversions": len(result.rows),
        "transfer_accuracy": learned.accuracy,
        "judge_margin": learned.mean_margin,
        "judge_similarity": sum(learned.similarity) / len(learned.similarity),
        "model_similarity": sum(final["similarity"]) / len(final["similarity"]),
        "attribute_accuracy": attribute_accuracy(row_prompts, learned.top),
        "seconds_per_inversion": seconds / len(result.rows),
        "wrong": [{"prompt": p, "judged": t} for p, t, ok in zip(row_prompts, learned.top, learned.correct) if not ok],
        "analytic": analytic_report(analytic),
        "analytic_shown": analytic_report(shown),
        "_images": result.images,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODEL, help="comma-separated bundled models to invert")
    parser.add_argument("--judge", default=JUDGE_MODEL)
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--seeds", default="0", help="comma-separated image seeds")
    parser.add_argument("--prompt-seed", type=int, default=0, help="seed of the random draw of prompts")
    parser.add_argument("--background", choices=list(BACKGROUNDS), help="draw only prompts on this background")
    parser.add_argument("--steps", type=int, default=340)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the scaled paper spec (repeatable), e.g. optimizer.lr=0.05",
    )
    parser.add_argument("--sheet", type=Path, help="write a contact sheet PNG (one row per model)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.steps < 3:
        parser.error("--steps must be at least 3 (one step per resolution phase)")
    torch.set_num_threads(args.threads)

    prompts = draw_prompts(args.prompts, args.prompt_seed, args.background)
    seeds = [int(s) for s in args.seeds.split(",")]
    models = args.models.split(",")
    if args.judge in models:
        parser.error(f"the judge {args.judge!r} must not be a model being inverted")
    try:  # every spec is checked before anything runs, so a bad --set or model name costs nothing
        specs = {m: checked_spec(m, prompts, args.steps, seeds, args.overrides) for m in models}
    except SpecError as exc:
        sys.exit(f"error: {exc}")
    judge = Judge(load_backbone({"name": "open_clip", "options": {"model": args.judge}}), World.captions())
    results = []
    for model, spec in specs.items():
        results.append(evaluate(model, spec, judge, prompts))
        print(
            f"{model}: transfer accuracy {results[-1]['transfer_accuracy']:.3f}, analytic caption accuracy "
            f"{results[-1]['analytic']['caption']:.3f}",
            file=sys.stderr,
        )
    if args.sheet:
        from clipforge import image_grid, save_png

        tiles = torch.cat([to_display(r["_images"], "minmax") for r in results])
        save_png(image_grid(tiles, columns=len(results[0]["_images"])), args.sheet)
    for r in results:
        r.pop("_images")
    report = {
        "benchmark": "toyworld_eval",
        "judge": args.judge,
        "steps": args.steps,
        "copies": 13,
        "prompts": len(prompts),
        "seeds": seeds,
        "prompt_seed": args.prompt_seed,
        "background": args.background,
        "threads": args.threads,
        "overrides": args.overrides,
        "results": results,
    }
    if args.json:
        print(json.dumps(report))
    else:
        for r in results:
            a, sh, la = r["analytic"], r["analytic_shown"], r["attribute_accuracy"]
            print(
                f"{r['model']:>18}: transfer accuracy {r['transfer_accuracy']:.3f}, judge margin "
                f"{r['judge_margin']:+.3f}, {r['seconds_per_inversion']:.2f} s per inversion; analytic caption "
                f"accuracy {a['caption']:.3f}, no object {a['no_object']:.2f}; colour/shape/background: learned "
                f"{la['colour']:.2f}/{la['shape']:.2f}/{la['background']:.2f}, analytic "
                f"{a['colour']:.2f}/{a['shape']:.2f}/{a['background']:.2f}, analytic on the PNGs "
                f"{sh['colour']:.2f}/{sh['shape']:.2f}/{sh['background']:.2f} (caption {sh['caption']:.3f})"
            )


if __name__ == "__main__":
    main()
