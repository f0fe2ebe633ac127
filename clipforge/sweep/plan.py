"""A sweep's plan (``clipforge sweep SPEC --plan``): its grid points and blocks, and the memory a
block needs, before anything runs."""

from __future__ import annotations

import json
from typing import Any

import torch

from clipforge.registry import ResolvedComponent, ResolvedSpec
from clipforge.sweep.spec import Block, Sweep


def estimate_memory(
    resolved: ResolvedSpec,
    images: int,
    measured: dict[str, tuple[int, int]] | None = None,
    built: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Bytes one block of ``images`` images of a run spec needs at its largest size, before anything
    runs: the backbones' weights; the activations one augmented copy keeps for the backward pass,
    measured by passing one copy through each backbone on the CPU (saved-tensor hooks count what
    autograd keeps), times the copies that go through at once (``chunk_copies``, or all of them); and
    the images with their gradients and Adam's two moments. An estimate, on the high side for the
    activations (a tensor autograd keeps twice, as views, is counted twice; bf16 halves them); the
    device's own overheads (kernels' workspaces, the allocator's rounding) come on top.

    ``measured`` (a dict kept across calls, e.g. over a plan's grid points) remembers each distinct
    backbone's weights and activations, so that each is built once, not once per grid point;
    ``built`` (likewise) keeps the backbones built, by the same key (:func:`backbone_key`)."""
    spec = resolved.spec
    weights = per_copy = 0
    measured = {} if measured is None else measured
    for component in resolved.components["backbones"]:
        key = backbone_key(component)
        if key not in measured:
            measured[key] = _measure_backbone(component, built)
        weights += measured[key][0]
        per_copy += measured[key][1]
    copies = images * spec.copies
    at_once = min(copies, spec.performance.chunk_copies or copies)
    size = max(step.size for step in spec.resolution)
    image_bytes = images * 3 * size * size * 4 * 4  # the images, their gradients, Adam's two moments
    activations = per_copy * at_once
    return {
        "weights": weights,
        "activations": activations,
        "images": image_bytes,
        "total": weights + activations + image_bytes,
    }


def backbone_key(component: ResolvedComponent) -> str:
    """What tells two backbones apart: the reference with every option."""
    return json.dumps(component.ref().model_dump(mode="json"), sort_keys=True)


def _measure_backbone(component: ResolvedComponent, built: dict[str, Any] | None = None) -> tuple[int, int]:
    """A backbone's weights, and the activations one copy keeps for the backward pass, in bytes:
    built on the CPU (once: kept in ``built`` when given), one copy passed through it with
    saved-tensor hooks counting what autograd keeps."""
    key = backbone_key(component)
    backbone = built.get(key) if built is not None else None
    if backbone is None:
        backbone = component.build(torch.device("cpu"))
    if built is not None:
        built[key] = backbone
    model = backbone.model
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) if isinstance(model, torch.nn.Module) else 0
    saved = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved[0] += tensor.numel() * tensor.element_size()
        return tensor

    pixels = torch.rand(1, 3, *backbone.input_size, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        backbone.encode_image(pixels)
    return weights, saved[0]


#: run-spec fields that no objective's start reads: grid points that differ only in these are checked once
NOT_AT_THE_START = {"optimizer", "steps", "log_every", "checkpoint_every", "regularizers", "augmentations"}


def start_problems(sweep: Sweep, built: dict[str, Any]) -> dict[int, list[tuple[str, str]]]:
    """What each grid point's runs would refuse at their start, found as ``clipforge validate`` finds
    it (:meth:`Engine.check`): every block's objectives built as the sweep builds them (its prompts,
    with their places in the sweep, and its seeds) on the point's backbones, taken from ``built``
    (each built once for the whole plan). Points that differ only in :data:`NOT_AT_THE_START` are
    checked once. Returns (JSON path, reason) pairs by grid point; a point without problems is absent."""
    from clipforge.engine import Engine
    from clipforge.sweep.runner import block_spec

    by_point: dict[int, list[Block]] = {}
    for block in sweep.blocks:
        by_point.setdefault(block.point, []).append(block)
    checked: dict[str, list[tuple[str, str]]] = {}
    found: dict[int, list[tuple[str, str]]] = {}
    for i, point in enumerate(sweep.points):
        key = json.dumps({k: v for k, v in point.run.items() if k not in NOT_AT_THE_START}, sort_keys=True)
        if key not in checked:
            backbones = []
            for component in point.resolved.components["backbones"]:
                if backbone_key(component) not in built:
                    built[backbone_key(component)] = component.build(torch.device("cpu"))
                backbones.append(built[backbone_key(component)])
            checked[key] = []
            for block in by_point[i]:  # as the runner makes a block's run spec
                prompts = list(dict.fromkeys(item.prompt_index for item in block.items))
                text = {item.prompt_index: item.prompt for item in block.items}
                seeds = list(dict.fromkeys(item.seed for item in block.items))
                goals = {j: sweep.goals[p] for j, p in enumerate(prompts) if p in sweep.goals}
                resolved = block_spec(point, [text[p] for p in prompts], goals, seeds, None, prompts)
                for problem in Engine(resolved).check(backbones):
                    if problem not in checked[key]:  # the spec's objectives fail alike in every block
                        checked[key].append(problem)
        if checked[key]:
            found[i] = checked[key]
    return found


def plan_lines(sweep: Sweep, problems: list[tuple[str, str]] | None = None) -> list[str]:
    """What ``--plan`` prints: a line per grid point (its items, blocks, steps, copies and the memory
    its largest block needs), under it what would refuse the point's runs at their start, and the
    totals. ``problems``, when given, gets those (JSON path under the point's name, reason)."""
    measured: dict[str, tuple[int, int]] = {}  # each distinct backbone built once, not once per point
    built: dict[str, Any] = {}
    by_point: dict[int, list[Block]] = {}
    for block in sweep.blocks:
        by_point.setdefault(block.point, []).append(block)
    lines = []
    for i, point in enumerate(sweep.points):
        blocks = by_point[i]
        settings = ", ".join(f"{k}={json.dumps(v)}" for k, v in point.settings.items()) or "base"
        largest = max(len(b.items) for b in blocks)
        gib = {k: v / 2**30 for k, v in estimate_memory(point.resolved, largest, measured, built).items()}
        lines.append(
            f"point {i} ({settings}): {sum(len(b.items) for b in blocks)} items in {len(blocks)} blocks of "
            f"up to {largest}, {point.spec.steps} steps each, {point.spec.copies} copies; "
            f"memory per block about {gib['total']:.2f} GiB (weights {gib['weights']:.2f}, activations "
            f"{gib['activations']:.2f}, images {gib['images']:.2f})"
        )
    failing = start_problems(sweep, built)
    for i, found in sorted(failing.items(), reverse=True):  # under each point's line, from the last
        lines[i + 1 : i + 1] = [f"  would fail at its start: {path}: {reason}" for path, reason in found]
        if problems is not None:
            problems[:0] = [(f"{sweep.points[i].where}: {path}", reason) for path, reason in found]
    note = f"; {len(failing)} of {len(sweep.points)} grid point(s) would fail at their start" if failing else ""
    lines.append(f"{len(sweep.items)} items, {len(sweep.blocks)} blocks{note}")
    return lines
