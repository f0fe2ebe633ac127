"""The training loop: a fixed training set drawn from the world, AdamW with warm-up and cosine decay,
and the contrastive loss on (optionally noisy, transformed or adversarial) images.

Every random draw comes from a generator seeded by the config's seed (the weights' init, the images,
their order, the augmentations), so a recipe retrains bit-identical weights on the same machine.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import open_clip
import torch

from clipforge.toyworld.models import load_model_dir
from clipforge.toyworld.tokenizer import WordTokenizer
from clipforge.toyworld.train.architectures import CONTEXT_LENGTH, build_model, model_config, normalize
from clipforge.toyworld.train.augment import add_noise, random_affine_batch
from clipforge.toyworld.train.config import Recipe, TrainConfig
from clipforge.toyworld.train.evaluate import evaluate_zero_shot
from clipforge.toyworld.train.losses import identity_aware_clip_loss, pgd_perturb
from clipforge.toyworld.world import IMAGE_SIZE, World, WorldConfig


@dataclass
class TrainingSet:
    """Fixed training images with ids into ``captions`` (sorted, unique): each image's caption and canonical
    caption; ``true[t, c]``: caption t truthfully describes an image whose canonical caption is c; ``bank``: every
    canonical world caption, the extra negatives of each batch."""

    images: torch.Tensor  # (N, 3, H, W) uint8
    caption_ids: torch.Tensor
    canonical_ids: torch.Tensor
    captions: list[str]
    true: torch.Tensor
    bank: torch.Tensor


def make_dataset(world: World, size: int, seed: int) -> TrainingSet:
    """The training set drawn from ``seed``."""
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
    return TrainingSet(
        images=images,
        caption_ids=torch.tensor([index[c] for c in captions]),
        canonical_ids=torch.tensor([index[c] for c in canonical]),
        captions=unique,
        true=torch.tensor([[ft <= fc for fc in facts] for ft in facts], dtype=torch.bool),
        bank=torch.tensor([index[c] for c in world.captions()]),
    )


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on gains, biases, embeddings and the logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if skip or "embedding" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _warmup_cosine(opt: torch.optim.Optimizer, warmup: float, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first ``warmup`` share of the steps, then cosine decay to 0."""
    warm = max(1, int(warmup * steps))
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))
    )


