"""A run's rows (one per prompt and seed: their names and labels), its device, and, at its end, which
of its images came out flat: what the engine (:mod:`clipforge.engine`) asks before and after its loop."""

from __future__ import annotations

import warnings

import torch

from clipforge.components import InversionResult, Row
from clipforge.files import slug
from clipforge.registry import ResolvedSpec
from clipforge.result import FLAT_STD
from clipforge.spec import RunSpec


def goal_labels(resolved: ResolvedSpec) -> dict[int, str]:
    """The label of each prompt without a target: its objectives as they describe themselves."""
    labels = {}
    for p, prompt in enumerate(resolved.spec.prompts):
        if not prompt.has_target:
            parts = []
            path, goal = resolved.goal(p)
            for i, c in enumerate(goal):
                weight = getattr(c.options, "weight", 1.0)
                text = c.describe(resolved.path(path, i))
                parts.append(text if weight == 1.0 else f"{weight:g}*{text}")
            labels[p] = " + ".join(parts)
    return labels


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for, but CUDA is not available here; use 'auto' or 'cpu'")
    return device


def make_rows(spec: RunSpec, goal_labels: dict[int, str] | None = None) -> list[Row]:
    """One row per prompt and seed. ``goal_labels``: the label of a prompt without text, image or
    terms (what its objectives say), by its index; without one it is named by its objectives."""
    rows, used = [], set()
    for p, prompt in enumerate(spec.prompts):
        text = prompt.display()
        if not prompt.label and not prompt.has_target:
            text = (goal_labels or {}).get(p) or " + ".join(ref.name for ref in spec.goal(p))
        base = slug(text, 48) or "prompt"
        for seed in spec.seeds:
            name = f"{p:02d}-{base}-seed{seed}"
            while name in used:
                name += "x"
            used.add(name)
            rows.append(Row(index=len(rows), prompt_index=p, seed=seed, label=text, slug=name))
    return rows


def flat_images(images: torch.Tensor, withheld: torch.Tensor) -> list[bool]:
    """Per image, whether it came out flat: every colour channel's standard deviation over the image
    (clamped to [0, 1], as the 8-bit PNG holds it before any rescaling) below ``FLAT_STD``. A plain
    black, white, gray or single-colour image is flat; a withheld image is not judged (its zeros are
    the screen's, not the run's)."""
    if images.numel() == 0:
        return [False] * images.shape[0]
    spread = images.float().clamp(0, 1).flatten(2).std(dim=2).amax(dim=1)
    return [bool(s < FLAT_STD) and not bool(w) for s, w in zip(spread, withheld)]


def warn_flat(result: InversionResult) -> None:
    """Say which images came out flat (a collapse, as a dead unit or a saturated squash gives): saved,
    but not silently."""
    names = [row.slug for row in result.rows if result.flat and result.flat[row.index]]
    if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        warnings.warn(
            f"{len(names)} of {len(result.rows)} image(s) came out flat (every colour's standard deviation below "
            f"{FLAT_STD}): {shown}; run.json lists them under 'flat'",
            stacklevel=3,
        )
