"""How much the engine costs over a plain PyTorch loop doing the same math.

Both run in this process on the same tiny open_clip model and shapes: B images, K copies each,
random affine on every copy, bicubic resize to the model input, the L2 data term, TV, per-image
gradient clipping, clamping and Adam. The engine's time is measured from its first step to its
last (callbacks off, metrics gathered every step as by default); the plain loop's the same way.
Repeats alternate between the two; ``ratio`` is the median over repeats of each repeat's ratio (the
engine's run over the plain run just after it: a pair shares the machine's state, so the slow drift
of a CPU's clock over a run cancels), ``ratio_of_medians`` the ratio of the two medians.

    python -m benchmarks.engine_overhead --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from benchmarks.common import RunClock, paper_affine, resolved, tv_four_directions
from clipforge import Options, default_registry
from clipforge.engine import Engine

CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}


def spec(steps: int, batch: int, copies: int) -> dict:
    return {
        "prompts": [f"prompt number {i}" for i in range(batch)],
        "backbones": [{"name": "open_clip", "options": {"config": CONFIG}}],
        "steps": steps,
        "copies": copies,
        "resolution": [{"step": 0, "size": 64}],
        "augmentations": ["random_affine", "resize"],
        "regularizers": [{"name": "tv", "options": {"weight": 0.005}}],
        "callbacks": [],
        "device": "cpu",
    }


def engine_seconds(steps: int, batch: int, copies: int) -> float:
    clock = RunClock(Options())
    Engine(resolved(spec(steps, batch, copies)), callbacks=[clock]).run()
    return clock.seconds


def plain_seconds(steps: int, batch: int, copies: int) -> float:
    """The same math written as a plain loop, as a researcher would write it by hand."""
    ref = {"name": "open_clip", "options": {"config": CONFIG}}
    backbone = default_registry().build("backbone", ref, torch.device("cpu"))
    model, mean, std = backbone.model, backbone.mean, backbone.std
    with torch.no_grad():
        text = F.normalize(model.encode_text(backbone.tokenizer([f"prompt number {i}" for i in range(batch)])), dim=-1)
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(batch, 3, 64, 64, generator=gen).requires_grad_(True)
    opt = torch.optim.Adam([image], lr=0.1)
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        x = image.repeat_interleave(copies, dim=0)
        x = paper_affine(x, torch.rand(batch * copies, 5, generator=gen))
        emb = F.normalize(model.encode_image((x - mean) / std), dim=-1).view(batch, copies, -1)
        data = (emb - text[:, None]).norm(dim=-1).mean(1)
        loss = data + 0.005 * tv_four_directions(image)
        loss.sum().backward()
        norms = image.grad.flatten(1).norm(dim=1)
        image.grad.mul_((1.0 / (norms + 1e-6)).clamp(max=1).view(-1, 1, 1, 1))
        image.data.clamp_(0, 1)
        opt.step()
        logged = loss.detach().cpu().tolist()  # the engine also gathers metrics every step
    del logged
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--copies", type=int, default=13)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    engine_seconds(3, args.batch, args.copies), plain_seconds(3, args.batch, args.copies)  # warm up
    engine, plain = [], []
    for _ in range(args.repeats):
        engine.append(engine_seconds(args.steps, args.batch, args.copies) / args.steps)
        plain.append(plain_seconds(args.steps, args.batch, args.copies) / args.steps)
    result = {
        "benchmark": "engine_overhead",
        "model": "open_clip ViT (config: 64 px, patch 8, width 64, 2 layers), random weights",
        "batch": args.batch,
        "copies": args.copies,
        "steps": args.steps,
        "repeats": args.repeats,
        "threads": args.threads,
        "device": "cpu",
        "engine_seconds_per_step": statistics.median(engine),
        "plain_seconds_per_step": statistics.median(plain),
    }
    result["ratio"] = statistics.median(e / p for e, p in zip(engine, plain))
    result["ratio_of_medians"] = result["engine_seconds_per_step"] / result["plain_seconds_per_step"]
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")


if __name__ == "__main__":
    main()
