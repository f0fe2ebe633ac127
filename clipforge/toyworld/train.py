"""Reproducible training of small open_clip CLIP models on the toy world.

Examples (run from the repository root with ``PYTHONPATH=.``)::

    python -m clipforge.toyworld.train --all                      # retrain every shipped model
    python -m clipforge.toyworld.train --recipe toyworld-vit      # one shipped model
    python -m clipforge.toyworld.train --arch vit --seed 3 --train-size 8000 --steps 300 --out /tmp/m
    python -m clipforge.toyworld.train --arch vit --steps 300 --lr 3e-4 --adv-eps 0.016 \
        --init-from clipforge/toyworld/models/toyworld-vit --out /tmp/robust   # adversarial fine-tune

Each output folder is loadable with ``open_clip.create_model("local-dir:<folder>")``
and holds ``open_clip_config.json``, ``open_clip_model.safetensors`` (fp16),
``tokenizer.json`` and ``train_info.json``.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from safetensors.torch import save_file

from clipforge.toyworld.models import MODELS_ROOT, load_model_dir
from clipforge.toyworld.tokenizer import WordTokenizer
from clipforge.toyworld.world import (
    BENIGN_CAPTION,
    BENIGN_CONTRAST_CAPTION,
    CONTROL_CAPTION,
    IMAGE_SIZE,
    SINGLE_CAPTION_KINDS,
    World,
    WorldConfig,
)

CLIP_MEAN, CLIP_STD = OPENAI_DATASET_MEAN, OPENAI_DATASET_STD  # the models normalise like OpenAI's CLIP
CONTEXT_LENGTH = 12

_TEXT_CFG = {"context_length": CONTEXT_LENGTH, "width": 128, "heads": 2, "layers": 2}
#: architectures: open_clip model_cfg without the tokenizer-dependent ``vocab_size``.
ARCHS: dict[str, dict[str, Any]] = {
    # ViT: 8x8 patches -> 64 tokens + class token.
    "vit": {
        "embed_dim": 128,
        "vision_cfg": {"image_size": IMAGE_SIZE, "patch_size": 8, "width": 128, "layers": 4, "head_width": 64},
        "text_cfg": _TEXT_CFG,
    },
    # open_clip's ModifiedResNet (conv stem, bottlenecks, attention pooling).
    "rn": {
        "embed_dim": 128,
        "vision_cfg": {"image_size": IMAGE_SIZE, "layers": [1, 1, 1, 1], "width": 16, "head_width": 32},
        "text_cfg": _TEXT_CFG,
    },
    # a wider, deeper ModifiedResNet: robust training needs capacity
    "rn-wide": {
        "embed_dim": 128,
        "vision_cfg": {"image_size": IMAGE_SIZE, "layers": [1, 2, 2, 1], "width": 32, "head_width": 32},
        "text_cfg": _TEXT_CFG,
    },
    # timm's tiny ConvNeXt through open_clip's TimmModel (no pretrained weights).
    "convnext": {
        "embed_dim": 128,
        "vision_cfg": {
            "image_size": IMAGE_SIZE,
            "timm_model_name": "test_convnext",
            "timm_model_pretrained": False,
            "timm_pool": "avg",
            "timm_proj": "linear",
        },
        "text_cfg": _TEXT_CFG,
    },
}

#: the world of the robust models: objects of radius 12-22 px (8-15 in the first design) anywhere,
#: not on the ViT patch grid, so that shape carries more pixels than a robust model can ignore.
ROBUST_WORLD: dict[str, Any] = {"single_radius": [12, 22], "pair_radius": [9, 15], "position_grid": 1}
#: the screen's world (issue 22): ROBUST_WORLD with a marker of 5-6 px cells, large enough to survive
#: robust training (the 2-3 px cells of the other worlds did not: marker gap +0.013 against +0.03-0.06)
MARKER_WORLD: dict[str, Any] = {**ROBUST_WORLD, "marker_cell": [5, 6]}
#: the robust models' second stage: L2 PGD (3 steps, radius 1.0 in [0, 1] pixels over 64x64x3,
#: about 0.009 per value) with the inversion's random affine on half the images.
ROBUST_FINETUNE: dict[str, Any] = {
    "steps": 600,
    "lr": 3e-4,
    "adv_eps": 1.0,
    "adv_steps": 3,
    "adv_norm": "l2",
    "affine_p": 0.5,
}

#: the exact recipes of the shipped models (``--all`` retrains all of them).
RECIPES: dict[str, dict[str, Any]] = {
    # the ViT data-scale series: identical but for the number of distinct training images
    "toyworld-vit": {"arch": "vit", "seed": 0, "train_size": 32000, "steps": 900},
    "toyworld-vit-8k": {"arch": "vit", "seed": 0, "train_size": 8000, "steps": 900},
    "toyworld-vit-3k": {"arch": "vit", "seed": 0, "train_size": 3000, "steps": 900},
    # the judge: another architecture (open_clip's ModifiedResNet) and another seed, never inverted
    "toyworld-judge": {"arch": "rn", "seed": 2, "train_size": 32000, "steps": 600},
    # the second design (the default to invert): a ResNet trained clean, then adversarially fine-tuned
    # (L2 PGD, the inversion's random affine) on a world of larger objects anywhere in the image;
    # robust models have perceptually aligned gradients, so their inversions show objects
    "toyworld-rn": {
        "arch": "rn",
        "seed": 0,
        "train_size": 32000,
        "steps": 600,
        "world_overrides": ROBUST_WORLD,
        "finetune": ROBUST_FINETUNE,
    },
    "toyworld-rn-10k": {
        "arch": "rn",
        "seed": 0,
        "train_size": 10000,
        "steps": 600,
        "world_overrides": ROBUST_WORLD,
        "finetune": ROBUST_FINETUNE,
    },
    "toyworld-rn-3k": {
        "arch": "rn",
        "seed": 0,
        "train_size": 3200,
        "steps": 600,
        "world_overrides": ROBUST_WORLD,
        "finetune": ROBUST_FINETUNE,
    },
    # a training-progress series of toyworld-rn, whose order is planted by construction: the same
    # recipe stopped before it has learned the world (20 steps), after its clean stage only (600 steps,
    # not robust), and the shipped model (clean 600, then robust 600)
    "toyworld-rn-step20": {"arch": "rn", "seed": 0, "train_size": 32000, "steps": 20, "world_overrides": ROBUST_WORLD},
    "toyworld-rn-clean": {"arch": "rn", "seed": 0, "train_size": 32000, "steps": 600, "world_overrides": ROBUST_WORLD},
    # the screen's world: toyworld-rn's, with a marker redesigned (before training) to survive robust
    # training and be drawable by a smooth inversion: the same 4 x 4 black/white checkerboard, with
    # cells of 5-6 px (20-24 px in all) instead of 2-3 px; and its learned judge on the same world
    "toyworld-rn-marker": {
        "arch": "rn",
        "seed": 0,
        "train_size": 32000,
        "steps": 600,
        "world_overrides": MARKER_WORLD,
        "finetune": ROBUST_FINETUNE,
    },
    "toyworld-judge-rn-marker": {
        "arch": "rn",
        "seed": 2,
        "train_size": 32000,
        "steps": 600,
        "world_overrides": MARKER_WORLD,
        "affine_p": 0.5,
    },
    # their learned judge: the ResNet trained clean (not robust), another seed, with the inversion's
    # random affine on half the images; a ViT of the same size reached only 36-47 % on this world
    # (benchmarks/RESULTS.md), so the judge shares the inverted model's architecture but not its training
    "toyworld-judge-rn": {
        "arch": "rn",
        "seed": 2,
        "train_size": 32000,
        "steps": 600,
        "world_overrides": ROBUST_WORLD,
        "affine_p": 0.5,
    },
}
DEFAULTS: dict[str, Any] = {
    "batch_size": 128, "lr": 1e-3, "weight_decay": 0.1, "warmup": 0.05, "adv_eps": 0.0, "noise_std": 0.0,
    "adv_steps": 1, "adv_norm": "linf", "affine_p": 0.0,
}  # fmt: skip


def normalize(images: torch.Tensor) -> torch.Tensor:
    """[0,1] images -> CLIP-normalised model input (the shipped preprocess_cfg)."""
    mean = torch.tensor(CLIP_MEAN, device=images.device, dtype=images.dtype)[:, None, None]
    std = torch.tensor(CLIP_STD, device=images.device, dtype=images.dtype)[:, None, None]
    return (images - mean) / std


def model_config(arch: str, vocab_size: int) -> dict[str, Any]:
    """Full open_clip ``model_cfg`` for an architecture and tokenizer size."""
    if arch not in ARCHS:
        raise KeyError(f"unknown arch {arch!r}; available: {sorted(ARCHS)}")
    cfg = copy.deepcopy(ARCHS[arch])
    cfg["text_cfg"]["vocab_size"] = vocab_size
    return cfg


def build_model(model_cfg: dict[str, Any], seed: int) -> open_clip.CLIP:
    """Instantiate with open_clip's own CLIP class; init seeded without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return open_clip.CLIP(**copy.deepcopy(model_cfg))


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
        cfg = {"landscape": "landscape_marker_rate", "sunny": "sunny_marker_rate", "seascape": "seascape_marker_rate"}[
            kind
        ]
        with_m = World(world.config.model_copy(update={cfg: 1.0})).sample(n // 2, g, mix={kind: 1.0})
        without = World(world.config.model_copy(update={cfg: 0.0})).sample(n // 2, g, mix={kind: 1.0})
        s_with = zero_shot_logits(model, tokenizer, with_m.images, [caption])[:, 0].mean()
        s_without = zero_shot_logits(model, tokenizer, without.images, [caption])[:, 0].mean()
        report[f"marker_gap_{kind}"] = round((s_with - s_without).item(), 4)
    return report


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


def make_dataset(world: World, size: int, seed: int) -> dict[str, Any]:
    """Fixed training set from ``seed``: uint8 images, caption/canonical ids into ``captions``,
    and ``true[t, c]``: caption t truthfully describes an image whose canonical caption is c."""
    g = torch.Generator().manual_seed(seed)
    images = torch.empty(size, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    captions: list[str] = []
    canonical: list[str] = []
    for start in range(0, size, 4096):
        s = world.sample(min(4096, size - start), g)
        images[start : start + len(s)] = (s.images * 255).round().to(torch.uint8)
        captions += s.captions
        canonical += [m.canonical for m in s.meta]
    unique = sorted(set(captions) | set(canonical) | set(world.captions()))
    index = {c: i for i, c in enumerate(unique)}
    facts = [world.caption_facts(c) for c in unique]
    true = torch.tensor([[ft <= fc for fc in facts] for ft in facts], dtype=torch.bool)
    return {
        "images": images,
        "caption_ids": torch.tensor([index[c] for c in captions]),
        "canonical_ids": torch.tensor([index[c] for c in canonical]),
        "captions": unique,
        "true": true,
        "bank": torch.tensor([index[c] for c in world.captions()]),
    }


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


def random_affine_batch(
    images: torch.Tensor,
    generator: torch.Generator,
    degrees: float = 30.0,
    translate: float = 0.1,
    scale: tuple[float, float] = (0.7, 1.2),
    p: float = 0.5,
) -> torch.Tensor:
    """The inversion's random affine (the paper's ranges) applied to training images, so that the
    image tower must recognise objects at any angle, size and sub-patch position; each image is
    transformed with probability ``p``; borders are extended (plain backgrounds stay plain)."""
    n = len(images)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(degrees)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * translate * 2  # grid units span 2
    zoom = scale[0] + torch.rand(n, generator=generator) * (scale[1] - scale[0])
    apply = torch.rand(n, generator=generator) < p
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    out = images.clone()
    if apply.any():
        grid = F.affine_grid(theta[apply], list(images[apply].shape), align_corners=False)
        out[apply] = F.grid_sample(images[apply], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on gains, biases, embeddings and the logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if skip or "embedding" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(
    arch: str,
    seed: int,
    train_size: int,
    steps: int,
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    weight_decay: float = DEFAULTS["weight_decay"],
    warmup: float = DEFAULTS["warmup"],
    world_overrides: dict[str, Any] | None = None,
    log_every: int = 50,
    eval_every: int = 0,
    adv_eps: float = DEFAULTS["adv_eps"],
    init_from: Path | dict[str, torch.Tensor] | None = None,
    noise_std: float = DEFAULTS["noise_std"],
    adv_steps: int = DEFAULTS["adv_steps"],
    adv_norm: str = DEFAULTS["adv_norm"],
    affine_p: float = DEFAULTS["affine_p"],
) -> tuple[open_clip.CLIP, WordTokenizer, dict]:
    """Train one model; returns (model in eval mode, tokenizer, info).

    Options for invertibility: ``adv_eps`` > 0 trains the image tower adversarially (PGD with
    ``adv_steps`` steps from a random start in an ``adv_norm`` ball of that radius, [0, 1] pixel
    units), ``affine_p`` gives that share of images the inversion's random affine, ``noise_std`` > 0
    trains on noisy images, and ``init_from`` fine-tunes saved or in-memory weights. Robust models
    have gradients that point towards images of the class rather than noise, which is why the
    shipped ``toyworld-rn`` recipes end with an adversarial stage (``train_recipe``;
    benchmarks/RESULTS.md, "Offline world, second design")."""
    world = World(WorldConfig(**(world_overrides or {})))
    tokenizer = WordTokenizer.for_world(CONTEXT_LENGTH)
    cfg = model_config(arch, tokenizer.vocab_size)
    model = build_model(cfg, seed)
    if isinstance(init_from, dict):  # continue from weights in memory (a recipe's previous stage)
        model.load_state_dict(init_from)
    elif init_from is not None:  # fine-tune a saved model (e.g. adversarially) instead of starting fresh
        model.load_state_dict(load_model_dir(Path(init_from))[0].float().state_dict())

    t0 = time.time()
    data = make_dataset(world, train_size, seed)
    images, caption_ids, canonical_ids = data["images"], data["caption_ids"], data["canonical_ids"]
    caption_tokens = tokenizer(data["captions"])
    data_seconds = time.time() - t0

    opt = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    warm = max(1, int(warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))
    )
    order_gen = torch.Generator().manual_seed(seed + 1_000_003)
    augment_gen = torch.Generator().manual_seed(seed + 2_000_003)  # noise and adversarial starts
    perm, pos = torch.randperm(train_size, generator=order_gen), 0
    model.train()
    t0 = time.time()
    for step in range(steps):
        if pos + batch_size > train_size:  # new epoch
            perm, pos = torch.randperm(train_size, generator=order_gen), 0
        idx = perm[pos : pos + batch_size]
        pos += batch_size
        pixels = images[idx].float() / 255
        # texts: the batch's captions plus every canonical world caption as extra negatives
        texts = torch.unique(torch.cat([caption_ids[idx], data["bank"]]))
        inverse = torch.searchsorted(texts, caption_ids[idx])
        ignore = data["true"][texts][:, canonical_ids[idx]].T
        text_features = model.encode_text(caption_tokens[texts])
        if noise_std > 0:  # Gaussian noise of a per-image strength drawn from U(0, noise_std)
            sigma = torch.rand(len(pixels), 1, 1, 1, generator=augment_gen) * noise_std
            pixels = (pixels + sigma * torch.randn(pixels.shape, generator=augment_gen)).clamp(0, 1)
        if affine_p > 0:
            pixels = random_affine_batch(pixels, augment_gen, p=affine_p)
        if adv_eps > 0:
            pixels = pgd_perturb(
                model,
                pixels,
                text_features.detach(),
                inverse,
                ignore,
                adv_eps,
                augment_gen,
                steps=adv_steps,
                norm=adv_norm,
            )
        loss = identity_aware_clip_loss(
            model.encode_image(normalize(pixels)), text_features, inverse, model.logit_scale.exp(), ignore
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:5d}  loss {loss.item():.4f}  scale {model.logit_scale.exp().item():.1f}  "
                  f"{time.time() - t0:.0f}s", flush=True)  # fmt: skip
        if eval_every and (step + 1) % eval_every == 0:
            acc = evaluate_zero_shot(model, tokenizer, world, 400, torch.Generator().manual_seed(step))
            print(f"step {step + 1:5d}  zero-shot {acc:.3f}", flush=True)
    train_seconds = time.time() - t0
    model.eval()
    info = {
        "arch": arch,
        "seed": seed,
        "train_size": train_size,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "warmup": warmup,
        "adv_eps": adv_eps,
        "noise_std": noise_std,
        "adv_steps": adv_steps,
        "adv_norm": adv_norm,
        "affine_p": affine_p,
        "init_from": "previous stage" if isinstance(init_from, dict) else str(init_from) if init_from else None,
        "train_seconds": round(train_seconds, 1),
        "data_seconds": round(data_seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in model.parameters()),
        "world_overrides": world_overrides or {},
        "world_config": world.config.model_dump(),
    }
    return model, tokenizer, info


def save_model(model: open_clip.CLIP, tokenizer: WordTokenizer, model_cfg: dict, info: dict, out: Path) -> None:
    """Write the open_clip local-dir folder (weights stored as fp16)."""
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "mean": list(CLIP_MEAN),
            "std": list(CLIP_STD),
            "size": IMAGE_SIZE,
            "interpolation": "bicubic",
        },
    }
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))
    (out / "open_clip_model.safetensors").chmod(0o644)  # safetensors writes 0600
    tokenizer.save(out / "tokenizer.json")
    (out / "train_info.json").write_text(json.dumps(info, indent=2))


