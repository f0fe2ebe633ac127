"""Throughput of batched inversion against a faithful naive loop (the authors' code's shape).

The naive loop inverts one prompt at a time in fp32 with the paper's setup and reads the loss back
with ``.item()`` every step, as the issue defines it. It also keeps what the authors' ``invert.py``
does on every step besides the paper's math: it runs under ``torch.autograd.set_detect_anomaly(True)``
(set at the top of their script), computes the L1 term at weight 0 and applies the colour shift at its
identity defaults. Anomaly detection alone makes their loop several times slower, so the naive loop is
also timed without it, and both ratios are reported: the second isolates what batching itself gains.
(Their kornia ``RandomAffine`` and PNG snapshot every 100 steps are left out; the vectorised affine
here is cheaper than kornia's, so the naive loop errs on the fast side.) The batched
engine inverts many prompts x seeds per step and gathers metrics every 50 steps (no host sync in
between); on CUDA it also uses bf16 autocast for the backbone and TF32; ``--compile`` adds
``torch.compile`` of the backbone (compile time excluded: a warm-up runs first). Both run in this
process, on the same model and shapes.

A "step" costs about the same at every resolution of the schedule (the model always sees its full
input size), but not exactly, so each method is timed for ``--steps`` steps in each of the three
phases (64, 128, 224 px) and the phases are weighted by their share of the paper's 3400 steps.

    python -m benchmarks.speed --json                                    # CPU, offline model
    python -m benchmarks.speed --json --model vit-b-16 --steps 2 --batch 2   # CPU, random ViT-B/16
    python -m benchmarks.speed --json --model vit-b-16 --device cuda --batch 32 --steps 20   # GPU
    python -m benchmarks.speed --json --model vit-b-16 --device cuda --batch 32 --full        # GPU, all 3400 steps

Prints images per hour, seconds per step, peak memory and the ratios; ``--json``: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from benchmarks.common import PeakMemory, PhaseClock, paper_affine, resolved, sync, tv_four_directions
from clipforge import Backbone
from clipforge.engine import Engine
from clipforge.judge import load_backbone

PAPER_STEPS = 3400
PAPER_PHASES = (900, 900, 1600)  # steps at 64, 128 and 224 px (scaled for smaller models)
MODELS = {
    "toyworld": ({"name": "open_clip", "options": {"model": "toyworld-vit"}}, (16, 32, 64)),
    "vit-b-16": ({"name": "open_clip", "options": {"model": "ViT-B-16", "pretrained": "random"}}, (64, 128, 224)),
}


def naive_inversion(
    backbone: Backbone,
    prompt: str,
    sizes: tuple[int, int, int],
    steps_per_phase: int,
    copies: int,
    device: torch.device,
    *,
    anomaly: bool,
) -> list[float]:
    """One prompt, fp32, the authors' loop, under their anomaly detection when ``anomaly`` is on;
    returns seconds for each phase."""
    with torch.autograd.set_detect_anomaly(anomaly):
        return _naive_phases(backbone, prompt, sizes, steps_per_phase, copies, device)


def _naive_phases(
    backbone: Backbone,
    prompt: str,
    sizes: tuple[int, int, int],
    steps_per_phase: int,
    copies: int,
    device: torch.device,
) -> list[float]:
    model, mean, std, size = backbone.model, backbone.mean, backbone.std, backbone.input_size
    with torch.no_grad():
        text = F.normalize(model.encode_text(backbone.tokenizer([prompt]).to(device)), dim=-1)
    image = torch.rand(1, 3, sizes[0], sizes[0], device=device).requires_grad_(True)
    times = []
    for phase, side in enumerate(sizes):
        if phase:
            image = F.interpolate(image.detach(), size=(side, side), mode="bicubic").requires_grad_(True)
        optimizer = torch.optim.Adam([image], lr=0.1)
        sync(device)
        start = time.perf_counter()
        for _ in range(steps_per_phase):
            optimizer.zero_grad()
            tv = tv_four_directions(image).sum()  # one image
            x = paper_affine(image.repeat(copies, 1, 1, 1), torch.rand(copies, 5, device=device))
            x = F.interpolate(x, size=size, mode="bicubic")
            # the authors' colour shift, redrawn every step; their defaults (0, 0) make it the identity
            shift = (torch.rand(copies, 3, 1, 1, device=device) - 0.5) * 2 * 0.0
            scale = ((torch.rand(copies, 3, 1, 1, device=device) - 0.5) * 2 * 0.0).exp()
            x = (x - shift) / scale
            features = F.normalize(model.encode_image((x - mean) / std), dim=-1)
            l1 = image.norm(p=1)  # computed at weight 0, as theirs is
            loss = (features - text).norm(dim=1).mean() + 0.005 * tv + 0.0 * l1
            loss.backward()
            torch.nn.utils.clip_grad_norm_([image], 1.0)
            image.data = torch.clamp(image.data, 0, 1)
            optimizer.step()
            loss.item()  # the authors log the loss every step: a host sync
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def batched_inversion(
    backbone_ref: dict,
    prompts: list[str],
    sizes: tuple[int, int, int],
    steps_per_phase: int,
    copies: int,
    device: torch.device,
    fast: bool,
    chunk: int | None,
    compile: bool = False,
) -> list[float]:
    spec = {
        "prompts": prompts,
        "backbones": [backbone_ref],
        "steps": 3 * steps_per_phase,
        "copies": copies,
        "resolution": [{"step": i * steps_per_phase, "size": s} for i, s in enumerate(sizes)],
        "callbacks": [],
        "device": str(device),
        "log_every": 50,
        "performance": {
            "precision": "bf16" if fast else "fp32",
            "tf32": fast,
            "chunk_copies": chunk,
            "compile": compile,
        },
    }
    clock = PhaseClock(device, steps_per_phase)
    Engine(resolved(spec), callbacks=[clock]).run()
    return clock.times


def weighted_seconds_per_step(phase_seconds: list[float], steps_per_phase: int) -> float:
    per_step = [t / steps_per_phase for t in phase_seconds]
    return sum(p * n for p, n in zip(per_step, PAPER_PHASES)) / PAPER_STEPS


def measure(
    fns: dict[str, Callable[[], list[float]]], device: torch.device, repeats: int, steps_per_phase: int
) -> dict[str, dict]:
    """Time every method ``repeats`` times, taking turns (so that drift of the machine's speed hits
    them alike), and keep each one's median seconds per step and its peak memory."""
    runs: dict[str, list[float]] = {name: [] for name in fns}
    peaks = dict.fromkeys(fns, 0)
    for _ in range(repeats):
        for name, fn in fns.items():
            with PeakMemory(device) as mem:
                times = fn()
            peaks[name] = max(peaks[name], mem.peak)
            runs[name].append(weighted_seconds_per_step(times, steps_per_phase))
    return {
        name: {
            "seconds_per_step": statistics.median(runs[name]),
            "runs": runs[name],
            "peak_memory_mib": round(peaks[name] / 2**20, 1),
        }
        for name in fns
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="toyworld")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=24, help="prompts inverted together by the engine")
    parser.add_argument("--naive-prompts", type=int, default=1, help="prompts the naive loop inverts (one at a time)")
    parser.add_argument("--steps", type=int, default=10, help="steps timed in each of the three phases")
    parser.add_argument("--full", action="store_true", help="time all of the paper's 3400 steps (900/900/1600)")
    parser.add_argument("--copies", type=int, default=13)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=None, help="copies per backbone pass (memory)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the backbone in batched mode (compile time is excluded: warm-up runs first)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ref, sizes = MODELS[args.model]
    fast = device.type == "cuda"
    steps = args.steps
    if args.full:
        steps = PAPER_STEPS // 3  # three equal phases of the same total length
    prompts = [
        f"a prompt number {i}" if args.model != "toyworld" else p
        for i, p in enumerate(
            [
                "a red circle on a gray background",
                "a blue square on a black background",
                "a green triangle on a white background",
                "a yellow cross on a gray background",
            ]
            * 64
        )
    ][: args.batch]

    backbone = load_backbone(ref, device)
    # warm-up (allocator, kernels, autocast caches)
    naive_inversion(backbone, prompts[0], sizes, 1, args.copies, device, anomaly=False)
    naive_inversion(backbone, prompts[0], sizes, 1, args.copies, device, anomaly=True)
    batched_inversion(ref, prompts, sizes, 1, args.copies, device, fast, args.chunk, args.compile)

    def naive(anomaly: bool) -> Callable[[], list[float]]:
        return lambda: [
            sum(t)
            for t in zip(
                *[
                    naive_inversion(backbone, p, sizes, steps, args.copies, device, anomaly=anomaly)
                    for p in prompts[: args.naive_prompts]
                ]
            )
        ]

    results = measure(
        {
            "naive": naive(anomaly=True),
            "naive_without_anomaly_detection": naive(anomaly=False),
            "batched": lambda: batched_inversion(
                ref, prompts, sizes, steps, args.copies, device, fast, args.chunk, args.compile
            ),
        },
        device,
        args.repeats,
        steps,
    )
    for name in ("naive", "naive_without_anomaly_detection"):  # per image: the naive loop steps one at a time
        results[name]["seconds_per_step"] /= args.naive_prompts
        results[name]["runs"] = [t / args.naive_prompts for t in results[name]["runs"]]
    for name, images_per_step in (("naive", 1), ("naive_without_anomaly_detection", 1), ("batched", args.batch)):
        r = results[name]
        r["images_per_hour"] = 3600 * images_per_step / (r["seconds_per_step"] * PAPER_STEPS)
        r["seconds_per_image_full_setup"] = r["seconds_per_step"] * PAPER_STEPS / images_per_step
    naive_with, naive_without, batched = (results[k] for k in ("naive", "naive_without_anomaly_detection", "batched"))
    report = {
        "benchmark": "speed",
        "model": args.model,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if fast else "cpu",
        "threads": args.threads,
        "batch": args.batch,
        "copies": args.copies,
        "steps_per_phase": steps,
        "engine_settings": {
            "precision": "bf16" if fast else "fp32",
            "tf32": fast,
            "log_every": 50,
            "chunk_copies": args.chunk,
            "compile": args.compile,
        },
        "memory_measure": "CUDA max_memory_allocated" if fast else "growth of the process's RSS during the run",
        "naive": naive_with,
        "naive_without_anomaly_detection": naive_without,
        "batched": batched,
        "throughput_ratio": batched["images_per_hour"] / naive_with["images_per_hour"],
        "throughput_ratio_without_anomaly_detection": batched["images_per_hour"] / naive_without["images_per_hour"],
        # on the CPU the "peak" is RSS growth, near zero for the naive loop after the warm-up: no ratio
        "memory_ratio": batched["peak_memory_mib"] / naive_with["peak_memory_mib"] if fast else None,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
