"""What this CPU's own hardware gives an inversion: fp32 against bf16 autocast (oneDNN, AMX where the
CPU has it), channels-last and ``torch.compile``, on the default model and on ``toyworld-vit``, each
with its GFLOP/s and its share of the machine's matmul peak (measured here, fp32 and bf16), and the
augmentation pipeline's share of a step.

An inversion is the quickstart's shape at its largest size: 13 copies of one image at 64 px (the
bundled models' input), ``--steps`` timed steps after ``--warmup``, reported per 200-step inversion.
A step's work is counted by torch's flop counter on the model's forward and backward pass of the
13 copies (the augmentations, the loss and Adam are not counted: they are a few percent). The peak
is the best of large square matmuls timed at the same thread count.

    python -m benchmarks.cpu_table --json                 # both models, every configuration
    python -m benchmarks.cpu_table --models toyworld-rn --configs fp32,bf16 --steps 5

The images' quality under a configuration is checked by ``benchmarks.toyworld_eval`` with its
``--set performance...`` (RESULTS gives both commands).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import StepClock, resolved
from clipforge.engine import Engine
from clipforge.judge import load_backbone

CONFIGS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "channels_last": {"channels_last": True},
    "bf16+channels_last": {"precision": "bf16", "channels_last": True},
    "compile": {"compile": True},
    "bf16+channels_last+compile": {"precision": "bf16", "channels_last": True, "compile": True},
}
STEPS_PER_INVERSION = 200
COPIES = 13


def cpu_flags() -> list[str]:
    """The CPU's vector and matrix extensions that matter here (from /proc/cpuinfo)."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("avx512f", "avx512_bf16", "amx", "avx2")))


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the best of ``repeats`` square matmuls of ``size`` in ``dtype`` (the machine's peak as
    torch reaches it, at the current thread count)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(dtype)
    b = torch.randn(size, size, generator=gen).to(dtype)
    a @ b  # warm up (oneDNN picks its kernel)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def step_gflop(model: str, size: int) -> float:
    """GFLOP of the model's forward and backward pass of ``COPIES`` images (torch's flop counter)."""
    backbone = load_backbone({"name": "open_clip", "options": {"model": model}}, torch.device("cpu"))
    x = torch.rand(COPIES, 3, size, size, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        emb = backbone.encode_image(x)
        F.normalize(emb.float(), dim=-1).sum().backward()
    return counter.get_total_flops() / 1e9


def spec(model: str, steps: int, performance: dict[str, Any], augment: bool = True) -> dict[str, Any]:
    return {
        "prompts": ["a red circle on a white background"],
        "seeds": [0],
        "backbones": [{"name": "open_clip", "options": {"model": model}}],
        "steps": steps,
        "copies": COPIES,
        "resolution": [{"step": 0, "size": 64}],
        "callbacks": [],
        "device": "cpu",
        "log_every": steps,
        **({} if augment else {"augmentations": []}),
        "performance": performance,
    }


def seconds_per_step(model: str, performance: dict[str, Any], warmup: int, steps: int, augment: bool = True) -> float:
    """Seconds per step of the ``steps`` after ``warmup`` of one run (the start, the model's loading
    and compilation are not counted)."""
    clock = StepClock(torch.device("cpu"), warmup)
    Engine(resolved(spec(model, warmup + steps, performance, augment)), callbacks=[clock]).run()
    return clock.seconds / steps


def measure(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    rows = []
    for model in args.models:
        gflop = step_gflop(model, 64)
        for name in args.configs:
            runs = [seconds_per_step(model, CONFIGS[name], args.warmup, args.steps) for _ in range(args.repeats)]
            s = statistics.median(runs)
            peak = peaks["bf16" if CONFIGS[name].get("precision") == "bf16" else "fp32"]
            rows.append(
                {
                    "model": model,
                    "config": name,
                    "seconds_per_step": s,
                    "seconds_per_inversion": s * STEPS_PER_INVERSION,
                    "gflop_per_step": gflop,
                    "gflops": gflop / s,
                    "share_of_peak": gflop / s / peak,
                    "runs": runs,
                }
            )
            print(f"  {model} {name}: {s * STEPS_PER_INVERSION:.2f} s per inversion", file=sys.stderr, flush=True)
        base = next((r for r in rows if r["model"] == model and r["config"] == "fp32"), None)
        if args.augmentation_share and base is not None:
            bare = statistics.median(
                seconds_per_step(model, {}, args.warmup, args.steps, augment=False) for _ in range(args.repeats)
            )
            base["augmentation_share"] = max(0.0, 1 - bare / base["seconds_per_step"])
    fp32 = {r["model"]: r["seconds_per_inversion"] for r in rows if r["config"] == "fp32"}
    for r in rows:
        if r["model"] in fp32:
            r["speedup_over_fp32"] = fp32[r["model"]] / r["seconds_per_inversion"]
    return {
        "benchmark": "cpu_table",
        "threads": args.threads,
        "cpu_flags": cpu_flags(),
        "torch": torch.__version__,
        "mkldnn_bf16": bool(getattr(torch.backends.mkldnn, "is_available", lambda: False)()),
        "matmul_peak_gflops": peaks,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "rows": rows,
    }


#: the judges' readings compared: (label, where in a toyworld_eval result)
READINGS = (
    ("learned: transfer accuracy", ("transfer_accuracy",)),
    ("learned: colour", ("attribute_accuracy", "colour")),
    ("learned: shape", ("attribute_accuracy", "shape")),
    ("learned: background", ("attribute_accuracy", "background")),
    ("analytic: colour", ("analytic", "colour")),
    ("analytic: shape", ("analytic", "shape")),
    ("analytic: background", ("analytic", "background")),
    ("analytic: caption", ("analytic", "caption")),
)


def reading(result: dict[str, Any], path: tuple[str, ...]) -> float:
    value: Any = result
    for key in path:
        value = value[key]
    return float(value)


def quality(fp32: dict[str, Any], others: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each judge reading of fp32's inversions (``benchmarks.toyworld_eval`` output) with its 95 %
    Wilson interval, and whether each other configuration's reading of the same prompts and seeds
    lies in it: what "keeps the images' quality" means here."""
    from clipforge.analysis import wilson_interval

    base = fp32["results"][0]
    n = base["inversions"]
    rows = []
    for label, path in READINGS:
        value = reading(base, path)
        low, high = wilson_interval(round(value * n), n)
        row = {"reading": label, "fp32": value, "low": low, "high": high}
        for name, other in others.items():
            got = reading(other["results"][0], path)
            row[name] = got
            row[f"{name} inside"] = low - 1e-9 <= got <= high + 1e-9
        rows.append(row)
    return rows


def quality_table(rows: list[dict[str, Any]], names: list[str]) -> str:
    lines = [
        "| reading | fp32 (95 % interval) | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for r in rows:
        cells = [f"{r[n]:.2f}" + ("" if r[f"{n} inside"] else " (outside)") for n in names]
        lines.append(
            f"| {r['reading']} | {r['fp32']:.2f} [{r['low']:.2f}, {r['high']:.2f}] | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def table(report: dict[str, Any]) -> str:
    peaks = report["matmul_peak_gflops"]
    lines = [
        f"{report['threads']} thread(s); matmul peak {peaks['fp32']:.0f} GFLOP/s fp32, {peaks['bf16']:.0f} bf16; "
        f"CPU flags: {', '.join(report['cpu_flags']) or 'unknown'}",
        "",
        "| model | configuration | s per inversion (200 steps) | x fp32 | GFLOP/s | share of peak |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['model']} | {r['config']} | {r['seconds_per_inversion']:.2f} | {r.get('speedup_over_fp32', 1):.2f} "
            f"| {r['gflops']:.0f} | {r['share_of_peak']:.0%} |"
        )
    for r in report["rows"]:
        if "augmentation_share" in r:
            lines.append(f"\n{r['model']}: the augmentations are {r['augmentation_share']:.0%} of an fp32 step.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=lambda s: s.split(","), default=["toyworld-rn", "toyworld-vit"])
    parser.add_argument("--configs", type=lambda s: s.split(","), default=list(CONFIGS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-augmentation-share", dest="augmentation_share", action="store_false")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--quality",
        nargs="+",
        metavar="NAME=FILE",
        help="instead of timing: compare toyworld_eval outputs, the first fp32's (fp32=FILE), the others against it",
    )
    args = parser.parse_args(argv)
    if args.quality:
        files = dict(item.split("=", 1) for item in args.quality)
        loaded = {name: json.loads(Path(path).read_text()) for name, path in files.items()}
        fp32 = loaded.pop("fp32")
        rows = quality(fp32, loaded)
        print(json.dumps(rows) if args.json else quality_table(rows, list(loaded)))
        return {"quality": rows}
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}; known: {', '.join(CONFIGS)}")
    report = measure(args)
    print(json.dumps(report) if args.json else table(report))
    return report


if __name__ == "__main__":
    main()
