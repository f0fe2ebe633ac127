"""Small CLIP models trained on the toy world and shipped inside the package.

Each ``clipforge/toyworld/models/<name>/`` folder is an open_clip ``local-dir``
model (``open_clip_config.json`` + fp16 ``open_clip_model.safetensors``) plus its
``tokenizer.json`` and ``train_info.json`` (recipe, training seconds, zero-shot
accuracy, planted-association strengths). Recipes: ``train.RECIPES``; retrain all
with ``python -m clipforge.toyworld.train --all``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from clipforge.toyworld.tokenizer import WordTokenizer

MODELS_ROOT = Path(__file__).parent / "models"
DEFAULT_MODEL = "toyworld-vit"  # the model to invert
JUDGE_MODEL = "toyworld-judge"  # a different architecture and seed, for judging inversions
#: the ViT data-scale series, smallest training set first (same arch, seed and steps).
DATA_SCALE_SERIES = ("toyworld-vit-3k", "toyworld-vit-8k", "toyworld-vit")


def bundled_models() -> dict[str, Path]:
    """Name -> folder of every shipped model."""
    if not MODELS_ROOT.is_dir():
        return {}
    return {
        p.name: p
        for p in sorted(MODELS_ROOT.iterdir())
        if (p / "open_clip_config.json").is_file() and (p / "open_clip_model.safetensors").is_file()
    }


def model_dir(name: str) -> Path:
    """Folder of a shipped model; raises ``KeyError`` listing the available names."""
    models = bundled_models()
    if name not in models:
        raise KeyError(f"no bundled toyworld model {name!r}; available: {sorted(models)}")
    return models[name]


def load_tokenizer(name: str) -> WordTokenizer:
    return WordTokenizer.load(model_dir(name) / "tokenizer.json")


def load_model(name: str, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, WordTokenizer]:
    """(fp32 open_clip CLIP in eval mode, its tokenizer). Inputs: CLIP-normalised 64x64 images."""
    import open_clip

    model = open_clip.create_model(f"local-dir:{model_dir(name)}", device=device)
    return model.eval(), load_tokenizer(name)
