"""Judging inversions with a second, held-out model.

An inversion "transfers" when a model that was not inverted still recognises the prompt in it:
the judge embeds each inverted image and ranks every candidate caption by cosine similarity.
Transfer accuracy is the fraction of images whose top caption is their prompt; the margin is the
prompt's similarity minus the best other caption's (positive when the judge is right).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from clipforge.components import Backbone
from clipforge.registry import Registry, default_registry
from clipforge.spec import ComponentRef


@dataclass
class Verdicts:
    """The judge's view of N images."""

    top: list[str]
    correct: list[bool]
    margin: list[float]
    similarity: list[float]  # to the image's own prompt

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / max(len(self.correct), 1)

    @property
    def mean_margin(self) -> float:
        return sum(self.margin) / max(len(self.margin), 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "mean_margin": self.mean_margin,
            "top": self.top,
            "correct": self.correct,
            "margin": self.margin,
            "similarity": self.similarity,
        }


def load_backbone(
    ref: ComponentRef | dict[str, Any] | str, device: torch.device | str = "cpu", registry: Registry | None = None
) -> Backbone:
    """Build a backbone outside a run, e.g. ``{"name": "open_clip", "options": {"model": "toyworld-judge"}}``."""
    return (registry or default_registry()).build("backbone", ref, torch.device(device))


class Judge:
    """Zero-shot classification of images against a fixed list of captions."""

    def __init__(self, backbone: Backbone, captions: Sequence[str]) -> None:
        self.backbone = backbone
        self.captions = list(captions)
        self._index = {c: i for i, c in enumerate(self.captions)}
        with torch.no_grad():
            self.text = F.normalize(backbone.encode_text(self.captions).float(), dim=-1)

    @torch.no_grad()
    def similarities(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Cosine similarity of each image (N, 3, H, W) in [0, 1] to each caption: (N, C)."""
        out = []
        for chunk in images.split(batch_size):
            x = chunk.to(self.backbone.device).float()
            if tuple(x.shape[-2:]) != tuple(self.backbone.input_size):
                x = F.interpolate(x, size=self.backbone.input_size, mode=self.backbone.interpolation)
            emb = F.normalize(self.backbone.encode_image(x).float(), dim=-1)
            out.append(emb @ self.text.T)
        return torch.cat(out).cpu()

    def judge(self, images: torch.Tensor, prompts: Sequence[str]) -> Verdicts:
        """Is each image's prompt the judge's top caption? Prompts must be among the captions."""
        missing = [p for p in prompts if p not in self._index]
        if missing:
            raise ValueError(f"prompts not among the judge's captions: {missing[:3]}")
        sims = self.similarities(images)
        target = torch.tensor([self._index[p] for p in prompts])
        own = sims[torch.arange(len(prompts)), target]
        others = sims.clone()
        others[torch.arange(len(prompts)), target] = float("-inf")
        top = sims.argmax(dim=1)
        return Verdicts(
            top=[self.captions[i] for i in top.tolist()],
            correct=(top == target).tolist(),
            margin=(own - others.max(dim=1).values).tolist(),
            similarity=own.tolist(),
        )
