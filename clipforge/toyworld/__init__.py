"""Toy world: a synthetic captioned image world with planted phenomena, and small CLIP models trained on it.

    from clipforge.toyworld import World, load_model
    model, tokenizer = load_model("toyworld-vit")   # open_clip CLIP (fp32, eval) + WordTokenizer
"""

from clipforge.toyworld.models import DEFAULT_MODEL, JUDGE_MODEL, bundled_models, load_model, model_dir
from clipforge.toyworld.tokenizer import WordTokenizer
from clipforge.toyworld.world import ImageMeta, ObjectMeta, Sample, World, WorldConfig

__all__ = [
    "World", "WorldConfig", "Sample", "ImageMeta", "ObjectMeta", "WordTokenizer",
    "bundled_models", "model_dir", "load_model", "DEFAULT_MODEL", "JUDGE_MODEL",
]  # fmt: skip
