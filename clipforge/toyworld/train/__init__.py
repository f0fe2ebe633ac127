"""Training the toy world's CLIP models (not needed at run time: the shipped models load without it).

One module per job: ``architectures`` (open_clip configs, building and saving a model), ``recipes``
(the shipped models' recipes, as data), ``config`` (``TrainConfig``, the options of a training
stage, and ``Recipe``), ``losses`` (contrastive loss and PGD), ``augment`` (noise and random
affine), ``loop`` (the training loop), ``evaluate`` (zero-shot accuracy and planted associations)
and ``cli`` (``python -m clipforge.toyworld.train``).
"""

from clipforge.toyworld.train.architectures import ARCHS, build_model, model_config, normalize, save_model
from clipforge.toyworld.train.augment import add_noise, random_affine_batch
from clipforge.toyworld.train.cli import main, run
from clipforge.toyworld.train.config import Recipe, TrainConfig, check_recipe
from clipforge.toyworld.train.evaluate import evaluate_zero_shot, planted_report, zero_shot_report
from clipforge.toyworld.train.loop import make_dataset, train, train_recipe
from clipforge.toyworld.train.losses import identity_aware_clip_loss, pgd_perturb
from clipforge.toyworld.train.recipes import MARKER_WORLD, RECIPES, ROBUST_FINETUNE, ROBUST_WORLD

__all__ = [
    "ARCHS", "build_model", "model_config", "normalize", "save_model",
    "add_noise", "random_affine_batch", "identity_aware_clip_loss", "pgd_perturb",
    "TrainConfig", "Recipe", "check_recipe", "RECIPES", "ROBUST_WORLD", "ROBUST_FINETUNE", "MARKER_WORLD",
    "make_dataset", "train", "train_recipe", "evaluate_zero_shot", "zero_shot_report", "planted_report",
    "main", "run",
]  # fmt: skip
