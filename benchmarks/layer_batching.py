"""Visualising N channels of a layer in one batched run (N prompts, each a channel's objective, as
``clipforge layer`` does) against one run per channel in a loop, with the same steps and settings.

Both run in this process through the engine, on the same model and shapes; each is timed whole
(building the run included: a loop pays it once per channel), and within its optimisation loop (from
its first step to its last). The batched run goes first, after a short warm-up run; ``--repeats``
alternates the two and keeps the medians. The images of the two are compared too: a channel's image
does not depend on the channels beside it, so they agree up to the order of float sums.

    python -m benchmarks.layer_batching --threads 1 --channels 16 --steps 50

Prints seconds, channels per second and the speed-up; ``--json``: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from typing import Any

import torch

from benchmarks.common import RunClock, resolved
from clipforge import Options
from clipforge.engine import Engine


def run_spec(
    backbone: dict[str, Any], layer: str, channels: list[int], steps: int, copies: int, device: str = "cpu"
) -> dict[str, Any]:
    """The run ``clipforge layer`` makes of one batch of channels (the example spec's settings)."""
    return {
        "prompts": [
            {"objectives": [{"name": "channel", "options": {"layer": layer, "channel": c}}], "label": f"channel {c}"}
            for c in channels
        ],
        "seeds": [0],
        "backbones": [backbone],
        "regularizers": [{"name": "tv", "options": {"weight": 0.02}}],
        "copies": copies,
        "steps": steps,
        "resolution": [{"step": 0, "size": 32}, {"step": max(1, steps // 2), "size": 64}],
        "callbacks": [],
        "device": device,
    }


def timed(spec: dict[str, Any]) -> tuple[float, float, torch.Tensor]:
    """(seconds whole, seconds in the loop, images) of one engine run."""
    clock = RunClock(Options())
    start = time.perf_counter()
    result = Engine(resolved(spec), callbacks=[clock]).run()
    return time.perf_counter() - start, clock.seconds, result.images


def figures(channels: int, batched: float, loop: float) -> dict[str, float]:
    """Seconds, channels per second and the speed-up (the loop's seconds over the batched run's)."""
    return {
        "batched_seconds": batched,
        "loop_seconds": loop,
        "batched_channels_per_second": channels / batched,
        "loop_channels_per_second": channels / loop,
        "speedup": loop / batched,
    }


def compare(
    backbone: dict[str, Any],
    layer: str,
    channels: list[int],
    steps: int,
    copies: int,
    repeats: int = 1,
    device: str = "cpu",
) -> dict[str, Any]:
    timed(run_spec(backbone, layer, channels[:1], 2, 1, device))  # warm-up: the model read, the kernels chosen
    whole: dict[str, list[float]] = {"batched": [], "loop": []}
    inner: dict[str, list[float]] = {"batched": [], "loop": []}
    for _ in range(repeats):
        seconds, loop_seconds, together = timed(run_spec(backbone, layer, channels, steps, copies, device))
        whole["batched"].append(seconds)
        inner["batched"].append(loop_seconds)
        alone, total, total_inner = [], 0.0, 0.0
        for channel in channels:
            seconds, loop_seconds, images = timed(run_spec(backbone, layer, [channel], steps, copies, device))
            total, total_inner = total + seconds, total_inner + loop_seconds
            alone.append(images[0])
        whole["loop"].append(total)
        inner["loop"].append(total_inner)
    median = {k: statistics.median(v) for k, v in whole.items()}
    median_inner = {k: statistics.median(v) for k, v in inner.items()}
    return {
        "channels": len(channels),
        "steps": steps,
        "copies": copies,
        "repeats": repeats,
        **figures(len(channels), median["batched"], median["loop"]),
        "in_loop": figures(len(channels), median_inner["batched"], median_inner["loop"]),
        "max_image_difference": float((together - torch.stack(alone)).abs().max()),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toyworld-rn")
    parser.add_argument("--layer", default="layer2")
    parser.add_argument("--channels", type=int, default=16, help="channels 0..N-1 of the layer")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="'cpu', 'cuda' (the GPU figure: --device cuda --channels 128)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    backbone = {"name": "open_clip", "options": {"model": args.model}}
    channels = list(range(args.channels))
    out = compare(backbone, args.layer, channels, args.steps, args.copies, args.repeats, args.device)
    out.update(model=args.model, layer=args.layer, threads=args.threads, device=args.device)
    out["command"] = "python -m benchmarks.layer_batching " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.json:
        print(json.dumps(out, indent=2))
        return out
    n, inner = out["channels"], out["in_loop"]
    print(
        f"{n} channels of {args.model} {args.layer}, {args.steps} steps, {args.copies} copies, on {args.device}, "
        f"{args.threads} thread(s)"
    )
    print(
        f"batched (one run of {n} prompts): {out['batched_seconds']:.1f} s, "
        f"{out['batched_channels_per_second']:.3f} channels/s"
    )
    print(
        f"loop (one run per channel):      {out['loop_seconds']:.1f} s, "
        f"{out['loop_channels_per_second']:.3f} channels/s"
    )
    print(f"speed-up: {out['speedup']:.2f}x (in the optimisation loops alone: {inner['speedup']:.2f}x)")
    print(f"largest difference between the two's images: {out['max_image_difference']:.2g}")
    print(f"command: {out['command']}")
    return out


if __name__ == "__main__":
    main()
