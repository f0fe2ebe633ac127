"""``activation_norm``: an objective that maximises how strongly a layer responds, whatever it responds to.

Why: DeepDream's goal. Maximising the length of a layer's activation vectors (one per position:
a pixel of a feature map, a token of a ViT) brings out every pattern the layer detects at once,
without choosing a channel first; it is where to start when you do not yet know which channel to
look at. An objective sees embeddings and activations, never pixels, so it reads ``Features``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field

import clipforge
from clipforge import Backbone, Features, Objective, Row, RunSpec


class ActivationNorm(Objective):
    """The mean L2 norm of a layer's activation vectors, per copy: (N,).

    A feature map (N, C, H, W) has a C-vector at each of its H x W positions, a token sequence
    (N, L, C) one at each of its L tokens, a vector (N, C) just one.
    """

    name = "activation_norm"

    class Options(clipforge.ObjectiveOptions):  # keeps the `weight` every objective has
        layer: str = Field(
            min_length=1, description="A layer of the image tower, as `clipforge layers MODEL` names it."
        )
        backbone: int = Field(0, ge=0, description="Which of the spec's backbones (its index in `backbones`).")

    def __init__(self, options: Options, backbone: Backbone, rows: Sequence[Row], spec: RunSpec) -> None:
        super().__init__(options, backbone, rows, spec)
        # Checked once, at the start: a wrong name fails here with the nearest names, not mid-run.
        self.shape = clipforge.layer_shape(backbone, options.layer)  # one image's output: (C, H, W), (L, C) or (C,)

    @classmethod
    def backbone_indices(cls, options: Options, count: int) -> list[int]:  # type: ignore[override]
        return [options.backbone]  # a layer belongs to one backbone; the others do not compute it

    @classmethod
    def describe(cls, options: Options) -> str:  # type: ignore[override]
        return f"activation_norm {options.layer}"

    def layers(self) -> list[str]:
        return [self.options.layer]

    def __call__(self, features: Features) -> torch.Tensor:
        act = features.activations[self.options.layer].float()  # batch first; bf16 under autocast
        # the channel dimension: 1 for feature maps, the last for token sequences and vectors
        channels = 1 if act.dim() >= 4 else -1
        # the norm's gradient is 0 (not NaN) at a zero vector, so all-negative positions after a ReLU are safe
        norms = torch.linalg.vector_norm(act, dim=channels)  # (N, positions...) or (N,)
        return norms.flatten(1).mean(dim=1) if norms.dim() > 1 else norms