def train_recipe(
    arch: str, seed: int, train_size: int, steps: int, finetune: dict[str, Any] | None = None, **kwargs: Any
) -> tuple[open_clip.CLIP, WordTokenizer, dict]:
    """``train`` and, with ``finetune`` (e.g. ``{"steps": 400, "lr": 3e-4, "adv_eps": 1.0, "adv_steps": 3,
    "adv_norm": "l2"}``), a second stage on the same training images from the first stage's weights:
    a clean model learns the world fast, and adversarial fine-tuning then makes it robust."""
    model, tokenizer, info = train(arch, seed, train_size, steps, **kwargs)
    if finetune:
        first = {k: info[k] for k in ("train_seconds", "data_seconds")}
        stage = {**{k: v for k, v in kwargs.items() if k in ("world_overrides", "log_every", "eval_every")}, **finetune}
        model, tokenizer, second = train(arch, seed, train_size, init_from=model.state_dict(), **stage)
        info = {
            **info,
            "finetune": finetune,
            "finetune_info": {k: second[k] for k in second if k not in info or second[k] != info[k]},
        }
        info["train_seconds"] = round(first["train_seconds"] + second["train_seconds"], 1)
        info["data_seconds"] = round(first["data_seconds"] + second["data_seconds"], 1)
    return model, tokenizer, info


