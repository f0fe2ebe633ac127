"""The GPU check: the paper's setup on ViT-B/16 (random weights: nothing is downloaded), timed per
prompt at several batch sizes, fp32 and bf16, eager and compiled, with peak memory, and the
feature-visualisation layer batch; made to fit one short device call.

Each measurement is an engine run at the paper's last resolution (224 px: 1600 of its 3400 steps,
and a step costs about the same at every size, as the model always sees 224 px) with 13 copies,
the paper's augmentations and regularisers: ``--warmup`` steps (compilation included) and then
``--steps`` timed ones. A prompt's cost is the seconds per step divided by the batch, times 3400
steps (amortised). The largest batch is found as a sweep finds it: try the batch the memory of
batch 32 predicts for the device's free memory, and halve it on running out of memory.

Measurements run in order of importance, and each starts only if the time left (``--budget``
seconds in all, from the start) covers its estimate (the last run's cost scaled by batch, plus
compilation); what did not fit is listed as skipped, never guessed. It writes one JSON and prints
a short table (markdown).

    python -m benchmarks.gpu_check --out gpu_check.json                  # one GPU, about 7 minutes
    python -m benchmarks.gpu_check --tiny --device cpu --out /tmp/x.json  # the test's tiny size
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import clipforge
from benchmarks.common import PeakMemory, StepClock, resolved
from clipforge.engine import Engine

PAPER_STEPS = 3400
FV_STEPS = 512  # a channel visualisation's steps, to amortise the layer batch over
VIT_B_16 = {"name": "open_clip", "options": {"model": "ViT-B-16", "pretrained": "random"}}
TINY = {
    "name": "open_clip",
    "options": {
        "config": {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
            "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
        }
    },
}


def paper_spec(backbone: dict, size: int, batch: int, steps: int, device: str, precision: str, compile: bool) -> dict:
    """The paper's setup (13 copies, its augmentations and regularisers, the prompt objective) at one size."""
    return {
        "prompts": [f"a photo of thing number {i}" for i in range(batch)],
        "seeds": [0],
        "backbones": [backbone],
        "steps": steps,
        "resolution": [{"step": 0, "size": size}],
        "callbacks": [],
        "device": device,
        "log_every": steps,
        "performance": {"precision": precision, "tf32": precision == "bf16", "compile": compile},
    }


def layer_spec(backbone: dict, size: int, layer: str, channels: int, steps: int, device: str, precision: str) -> dict:
    """One image per channel of ``layer``, all in one batch (the layer analysis's way)."""
    spec = paper_spec(backbone, size, 1, steps, device, precision, False)
    spec["prompts"] = [
        {"objectives": [{"name": "channel", "options": {"layer": layer, "channel": c}}]} for c in range(channels)
    ]
    return spec


def timed_run(spec: dict, warmup: int) -> dict[str, Any]:
    """Run ``spec``; its timed steps' seconds per step, its peak memory and its wall time."""
    device = torch.device(spec["device"])
    clock = StepClock(device, warmup)
    start = time.perf_counter()
    with PeakMemory(device) as memory:
        Engine(resolved(spec), callbacks=[clock]).run()
    timed = spec["steps"] - warmup
    return {
        "seconds_per_step": clock.seconds / timed,
        "peak_memory_mib": round(memory.peak / 2**20, 1),
        "wall_seconds": round(time.perf_counter() - start, 2),
    }


class Budget:
    """The time left of ``seconds`` from now, and what each measurement is expected to cost."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def free_memory(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free)


def largest_batch(
    try_batch: Callable[[int], dict[str, Any]], at_32: dict[str, Any] | None, device: torch.device, cap: int
) -> tuple[int, dict[str, Any]] | None:
    """The largest batch that runs: the one batch 32's memory predicts for the free memory (capped),
    halved on running out of memory, as a sweep's block is; None when not even one prompt fits."""
    free = free_memory(device)
    if at_32 is not None and free is not None:
        per_prompt = at_32["peak_memory_mib"] * 2**20 / 32
        batch = max(1, min(cap, int(0.9 * free / per_prompt)))
    else:
        batch = cap
    while batch >= 1:
        try:
            return batch, try_batch(batch)
        except torch.OutOfMemoryError:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            batch //= 2
    return None


