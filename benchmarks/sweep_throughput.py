"""Sweep throughput against a shell loop, and the cost of resuming a finished sweep.

The shell loop is how users run the authors' script: one ``clipforge invert`` process per prompt and
seed, each loading the model and inverting one image. The sweep is one ``clipforge sweep`` process that
inverts the same prompts (one seed each) in engine batches. Both run the same settings on the same
model, one after the other, each as its own process; then the finished sweep's command is run again
and timed (it has nothing left to do).

    python -m benchmarks.sweep_throughput --json                      # 96 items on toyworld-vit
    python -m benchmarks.sweep_throughput --json --model ViT-B-16 --pretrained openai --device cuda   # GPU

Prints items per hour for each, their ratio, and the resume time; ``--json``: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.toyworld_eval import draw_prompts


def settings(args: argparse.Namespace) -> dict:
    options = {"model": args.model, **({"pretrained": args.pretrained} if args.pretrained else {})}
    spec = {
        "backbones": [{"name": "open_clip", "options": options}],
        "steps": args.steps,
        "device": args.device,
        "callbacks": [],
    }
    if args.model.startswith("toyworld"):  # the paper's schedule scaled to the offline models' 64 px
        third = max(1, args.steps // 3)
        spec["resolution"] = [{"step": i * third, "size": s} for i, s in enumerate([16, 32, 64])]
    return spec  # otherwise the paper's own schedule (64 -> 128 -> 224 px at steps 900 and 1800)


def timed(command: list[str]) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=96)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=2, help="seeds per prompt (the offline world has 90 captions)")
    parser.add_argument("--batch", type=int, default=16, help="the sweep's batch_size")
    parser.add_argument("--model", default="toyworld-vit")
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    prompts = draw_prompts(args.items // args.seeds, seed=0)
    seeds = list(range(args.seeds))
    items = len(prompts) * len(seeds)
    base = settings(args)
    python = [sys.executable, "-m", "clipforge"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        loop_seconds = 0.0
        for i, prompt in enumerate(prompts):  # the shell loop: one process per prompt and seed
            for seed in seeds:
                spec = work / f"prompt_{i}_{seed}.json"
                spec.write_text(json.dumps({**base, "prompts": [prompt], "seeds": [seed]}))
                loop_seconds += timed([*python, "invert", str(spec), "--out", str(work / f"run_{i}_{seed}")])
        sweep = work / "sweep.json"
        sweep.write_text(
            json.dumps(
                {
                    "base": {k: v for k, v in base.items() if k != "callbacks"},
                    "prompts": prompts,
                    "seeds": seeds,
                    "batch_size": args.batch,
                }
            )
        )
        command = [*python, "sweep", str(sweep), "--out", str(work / "sweep")]
        sweep_seconds = timed(command)
        resume_seconds = timed(command)
        index = (work / "sweep" / "index.jsonl").read_text().splitlines()
    result = {
        "items": items,
        "steps": args.steps,
        "model": args.model,
        "device": args.device,
        "batch_size": args.batch,
        "loop_seconds": round(loop_seconds, 1),
        "sweep_seconds": round(sweep_seconds, 1),
        "loop_items_per_hour": round(items / loop_seconds * 3600),
        "sweep_items_per_hour": round(items / sweep_seconds * 3600),
        "throughput_ratio": round(loop_seconds / sweep_seconds, 2),
        "resume_finished_seconds": round(resume_seconds, 2),
        "sweep_items_done": len(index),
    }
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k:>24}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