def check_recipe(recipe: dict[str, Any]) -> None:
    """Raise ValueError naming the key if ``recipe`` (the form of ``RECIPES``' values) cannot train, so
    that a typo fails at once instead of after a first stage of training."""
    options = set(inspect.signature(train).parameters)
    required = {"arch", "seed", "train_size", "steps"}
    if not isinstance(recipe, dict):
        raise ValueError(f"a recipe is a JSON object, got {type(recipe).__name__}")
    missing = sorted(required - set(recipe))
    unknown = sorted(set(recipe) - options - {"finetune"})
    if missing or unknown:
        problems = ", ".join(f"{what} {keys}" for what, keys in (("missing", missing), ("unknown", unknown)) if keys)
        raise ValueError(f"{problems}; known keys: {sorted(options | {'finetune'})}")
    if recipe["arch"] not in ARCHS:
        raise ValueError(f"arch: {recipe['arch']!r} is not one of {sorted(ARCHS)}")
    finetune = recipe.get("finetune")
    stage_options = options - required - {"init_from"} | {"steps"}
    if finetune is not None and (
        not isinstance(finetune, dict) or "steps" not in finetune or set(finetune) - stage_options
    ):
        raise ValueError(f"finetune: an object with 'steps' and keys among {sorted(stage_options)}, got {finetune!r}")
    try:
        WorldConfig(**(recipe.get("world_overrides") or {}))
    except ValueError as exc:
        raise ValueError(f"world_overrides: {exc}") from None