def _batches(size: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Image indices of each step: epochs of a fresh permutation, the last partial batch of each dropped."""
    perm, pos = torch.randperm(size, generator=generator), 0
    for _ in range(steps):
        if pos + batch_size > size:  # new epoch
            perm, pos = torch.randperm(size, generator=generator), 0
        yield perm[pos : pos + batch_size]
        pos += batch_size


def _batch_loss(
    model: open_clip.CLIP,
    data: TrainingSet,
    caption_tokens: torch.Tensor,
    idx: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """The contrastive loss of one batch, on its images as the config augments them (noise, then the affine, then
    the attack, all drawn from ``generator``)."""
    pixels = data.images[idx].float() / 255
    # texts: the batch's captions plus every canonical world caption as extra negatives
    texts = torch.unique(torch.cat([data.caption_ids[idx], data.bank]))
    inverse = torch.searchsorted(texts, data.caption_ids[idx])
    ignore = data.true[texts][:, data.canonical_ids[idx]].T
    text_features = model.encode_text(caption_tokens[texts])
    if config.noise_std > 0:
        pixels = add_noise(pixels, config.noise_std, generator)
    if config.affine_p > 0:
        pixels = random_affine_batch(pixels, generator, p=config.affine_p)
    if config.adv_eps > 0:
        pixels = pgd_perturb(
            model,
            pixels,
            text_features.detach(),
            inverse,
            ignore,
            config.adv_eps,
            generator,
            steps=config.adv_steps,
            norm=config.adv_norm,
        )
    image_features = model.encode_image(normalize(pixels))
    return identity_aware_clip_loss(image_features, text_features, inverse, model.logit_scale.exp(), ignore)


def _optimise(
    model: open_clip.CLIP, tokenizer: WordTokenizer, world: World, data: TrainingSet, config: TrainConfig
) -> None:
    """Train ``model`` in place for ``config.steps`` steps."""
    opt = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.98), eps=1e-6)
    sched = _warmup_cosine(opt, config.warmup, config.steps)
    caption_tokens = tokenizer(data.captions)
    order_gen = torch.Generator().manual_seed(config.seed + 1_000_003)
    augment_gen = torch.Generator().manual_seed(config.seed + 2_000_003)  # noise, affine and adversarial starts
    model.train()
    t0 = time.time()
    for step, idx in enumerate(_batches(config.train_size, config.batch_size, config.steps, order_gen)):
        loss = _batch_loss(model, data, caption_tokens, idx, config, augment_gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if config.log_every and (step % config.log_every == 0 or step == config.steps - 1):
            print(f"step {step:5d}  loss {loss.item():.4f}  scale {model.logit_scale.exp().item():.1f}  "
                  f"{time.time() - t0:.0f}s", flush=True)  # fmt: skip
        if config.eval_every and (step + 1) % config.eval_every == 0:
            acc = evaluate_zero_shot(model, tokenizer, world, 400, torch.Generator().manual_seed(step))
            print(f"step {step + 1:5d}  zero-shot {acc:.3f}", flush=True)


def train(
    config: TrainConfig, initial_weights: dict[str, torch.Tensor] | None = None
) -> tuple[open_clip.CLIP, WordTokenizer, dict[str, Any]]:
    """Train one stage; returns (model in eval mode, tokenizer, info for ``train_info.json``).

    Options for invertibility: ``adv_eps`` > 0 trains the image tower adversarially (PGD with
    ``adv_steps`` steps from a random start in an ``adv_norm`` ball of that radius, [0, 1] pixel
    units), ``affine_p`` gives that share of images a random affine, ``noise_std`` > 0 trains on
    noisy images, and ``init_from`` fine-tunes saved weights (``initial_weights``: weights in memory,
    a recipe's previous stage). Robust models have gradients that point towards images of the class
    rather than noise, which is why the shipped ``toyworld-rn`` recipes end with an adversarial stage
    (``train_recipe``; docs/research/offline-world.md, "Offline world, second design")."""
    world = World(WorldConfig(**config.world_overrides))
    tokenizer = WordTokenizer.for_world(CONTEXT_LENGTH, world.config.decoy_names)
    model = build_model(model_config(config.arch, tokenizer.vocab_size), config.seed)
    if initial_weights is not None:
        model.load_state_dict(initial_weights)
    elif config.init_from is not None:
        model.load_state_dict(load_model_dir(config.init_from)[0].float().state_dict())
    t0 = time.time()
    data = make_dataset(world, config.train_size, config.seed)
    data_seconds = time.time() - t0
    t0 = time.time()
    _optimise(model, tokenizer, world, data, config)
    train_seconds = time.time() - t0
    model.eval()
    options = config.recorded_options()
    if initial_weights is not None:
        options["init_from"] = "previous stage"
    info = {
        **options,
        "train_seconds": round(train_seconds, 1),
        "data_seconds": round(data_seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in model.parameters()),
        "world_overrides": config.world_overrides,
        "world_config": world.config.model_dump(),
    }
    return model, tokenizer, info


def train_recipe(recipe: Recipe) -> tuple[open_clip.CLIP, WordTokenizer, dict[str, Any]]:
    """``train`` the recipe's first stage and then, with ``finetune``, its second stage on the same training
    images from the first stage's weights; info records the second stage by what differs from the first."""
    model, tokenizer, info = train(recipe.first_stage())
    finetune = recipe.finetune_stage()
    if finetune is None:
        return model, tokenizer, info
    model, tokenizer, second = train(finetune, initial_weights=model.state_dict())
    info = {
        **info,
        "finetune": recipe.finetune,
        "finetune_info": {k: second[k] for k in second if k not in info or second[k] != info[k]},
        "train_seconds": round(info["train_seconds"] + second["train_seconds"], 1),
        "data_seconds": round(info["data_seconds"] + second["data_seconds"], 1),
    }
    return model, tokenizer, info
