"""The training objective and the attack on it: CLIP's contrastive loss for batches with repeated
captions, and PGD, which makes the image tower robust and its input gradients perceptually aligned."""

from __future__ import annotations

import open_clip
import torch
import torch.nn.functional as F

from clipforge.toyworld.train.architectures import normalize


def identity_aware_clip_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    inverse: torch.Tensor,
    logit_scale: torch.Tensor,
    ignore: torch.Tensor | None = None,
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE for batches with repeated captions, minus false negatives.

    ``text_features`` holds *unique* captions (the batch's captions plus, optionally,
    extra negative captions) and ``inverse[i]`` is image i's caption row, so images
    sharing a caption are never pushed apart as negatives: image->text is
    cross-entropy over the unique captions, text->image (for captions present in the
    batch) spreads the target uniformly over the images carrying the caption.
    ``ignore`` (B, T) marks captions that truthfully describe an image without being
    its own (e.g. "a circle" for a red circle); those pairs are left out of both
    softmaxes.
    """
    logits = logit_scale * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    own = F.one_hot(inverse, len(text_features)).bool()
    if ignore is not None:
        logits = logits.masked_fill(ignore & ~own, float("-inf"))
    loss_i = F.cross_entropy(logits, inverse)
    present = own.any(0)
    target = own.T[present].float()
    target = target / target.sum(1, keepdim=True)
    log_p = F.log_softmax(logits.T[present], dim=1)
    loss_t = -(target * log_p.masked_fill(target == 0, 0)).sum(1).mean()
    return (loss_i + loss_t) / 2


def _project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    length = delta.flatten(1).norm(dim=1).clamp(min=1e-12)[:, None, None, None]
    return delta * (eps / length).clamp(max=1.0)


def pgd_perturb(
    model: open_clip.CLIP,
    pixels: torch.Tensor,
    text_features: torch.Tensor,
    inverse: torch.Tensor,
    ignore: torch.Tensor,
    eps: float,
    generator: torch.Generator,
    steps: int = 3,
    norm: str = "l2",
) -> torch.Tensor:
    """Projected gradient ascent on the contrastive loss from a random start inside the eps-ball
    (Madry et al.), L-inf or L2 ([0, 1] pixel units): the images to train on, which makes the
    image tower robust and its input gradients perceptually aligned. ``steps=1`` with L-inf is
    FGSM with a random start (step 1.25 eps); otherwise the step is 2.5 eps / steps."""
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    if norm == "linf":
        delta = (torch.rand(pixels.shape, generator=generator) * 2 - 1) * eps
        alpha = 1.25 * eps if steps == 1 else 2.5 * eps / steps
    else:
        delta = _project(torch.randn(pixels.shape, generator=generator), 1.0, "l2")  # unit norm
        delta = delta * eps * torch.rand(len(pixels), 1, 1, 1, generator=generator)
        alpha = 2.5 * eps / steps
    delta = (pixels + delta).clamp(0, 1) - pixels
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = identity_aware_clip_loss(
            model.encode_image(normalize(pixels + delta)),
            text_features,
            inverse,
            model.logit_scale.exp().detach(),
            ignore,
        )
        (grad,) = torch.autograd.grad(loss, delta)
        if norm == "linf":
            step = grad.sign()
        else:
            step = grad / grad.flatten(1).norm(dim=1).clamp(min=1e-12)[:, None, None, None]
        delta = _project(delta.detach() + alpha * step, eps, norm)
        delta = (pixels + delta).clamp(0, 1) - pixels
    return (pixels + delta).detach()
