"""The toy world's CLIP architectures: open_clip configs, seeded construction, input
normalisation, and the open_clip ``local-dir`` folder a trained model is saved as."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from safetensors.torch import save_file

from clipforge.toyworld.tokenizer import WordTokenizer
from clipforge.toyworld.world import IMAGE_SIZE

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