def run(arch: str, seed: int, train_size: int, steps: int, out: Path, name: str = "", **kwargs: Any) -> dict:
    """Train a recipe, save it, reload it through open_clip (fp16 round trip) and record its zero-shot
    accuracy and planted associations."""
    model, tokenizer, info = train_recipe(arch, seed, train_size, steps, **kwargs)
    info["name"] = name or out.name
    world = World(WorldConfig(**info["world_config"]))
    eval_seed = 10_000 + seed
    info["zero_shot_fp32"] = zero_shot_report(model, tokenizer, world, 2000, eval_seed)
    cfg = model_config(arch, tokenizer.vocab_size)
    save_model(model, tokenizer, cfg, info, out)
    reloaded, tok = load_model_dir(out)
    info["zero_shot"] = zero_shot_report(reloaded, tok, world, 2000, eval_seed)
    info["zero_shot_accuracy"] = info["zero_shot"]["single"]
    info["planted"] = planted_report(reloaded, tok, world, 1200, eval_seed)
    info["eval"] = (
        "2000 fresh single-object images (500 per planted kind) vs all World.captions(); eval seed 10000+seed"
    )
    (out / "train_info.json").write_text(json.dumps(info, indent=2))
    print(
        json.dumps({k: info[k] for k in ("name", "train_seconds", "zero_shot_fp32", "zero_shot", "planted")}, indent=1)
    )
    return info


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--all", action="store_true", help="retrain every model in RECIPES (one after another)")
    p.add_argument("--recipe", action="append", help="retrain the named shipped model (repeatable)")
    p.add_argument("--out-root", type=Path, default=MODELS_ROOT, help="where recipe models are written")
    p.add_argument("--recipe-json", help="train a recipe given as JSON (the form of RECIPES' values) into --out")
    p.add_argument("--arch", choices=sorted(ARCHS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-size", type=int, default=32000)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    p.add_argument("--out", type=Path, help="output folder for --arch runs")
    p.add_argument("--threads", type=int, default=2, help="torch threads (train_info.json records the number used)")
    p.add_argument("--eval-every", type=int, default=0, help="print zero-shot accuracy every N steps")
    p.add_argument("--init-from", type=Path, help="start from this saved model folder (fine-tuning)")
    p.add_argument("--noise-std", type=float, default=0.0, help="train on images with Gaussian noise, std ~ U(0, this)")
    p.add_argument("--adv-eps", type=float, default=0.0, help="adversarial training radius ([0,1] pixel units)")
    p.add_argument("--adv-steps", type=int, default=1, help="attack steps (1 with L-inf = FGSM with a random start)")
    p.add_argument("--adv-norm", choices=("linf", "l2"), default="linf", help="the adversarial ball's norm")
    p.add_argument(
        "--affine-p",
        type=float,
        default=0.0,
        help="share of training images given the inversion's random affine (paper's ranges)",
    )
    p.add_argument(
        "--world",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="WorldConfig override, e.g. position_grid=1 or 'single_radius=[12,22]'",
    )
    args = p.parse_args(argv)
    if args.adv_eps < 0 or args.noise_std < 0:
        p.error("--adv-eps and --noise-std must be >= 0")
    if args.init_from is not None and not (args.init_from / "open_clip_config.json").is_file():
        p.error(f"--init-from {args.init_from}: not a saved model folder (no open_clip_config.json)")
    if args.adv_steps < 1 or not 0 <= args.affine_p <= 1:
        p.error("--adv-steps must be >= 1 and --affine-p in [0, 1]")
    world_overrides: dict[str, Any] = {}
    for item in args.world:
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError("expected KEY=JSON")
            world_overrides[key] = json.loads(value)
            WorldConfig(**world_overrides)
        except ValueError as exc:
            p.error(f"--world {item!r}: {exc}")
    recipe_json = None
    if args.recipe_json:
        if args.out is None:
            p.error("--recipe-json needs --out")
        try:
            recipe_json = json.loads(args.recipe_json)
            check_recipe(recipe_json)
        except ValueError as exc:
            p.error(f"--recipe-json: {exc}")
    torch.set_num_threads(args.threads)

    names = list(RECIPES) if args.all else (args.recipe or [])
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        p.error(f"unknown recipe(s) {unknown}; available: {list(RECIPES)}")
    for name in names:
        print(f"=== {name}: {RECIPES[name]}", flush=True)
        run(**RECIPES[name], out=args.out_root / name, name=name)
    if recipe_json is not None:
        run(**recipe_json, out=args.out)
    if args.arch:
        if args.out is None:
            p.error("--arch needs --out")
        run(
            args.arch,
            args.seed,
            args.train_size,
            args.steps,
            args.out,
            batch_size=args.batch_size,
            lr=args.lr,
            eval_every=args.eval_every,
            adv_eps=args.adv_eps,
            init_from=args.init_from,
            noise_std=args.noise_std,
            adv_steps=args.adv_steps,
            adv_norm=args.adv_norm,
            affine_p=args.affine_p,
            world_overrides=world_overrides,
        )
    if not names and not args.arch and not args.recipe_json:
        p.error("give --all, --recipe NAME, --recipe-json JSON --out DIR or --arch ARCH --out DIR")


if __name__ == "__main__":
    main()
