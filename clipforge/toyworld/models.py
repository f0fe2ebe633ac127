"""Small CLIP models trained on the toy world: a few shipped inside clipforge, the study models in
the companion distribution ``clipforge-zoo`` (``zoo/`` in the clipforge repository).

Each model folder is an open_clip ``local-dir`` model (``open_clip_config.json`` + fp16
``open_clip_model.safetensors``) plus its ``tokenizer.json`` and ``train_info.json`` (recipe, training
seconds, zero-shot accuracy, planted-association strengths). clipforge's own, what its quickstart,
Python API and library tests use, are in ``clipforge/toyworld/models/<name>/``; an installed package
adds more by declaring a folder of such folders in the ``clipforge.models`` entry-point group
(``clipforge-zoo`` does: ``zoo = "clipforge_zoo:MODELS_ROOT"``). Finding them reads the installed
packages' metadata and imports those small packages only. Recipes, of every model, zoo's included:
``train/recipes.py``; retrain all with ``python -m clipforge.toyworld.train --all``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch

from clipforge.toyworld.tokenizer import WordTokenizer
from clipforge.toyworld.world import World, WorldConfig

#: the folder of the models shipped inside clipforge
MODELS_ROOT = Path(__file__).parent / "models"
#: the entry-point group in which a package declares a folder of model folders (or a function returning
#: one): ``[project.entry-points."clipforge.models"] zoo = "clipforge_zoo:MODELS_ROOT"``
ENTRY_POINT_GROUP = "clipforge.models"
#: the companion distribution with the study models, and how one installs it
ZOO_PACKAGE = "clipforge-zoo"
ZOO_INSTALL = "pip install ./zoo (from the clipforge repository)"

# In clipforge itself:
#: the model to invert: an adversarially robust ResNet, whose inversions show the prompt's object.
DEFAULT_MODEL = "toyworld-rn"
#: a clean (not robust) ResNet of another seed, trained on the same world, for judging its inversions.
JUDGE_MODEL = "toyworld-judge-rn"
#: the first design, kept as a named alternative: a clean ViT (inversions show colour and background,
#: not shape); the library's ViT of the tests and of the sweep example.
CLEAN_MODEL = "toyworld-vit"

# In clipforge-zoo:
#: the robust data-scale series, smallest training set first (same recipe but for the image count).
DATA_SCALE_SERIES = ("toyworld-rn-3k", "toyworld-rn-10k", "toyworld-rn")
#: a training-progress series of DEFAULT_MODEL, least trained first: its recipe stopped after 20 steps,
#: after its clean stage, and the whole recipe (an order planted by construction, for ``compare``).
TRAINING_SERIES = ("toyworld-rn-step20", "toyworld-rn-clean", "toyworld-rn")
#: the screen's models: DEFAULT_MODEL's and JUDGE_MODEL's recipes on a world whose hidden marker has
#: cells of 5-6 px (2-3 px elsewhere), large enough to survive robust training.
SCREEN_MODEL = "toyworld-rn-marker"
SCREEN_JUDGE_MODEL = "toyworld-judge-rn-marker"
#: SCREEN_MODEL's recipe on that world with made-up control names that never meet the marker.
SCREEN_DECOYS_MODEL = "toyworld-rn-decoys"
#: the first design's ResNet judge and its ViTs' data-scale series.
CLEAN_JUDGE_MODEL = "toyworld-judge"
CLEAN_DATA_SCALE_SERIES = ("toyworld-vit-3k", "toyworld-vit-8k", "toyworld-vit")

#: the models clipforge ships itself
RUNTIME_MODELS = (DEFAULT_MODEL, JUDGE_MODEL, CLEAN_MODEL)
#: the models clipforge-zoo ships, named here so that one named without it is an error naming the package
ZOO_MODELS = (
    "toyworld-judge",
    "toyworld-judge-rn-marker",
    "toyworld-rn-10k",
    "toyworld-rn-3k",
    "toyworld-rn-clean",
    "toyworld-rn-decoys",
    "toyworld-rn-marker",
    "toyworld-rn-step20",
    "toyworld-vit-3k",
    "toyworld-vit-8k",
)


@dataclass(frozen=True)
class InstalledModel:
    """A toy model one can name: its folder and the distribution that provides it."""

    name: str
    folder: Path
    package: str  # "clipforge", or the package declaring it in the clipforge.models group ("clipforge-zoo")


class ModelNotInstalledError(KeyError):
    """A model of a companion package that is not installed; the message names the package."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _model_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return [
        p
        for p in sorted(root.iterdir())
        if (p / "open_clip_config.json").is_file() and (p / "open_clip_model.safetensors").is_file()
    ]


def _declared_roots() -> list[tuple[str, Path]]:
    """(package, folder of model folders) for each entry point of the ``clipforge.models`` group; one
    that cannot be read is warned about, naming it, and left out."""
    roots = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        package = ep.dist.name if getattr(ep, "dist", None) is not None else ep.name
        try:
            value = ep.load()
            root = Path(value() if callable(value) else value)
        except Exception as exc:  # a broken third-party package must not break clipforge
            warnings.warn(
                f"the {ENTRY_POINT_GROUP!r} entry point {ep.name!r} of {package!r} ({ep.value}) could not be "
                f"read, its models are left out: {type(exc).__name__}: {exc}",
                stacklevel=3,
            )
            continue
        roots.append((package, root))
    return roots


def installed_models() -> dict[str, InstalledModel]:
    """Name -> model, for every toy model here: clipforge's own, then those of the installed packages
    that declare some (clipforge-zoo's); a name clipforge ships itself is never replaced."""
    models = {p.name: InstalledModel(p.name, p, "clipforge") for p in _model_folders(MODELS_ROOT)}
    for package, root in _declared_roots():
        for p in _model_folders(root):
            models.setdefault(p.name, InstalledModel(p.name, p, package))
    return models


def bundled_models() -> dict[str, Path]:
    """Name -> folder of every toy model here (clipforge's own and those of installed companion
    packages such as clipforge-zoo)."""
    return {name: model.folder for name, model in installed_models().items()}


def missing_model_message(name: str, installed: dict[str, Path] | None = None) -> str | None:
    """For a model of clipforge-zoo that is not installed, the error to give, naming the package and how
    to install it; None for any other name (an installed model, or one no clipforge package ships)."""
    if name not in ZOO_MODELS or name in (bundled_models() if installed is None else installed):
        return None
    return f"model {name!r} is in the {ZOO_PACKAGE} package, which is not installed: {ZOO_INSTALL}"


def model_dir(name: str) -> Path:
    """Folder of a toy model; raises ``ModelNotInstalledError`` (a ``KeyError``) naming the package for
    a model of clipforge-zoo without it, and ``KeyError`` listing the available names for another."""
    models = bundled_models()
    if name in models:
        return models[name]
    missing = missing_model_message(name, models)
    if missing:
        raise ModelNotInstalledError(missing)
    raise KeyError(f"no bundled toyworld model {name!r}; available: {sorted(models)}")


def model_home(name: str) -> Path:
    """Where a model of a recipe belongs (for retraining it in place): ``clipforge/toyworld/models/<name>``
    for clipforge's own, the installed clipforge-zoo's folder for the zoo's (an editable install's:
    ``zoo/src/clipforge_zoo/models/<name>``); ``ModelNotInstalledError`` for a zoo model without the zoo."""
    if name not in ZOO_MODELS:
        return MODELS_ROOT / name
    zoo = [root for package, root in _declared_roots() if package == ZOO_PACKAGE]
    if not zoo:
        raise ModelNotInstalledError(missing_model_message(name, {}))
    return zoo[0] / name


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
