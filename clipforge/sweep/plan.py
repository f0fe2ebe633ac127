"""A sweep's plan (``clipforge sweep SPEC --plan``): its grid points and blocks, and the memory a
block needs, before anything runs."""

from __future__ import annotations

import json

import torch

from clipforge.registry import ResolvedComponent, ResolvedSpec
from clipforge.sweep.spec import Block, Sweep


def estimate_memory(
    resolved: ResolvedSpec, images: int, measured: dict[str, tuple[int, int]] | None = None
) -> dict[str, int]:
    """Bytes one block of ``images`` images of a run spec needs at its largest size, before anything
    runs: the backbones' weights; the activations one augmented copy keeps for the backward pass,
    measured by passing one copy through each backbone on the CPU (saved-tensor hooks count what
    autograd keeps), times the copies that go through at once (``chunk_copies``, or all of them); and
    the images with their gradients and Adam's two moments. An estimate, on the high side for the
    activations (a tensor autograd keeps twice, as views, is counted twice; bf16 halves them); the
    device's own overheads (kernels' workspaces, the allocator's rounding) come on top.

    ``measured`` (a dict kept across calls, e.g. over a plan's grid points) remembers each distinct
    backbone's weights and activations, so that each is built once, not once per grid point."""
    spec = resolved.spec
    weights = per_copy = 0
    measured = {} if measured is None else measured
    for component in resolved.components["backbones"]:
        key = json.dumps(component.ref().model_dump(mode="json"), sort_keys=True)
        if key not in measured:
            measured[key] = _measure_backbone(component)
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


def _measure_backbone(component: ResolvedComponent) -> tuple[int, int]:
    """A backbone's weights, and the activations one copy keeps for the backward pass, in bytes:
    built on the CPU, one copy passed through it with saved-tensor hooks counting what autograd keeps."""
    backbone = component.build(torch.device("cpu"))
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


def plan_lines(sweep: Sweep) -> list[str]:
    """What ``--plan`` prints: a line per grid point (its items, blocks, steps, copies and the memory
    its largest block needs), and the totals."""
    measured: dict[str, tuple[int, int]] = {}  # each distinct backbone built once, not once per point
    by_point: dict[int, list[Block]] = {}
    for block in sweep.blocks:
        by_point.setdefault(block.point, []).append(block)
    lines = []
    for i, point in enumerate(sweep.points):
        blocks = by_point[i]
        settings = ", ".join(f"{k}={json.dumps(v)}" for k, v in point.settings.items()) or "base"
        largest = max(len(b.items) for b in blocks)
        gib = {k: v / 2**30 for k, v in estimate_memory(point.resolved, largest, measured).items()}
        lines.append(
            f"point {i} ({settings}): {sum(len(b.items) for b in blocks)} items in {len(blocks)} blocks of "
            f"up to {largest}, {point.spec.steps} steps each, {point.spec.copies} copies; "
            f"memory per block about {gib['total']:.2f} GiB (weights {gib['weights']:.2f}, activations "
            f"{gib['activations']:.2f}, images {gib['images']:.2f})"
        )
    lines.append(f"{len(sweep.items)} items, {len(sweep.blocks)} blocks")
    return lines
