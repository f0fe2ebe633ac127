"""Models passed as Python objects: what a notebook has in hand, made a backbone without a spec name.

:func:`model` wraps an object with what it does not carry itself (a tokenizer, a processor, the
normalisation or input size); a bare object is wrapped with nothing. Three kinds are told apart by
what they offer:

- an open_clip ``CLIP`` (``encode_image``, ``encode_text`` and ``visual``): both sides; the
  normalisation and input size from ``visual.preprocess_cfg`` and ``visual.image_size``;
- a Hugging Face ``CLIPModel`` (``get_image_features`` and ``vision_model``): both sides, with its
  processor (normalisation, size and tokenizer) or its tokenizer and explicit normalisation;
- any other ``torch.nn.Module``: an image tower, images in and per-image features out; a timm model's
  ``pretrained_cfg`` gives its normalisation and input size, otherwise they are given explicitly
  (without ``mean`` and ``std`` it sees pixels in [0, 1]).

The model is borrowed, not copied: it stays on its device, and :func:`borrowed` keeps it in eval
mode without gradients for the run and gives back its modes and ``requires_grad`` flags after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

#: OpenAI CLIP's normalisation: open_clip's default for models whose config names none
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
OPENAI_VOCAB = 49408  # open_clip's BPE tokenizer: the default text side of an open_clip CLIP


class ModelError(ValueError):
    """A model passed as an object that cannot serve as a backbone as given."""


@dataclass(frozen=True, eq=False)
class ModelRef:
    """A model object with what it does not carry itself; see :func:`model`."""

    obj: torch.nn.Module
    tokenizer: Any = None
    processor: Any = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    input_size: tuple[int, int] | None = None
    interpolation: str = "bicubic"
    name: str | None = None

    @property
    def kind(self) -> str:
        """``open_clip``, ``hf`` or ``module``: how its images and texts are embedded."""
        obj = self.obj
        if hasattr(obj, "get_image_features") and hasattr(obj, "vision_model"):
            return "hf"
        if hasattr(obj, "encode_image") and hasattr(obj, "encode_text") and hasattr(obj, "visual"):
            return "open_clip"
        return "module"

    @property
    def label(self) -> str:
        what = {"hf": "Hugging Face CLIPModel", "open_clip": "open_clip CLIP", "module": "torch module"}[self.kind]
        if self.name:
            return f"{what} {self.name!r}"
        kind = type(self.obj).__name__
        return what if what.endswith(kind) else f"{what} {kind}"

    def tower(self) -> torch.nn.Module:
        """The image tower, whose layers feature visualisation names."""
        if self.kind == "hf":
            return self.obj.vision_model
        if self.kind == "open_clip":
            return self.obj.visual
        return self.obj

    def device(self) -> torch.device:
        for tensor in [*self.obj.parameters(), *self.obj.buffers()]:
            return tensor.device
        return torch.device("cpu")

    def preprocessing(self) -> tuple[tuple[float, ...], tuple[float, ...], tuple[int, int], str]:
        """(mean, std, input size, interpolation): what was given, else what the object carries; an
        input size that neither says is an error naming what to give."""
        carried_mean, carried_std, carried_size = self._carried()
        mean = self.mean or carried_mean or (0.0, 0.0, 0.0)
        std = self.std or carried_std or (1.0, 1.0, 1.0)
        size = self.input_size or carried_size
        if size is None:
            raise ModelError(
                f"{self.label}: its input size is not known from the object; give it, "
                "clipforge.model(net, input_size=224) (and mean=, std= for its normalisation)"
            )
        return tuple(mean), tuple(std), size, self.interpolation

    def _carried(self) -> tuple[Any, Any, tuple[int, int] | None]:
        obj = self.obj
        if self.kind == "open_clip":
            cfg = dict(getattr(obj.visual, "preprocess_cfg", {}) or {})
            size = getattr(obj.visual, "image_size", None)
            return cfg.get("mean", OPENAI_MEAN), cfg.get("std", OPENAI_STD), _pair(size)
        if self.kind == "hf":
            images = getattr(self.processor, "image_processor", self.processor)
            size = getattr(obj.config.vision_config, "image_size", None)
            if images is None:
                if self.mean is None or self.std is None:
                    raise ModelError(
                        f"{self.label}: its normalisation is not known without its processor; give it, "
                        "clipforge.model(hf, processor=processor), or mean= and std="
                    )
                return None, None, _pair(size)
            return getattr(images, "image_mean", None), getattr(images, "image_std", None), _pair(size)
        cfg = getattr(obj, "pretrained_cfg", None) or getattr(obj, "default_cfg", None) or {}  # timm's
        size = cfg.get("input_size")
        return cfg.get("mean"), cfg.get("std"), _pair(size[-2:]) if size else None

    def text_encoder(self) -> Callable[[list[str], torch.device], torch.Tensor] | None:
        """How texts are embedded, or None where the object has no text side (or no tokenizer for it)."""
        obj, tokenizer = self.obj, self.tokenizer
        if self.kind == "open_clip":
            if tokenizer is None and getattr(obj, "vocab_size", None) == OPENAI_VOCAB:
                import open_clip

                tokenizer = open_clip.SimpleTokenizer(context_length=getattr(obj, "context_length", 77))
            if tokenizer is None:
                return None
            return lambda texts, device: obj.encode_text(tokenizer(texts).to(device))
        if self.kind == "hf":
            tokenizer = tokenizer or getattr(self.processor, "tokenizer", None)
            if tokenizer is None:
                return None

            def encode(texts: list[str], device: torch.device) -> torch.Tensor:
                tokens = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
                return _tensor(obj.get_text_features(**{k: v.to(device) for k, v in tokens.items()}))

            return encode
        return None

    def image_encoder(self) -> Callable[[torch.Tensor], torch.Tensor]:
        obj = self.obj
        if self.kind == "open_clip":
            return obj.encode_image
        if self.kind == "hf":
            return lambda pixels: _tensor(obj.get_image_features(pixel_values=pixels))
        return obj


def model(
    obj: torch.nn.Module,
    *,
    tokenizer: Any = None,
    processor: Any = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: int | Sequence[int] | None = None,
    interpolation: str = "bicubic",
    name: str | None = None,
) -> ModelRef:
    """A model object to invert or visualise, with what it does not carry itself: an open_clip
    ``CLIP`` (its ``tokenizer`` where it is not OpenAI's BPE), a Hugging Face ``CLIPModel`` (its
    ``processor``, or ``tokenizer`` and ``mean``/``std``), or any ``nn.Module`` image tower
    (``input_size``, and ``mean``/``std`` unless it takes pixels in [0, 1]). ``name`` labels it."""
    if isinstance(obj, ModelRef):
        return obj
    if not isinstance(obj, torch.nn.Module):
        raise ModelError(f"a model must be a torch.nn.Module (or a model name), not {type(obj).__name__}")
    for what, value in (("mean", mean), ("std", std)):
        if value is not None and len(value) != 3:
            raise ModelError(f"{what} must have 3 values (one per colour channel), not {len(value)}")
    return ModelRef(
        obj,
        tokenizer,
        processor,
        tuple(float(v) for v in mean) if mean is not None else None,
        tuple(float(v) for v in std) if std is not None else None,
        _pair(input_size),
        interpolation,
        name,
    )


def _pair(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1])) if len(size) == 2 else (int(size[0]), int(size[0]))


def _tensor(output: Any) -> torch.Tensor:
    """A model output as a tensor (recent transformers return output objects from ``get_*_features``)."""
    if torch.is_tensor(output):
        return output
    for key in ("image_embeds", "text_embeds", "pooler_output"):
        value = getattr(output, key, None)
        if torch.is_tensor(value):
            return value
    return output[0]


@contextmanager
def borrowed(models: Sequence[torch.nn.Module]) -> Iterator[None]:
    """Use ``models`` frozen for the duration: eval mode, no gradients for their parameters; every
    module's mode and every parameter's ``requires_grad`` flag given back as they were afterwards."""
    modes = [(m, m.training) for obj in models for m in obj.modules()]
    flags = [(p, p.requires_grad) for obj in models for p in obj.parameters()]
    try:
        for obj in models:
            obj.eval()
            obj.requires_grad_(False)
        yield
    finally:
        for module, training in modes:
            module.training = training
        for param, flag in flags:
            param.requires_grad_(flag)