def check(args: argparse.Namespace) -> dict[str, Any]:
    budget = Budget(args.budget)
    backbone, size = (TINY, 32) if args.tiny else (VIT_B_16, 224)
    layer = "transformer.resblocks.1" if args.tiny else "transformer.resblocks.6"
    device = torch.device(args.device)
    warmup, steps = args.warmup, args.warmup + args.steps
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    cost: dict[tuple[str, bool], float] = {}  # seconds per prompt-step, by precision and compile
    compile_seconds = 90.0  # a first guess until one compile is measured

    def measure(precision: str, compile: bool, batch: int | None) -> dict[str, Any] | None:
        nonlocal compile_seconds
        label = f"{precision}{' compiled' if compile else ''} batch {batch or 'largest'}"
        per_prompt_step = cost.get((precision, compile)) or cost.get((precision, False)) or cost.get(("fp32", False))
        guess = (per_prompt_step or 0.0) * (batch or 32) * steps * 1.5 + (compile_seconds if compile else 0.0) + 5
        if budget.left() < guess:
            skipped.append(f"{label}: {budget.left():.0f} s left, about {guess:.0f} s needed")
            return None

        def run(b: int) -> dict[str, Any]:
            return timed_run(paper_spec(backbone, size, b, steps, args.device, precision, compile), warmup)

        if batch is None:
            found = largest_batch(run, by_batch.get((precision, compile, 32)), device, args.largest_cap)
            if found is None:
                skipped.append(f"{label}: not even one prompt fits")
                return None
            batch, result = found
        else:
            try:
                result = run(batch)
            except torch.OutOfMemoryError:
                skipped.append(f"{label}: out of memory")
                return None
        row = {"precision": precision, "compile": compile, "batch": batch, **result}
        row["seconds_per_prompt"] = result["seconds_per_step"] / batch * PAPER_STEPS
        cost[(precision, compile)] = result["seconds_per_step"] / batch
        if compile:
            compile_seconds = max(0.0, result["wall_seconds"] - result["seconds_per_step"] * steps)
        by_batch[(precision, compile, batch)] = result
        rows.append(row)
        print(f"  {label}: {row['seconds_per_prompt']:.1f} s per prompt ({result['wall_seconds']:.0f} s)", flush=True)
        return row

    by_batch: dict[tuple[str, bool, int], dict[str, Any]] = {}
    batches = args.batches
    for precision in ("fp32", "bf16"):  # eager first: the figures a user runs by default
        for batch in batches:
            measure(precision, False, batch)
    for precision in ("bf16", "fp32"):
        measure(precision, False, None)
    fv = None
    if budget.left() > 30:
        channels = args.fv_channels
        try:
            result = timed_run(layer_spec(backbone, size, layer, channels, steps, args.device, "fp32"), warmup)
            fv = {"layer": layer, "channels": channels, **result}
            fv["seconds_per_channel"] = result["seconds_per_step"] / channels * FV_STEPS
        except torch.OutOfMemoryError:
            skipped.append(f"feature visualisation of {channels} channels: out of memory")
    else:
        skipped.append("feature visualisation: out of time")
    for precision in ("bf16", "fp32"):  # compiled last: each batch compiles anew
        for batch in [*batches[::-1], None]:
            measure(precision, True, batch)
    return {
        "model": "tiny" if args.tiny else "ViT-B-16 (random weights)",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "clipforge": clipforge.__version__,
        "size": size,
        "copies": 13,
        "warmup_steps": warmup,
        "timed_steps": args.steps,
        "paper_steps": PAPER_STEPS,
        "rows": rows,
        "feature_visualisation": fv,
        "fv_steps": FV_STEPS,
        "skipped": skipped,
        "budget_seconds": args.budget,
        "seconds": round(args.budget - budget.left(), 1),
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        f"{report['model']} on {report['device']}, {report['size']} px, {report['copies']} copies "
        f"(torch {report['torch']}; {report['timed_steps']} timed steps after {report['warmup_steps']}):",
        "",
        "| precision | compile | batch | s/step | s per prompt (3400 steps) | peak MiB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['precision']} | {'yes' if r['compile'] else 'no'} | {r['batch']} | {r['seconds_per_step']:.3f} "
            f"| {r['seconds_per_prompt']:.1f} | {r['peak_memory_mib']:.0f} |"
        )
    fv = report["feature_visualisation"]
    if fv:
        lines += [
            "",
            f"Feature visualisation, {fv['channels']} channels of {fv['layer']} in one batch: "
            f"{fv['seconds_per_step']:.3f} s/step, {fv['seconds_per_channel']:.1f} s per channel "
            f"({report['fv_steps']} steps), peak {fv['peak_memory_mib']:.0f} MiB.",
        ]
    for s in report["skipped"]:
        lines.append(f"- skipped: {s}")
    lines.append(f"\n{report['seconds']:.0f} s of a {report['budget_seconds']:.0f} s budget.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a tiny model at 32 px (the CPU test)")
    parser.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32])
    parser.add_argument("--largest-cap", type=int, default=512, help="the largest batch tried")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--fv-channels", type=int, default=64)
    parser.add_argument("--budget", type=float, default=420.0, help="seconds in all (a device call gives 8 minutes)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device here: use --device cpu (with --tiny for a quick run)")
    report = check(args)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    text = table(report)
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)
    return report


if __name__ == "__main__":
    main()
