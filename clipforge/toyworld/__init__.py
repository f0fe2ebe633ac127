"""Toy world: a synthetic captioned image world with planted phenomena, and small CLIP models trained on it.

from clipforge.toyworld import World, load_model, read_images, score
model, tokenizer = load_model("toyworld-rn")     # open_clip CLIP (fp32, eval) + WordTokenizer
score(read_images(images), prompts)             # the analytic (non-learned) judge: colour/shape/background
"""

from clipforge.toyworld.analytic_judge import (
    AnalyticVerdicts,
    Reading,
    Region,
    concept_present,
    read_images,
    score,
    verdicts,
)
from clipforge.toyworld.marker_reading import MARKER_GRATING_PERIODS, MARKER_GRATING_PRESENT, marker_grating_share
from clipforge.toyworld.models import (
    CLEAN_MODEL,
    DATA_SCALE_SERIES,
    DEFAULT_MODEL,
    JUDGE_MODEL,
    RUNTIME_MODELS,
    SCREEN_JUDGE_MODEL,
    SCREEN_MODEL,
    TRAINING_SERIES,
    ZOO_MODELS,
    ZOO_PACKAGE,
    InstalledModel,
    ModelNotInstalledError,
    bundled_models,
    installed_models,
    load_model,
    load_model_dir,
    missing_model_message,
    model_dir,
    model_home,
    model_world,
)
from clipforge.toyworld.tokenizer import WordTokenizer
from clipforge.toyworld.world import BACKGROUNDS, COLOURS, SHAPES, ImageMeta, ObjectMeta, Sample, World, WorldConfig

__all__ = [
    "World", "WorldConfig", "COLOURS", "SHAPES", "BACKGROUNDS", "Sample", "ImageMeta", "ObjectMeta", "WordTokenizer",
    "bundled_models", "model_dir", "model_home", "model_world", "load_model", "load_model_dir",
    "installed_models", "InstalledModel", "missing_model_message", "ModelNotInstalledError",
    "DEFAULT_MODEL", "JUDGE_MODEL", "CLEAN_MODEL", "DATA_SCALE_SERIES", "TRAINING_SERIES", "SCREEN_MODEL",
    "SCREEN_JUDGE_MODEL", "RUNTIME_MODELS", "ZOO_MODELS", "ZOO_PACKAGE",
    "read_images", "score", "verdicts", "Reading", "Region", "AnalyticVerdicts", "concept_present",
    "marker_grating_share", "MARKER_GRATING_PERIODS", "MARKER_GRATING_PRESENT",
]  # fmt: skip
