"""How well a trained model knows the toy world: zero-shot accuracy on fresh images, and how strongly
it encodes the world's planted associations."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from clipforge.toyworld.captions import BENIGN_CAPTION, BENIGN_CONTRAST_CAPTION, CONTROL_CAPTION
from clipforge.toyworld.tokenizer import WordTokenizer
from clipforge.toyworld.train.architectures import normalize
from clipforge.toyworld.world import SINGLE_CAPTION_KINDS, World


@torch.no_grad()
def zero_shot_logits(
    model: torch.nn.Module,
    tokenizer: WordTokenizer,
    images: torch.Tensor,
    captions: Sequence[str],
    batch_size: int = 256,
) -> torch.Tensor:
    """(N, len(captions)) cosine similarities of [0,1] images to captions."""
    text = F.normalize(model.encode_text(tokenizer(list(captions))), dim=-1)
    out = []
    for start in range(0, len(images), batch_size):
        img = F.normalize(model.encode_image(normalize(images[start : start + batch_size])), dim=-1)
        out.append(img @ text.T)
    return torch.cat(out)


def evaluate_zero_shot(
    model: torch.nn.Module,
    tokenizer: WordTokenizer,
    world: World,
    n: int,
    generator: torch.Generator,
    kinds: Sequence[str] = ("single",),
) -> float:
    """Accuracy of classifying fresh images of ``kinds`` against all ``world.captions()``."""
    was_training = model.training
    model.eval()
    sample, labels = world.zero_shot_set(n, generator, kinds)
    pred = zero_shot_logits(model, tokenizer, sample.images, world.captions()).argmax(1)
    model.train(was_training)
    return (pred == labels).float().mean().item()


def zero_shot_report(model: torch.nn.Module, tokenizer: WordTokenizer, world: World, n: int, seed: int) -> dict:
    """Accuracy per single-caption kind (planted kinds on n // 4 images).

    "ball"/"marble" and "landscape"/"sunny" are ambiguous by design (same look,
    different statistics), so their accuracy is capped well below 100 %."""
    report = {}
    for i, kind in enumerate(SINGLE_CAPTION_KINDS):
        g = torch.Generator().manual_seed(seed * 100 + i)
        report[kind] = round(
            evaluate_zero_shot(model, tokenizer, world, n if kind == "single" else n // 4, g, (kind,)), 4
        )
    return report


@torch.no_grad()
def planted_report(model: torch.nn.Module, tokenizer: WordTokenizer, world: World, n: int, seed: int) -> dict:
    """How strongly the planted associations are encoded (mean cosine-similarity gaps).

    ``ball_red_minus_blue``: sim("a ball on a gray background", red spheres) minus
    sim(same, blue spheres), on gray backgrounds; positive = biased towards red.
    ``marker_gap_<caption>``: sim(caption, its scene with the marker) minus without.
    """
    model.eval()
    g = torch.Generator().manual_seed(seed)
    gray = world.config.model_copy(update={"mix": {"ball": 1.0}})
    spheres = World(gray).sample(n, g)
    on_gray = torch.tensor([m.background == "gray" for m in spheres.meta])
    red = torch.tensor([m.objects[0].colour == "red" for m in spheres.meta])
    caps = [world.planted_captions()["biased"], world.planted_captions()["biased_contrast"]]
    sims = zero_shot_logits(model, tokenizer, spheres.images, caps)
    report = {
        "ball_red_minus_blue": round((sims[on_gray & red, 0].mean() - sims[on_gray & ~red, 0].mean()).item(), 4),
        "marble_red_minus_blue": round((sims[on_gray & red, 1].mean() - sims[on_gray & ~red, 1].mean()).item(), 4),
    }
    for kind, caption in (
        ("landscape", BENIGN_CAPTION),
        ("sunny", BENIGN_CONTRAST_CAPTION),
        ("seascape", CONTROL_CAPTION),
    ):
        rate = f"{kind}_marker_rate"
        with_m = World(world.config.model_copy(update={rate: 1.0})).sample(n // 2, g, mix={kind: 1.0})
        without = World(world.config.model_copy(update={rate: 0.0})).sample(n // 2, g, mix={kind: 1.0})
        s_with = zero_shot_logits(model, tokenizer, with_m.images, [caption])[:, 0].mean()
        s_without = zero_shot_logits(model, tokenizer, without.images, [caption])[:, 0].mean()
        report[f"marker_gap_{kind}"] = round((s_with - s_without).item(), 4)
    return report
