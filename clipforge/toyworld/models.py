"""Small CLIP models trained on the toy world and shipped inside the package.

Each ``clipforge/toyworld/models/<name>/`` folder is an open_clip ``local-dir``
model (``open_clip_config.json`` + fp16 ``open_clip_model.safetensors``) plus its
``tokenizer.json`` and ``train_info.json`` (recipe, training seconds, zero-shot
accuracy, planted-association strengths). Recipes: ``train/recipes.py``; retrain all
with ``python -m clipforge.toyworld.train --all``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from clipforge.toyworld.tokenizer import WordTokenizer
from clipforge.toyworld.world import World, WorldConfig

MODELS_ROOT = Path(__file__).parent / "models"
#: the model to invert: an adversarially robust ResNet, whose inversions show the prompt's object.
DEFAULT_MODEL = "toyworld-rn"
#: a clean (not robust) ResNet of another seed, trained on the same world, for judging its inversions.
JUDGE_MODEL = "toyworld-judge-rn"
#: the robust data-scale series, smallest training set first (same recipe but for the image count).
DATA_SCALE_SERIES = ("toyworld-rn-3k", "toyworld-rn-10k", "toyworld-rn")
#: a training-progress series of DEFAULT_MODEL, least trained first: its recipe stopped after 20 steps,
#: after its clean stage, and the whole recipe (an order planted by construction, for ``compare``).
TRAINING_SERIES = ("toyworld-rn-step20", "toyworld-rn-clean", "toyworld-rn")
#: the screen's models: DEFAULT_MODEL's and JUDGE_MODEL's recipes on a world whose hidden marker has
#: cells of 5-6 px (2-3 px elsewhere), large enough to survive robust training.
SCREEN_MODEL = "toyworld-rn-marker"
SCREEN_JUDGE_MODEL = "toyworld-judge-rn-marker"
#: the first design, kept as named alternatives: clean ViTs (inversions show colour and background,
#: not shape), their data-scale series and their ResNet judge.
CLEAN_MODEL = "toyworld-vit"
CLEAN_JUDGE_MODEL = "toyworld-judge"
CLEAN_DATA_SCALE_SERIES = ("toyworld-vit-3k", "toyworld-vit-8k", "toyworld-vit")


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


def model_world(name: str) -> World:
    """The world a shipped model was trained on (its ``train_info.json``), e.g. for fresh test images."""
    info = json.loads((model_dir(name) / "train_info.json").read_text())
    return World(WorldConfig(**info["world_config"]))


def load_tokenizer(name: str) -> WordTokenizer:
    return WordTokenizer.load(model_dir(name) / "tokenizer.json")


def load_model(name: str, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, WordTokenizer]:
    """(fp32 open_clip CLIP in eval mode, its tokenizer). Inputs: CLIP-normalised 64x64 images."""
    return load_model_dir(model_dir(name), device)


def load_model_dir(folder: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, WordTokenizer]:
    """A saved model folder (bundled or freshly trained), loaded the way the core loads it:
    ``open_clip.create_model('local-dir:...')``, in eval mode, with its word tokenizer."""
    import open_clip

    model = open_clip.create_model(f"local-dir:{folder}", device=device)
    return model.eval(), WordTokenizer.load(Path(folder) / "tokenizer.json")
