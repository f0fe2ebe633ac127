"""open_clip models as backbones: any open_clip model name with a pretrained tag or checkpoint
file, ``local-dir:`` folders, ``hf-hub:`` repos, inline architecture configs (random weights, for
tests and speed measurements), and the offline models bundled with clipforge (``toyworld-*``).

Each model brings its own normalisation (mean/std) and input size from its pretrained config.
"""

from __future__ import annotations

import copy
import difflib
import json
import logging
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, model_validator

from clipforge import API_VERSION, Backbone, Options, hookimpl, option_error, printable

CLIPFORGE_API = API_VERSION  # a built-in is written against the API of the clipforge it comes with


def _open_clip():
    """open_clip, imported when first needed: it takes seconds to import, and listing plugins,
    validating a spec on a bundled model or resuming a finished sweep does not need it."""
    import open_clip

    return open_clip


OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
OFFLINE_DEFAULT = "toyworld-rn"


def bundled_models() -> dict[str, Path]:
    """The offline models shipped inside clipforge, by name."""
    try:
        from clipforge.toyworld import bundled_models as found
    except ImportError:
        return {}
    return found()


def missing_bundled(name: str) -> str | None:
    """For a model of clipforge's companion package (clipforge-zoo) that is not installed, the error
    naming the package to install; None for any other name."""
    from clipforge.toyworld import missing_model_message

    return missing_model_message(name)


def _offline_hint() -> str:
    return (
        "Without a network, point 'pretrained' at a local checkpoint file, use "
        "'model': 'local-dir:/path/to/folder' (open_clip_config.json + weights), or use the offline "
        f'default model: {{"name": "open_clip", "options": {{"model": "{OFFLINE_DEFAULT}"}}}}.'
    )


def _downloads_off() -> bool:
    """Whether huggingface_hub is set to work from its cache only (``HF_HUB_OFFLINE``)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _hub_repo(name: str, weights: str | None) -> str | None:
    """The hub repository holding ``name``'s weights (``weights`` a pretrained tag), if any."""
    if name.startswith("hf-hub:"):
        return name.removeprefix("hf-hub:")
    if not weights:
        return None
    hub = (_open_clip().get_pretrained_cfg(name, weights) or {}).get("hf_hub", "")
    return os.path.split(hub)[0] or None


def _not_cached_message(what: str, name: str, weights: str | None, cache_dir: str | None) -> str:
    """Weights that are not in the hub cache while downloads are off (``HF_HUB_OFFLINE=1``): said at
    once, with where they were looked for and the three ways to provide them."""
    from huggingface_hub import constants

    cache = cache_dir or constants.HF_HUB_CACHE
    repo = _hub_repo(name, weights)
    held = f" (the hub repository {repo!r})" if repo else ""
    return (
        f"open_clip backbone: the weights of {what}{held} are not in the Hugging Face cache {str(cache)!r}, "
        "and downloads are off (HF_HUB_OFFLINE is set). Provide them in one of three ways: a local checkpoint "
        "file ('pretrained': '/path/to/weights.safetensors'); a pre-filled cache (copy a hub cache that holds "
        "them from a machine with a network, and point HF_HOME or HF_HUB_CACHE, or the option 'cache_dir', at "
        "it); or a network (unset HF_HUB_OFFLINE to download them). "
        f'Or use the offline model bundled with clipforge: {{"name": "open_clip", "options": {{"model": '
        f'"{OFFLINE_DEFAULT}"}}}}.'
    )


class OpenClipOptions(Options):
    model: str = Field(
        "ViT-B-16",
        description="An open_clip model name (e.g. 'ViT-B-16', 'RN50'), 'local-dir:PATH', 'hf-hub:ORG/REPO', "
        "or a bundled offline model ('toyworld-rn', 'toyworld-vit', ...).",
    )
    pretrained: str | None = Field(
        None,
        description="A pretrained tag (e.g. 'openai', 'laion2b_s34b_b88k'), a checkpoint file, or "
        "'random' for random weights. Default: 'openai' where the model has it (random with 'config'). "
        "Ignored for local-dir: and hf-hub: models; refused for the bundled models, which have their own weights.",
    )
    config: dict[str, Any] | None = Field(
        None,
        description="An open_clip architecture (model_cfg: embed_dim, vision_cfg, text_cfg) to build "
        "instead of a named model; weights from 'pretrained' (a file) or random.",
    )
    init_seed: int = Field(0, description="Seed for randomly initialised weights.")
    mean: tuple[float, float, float] | None = Field(None, description="Override the model's normalisation mean.")
    std: tuple[float, float, float] | None = Field(None, description="Override the model's normalisation std.")
    cache_dir: str | None = Field(None, description="Where downloaded weights are cached.")

    @model_validator(mode="after")
    def _known_model(self) -> OpenClipOptions:
        if self.config is not None:
            if self.pretrained not in (None, "random") and not os.path.isfile(self.pretrained):
                raise option_error(
                    "pretrained",
                    f"with 'config', 'pretrained' must be a checkpoint file or 'random'; no file {self.pretrained!r}",
                    self.pretrained,
                )
            return self
        if self.model in bundled_models():
            if self.pretrained is not None:
                raise option_error(
                    "pretrained",
                    f"{self.model!r} is a model bundled with clipforge, with its own weights: it takes no "
                    f"'pretrained' (it would not load {self.pretrained!r}); leave 'pretrained' (--pretrained) out",
                    self.pretrained,
                )
            return self
        if ":" in self.model:
            return self
        missing = missing_bundled(self.model)
        if missing:
            raise option_error("model", missing, self.model)
        name = self.model.replace("/", "-")
        known = _open_clip().list_models()
        if name not in known:
            names = known + list(bundled_models())
            close = difflib.get_close_matches(self.model, names, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise option_error(
                "model", f"unknown open_clip model {self.model!r}{hint} (see open_clip.list_models())", self.model
            )
        tags = _open_clip().list_pretrained_tags_by_model(name)
        if self.pretrained is None:
            if "openai" not in tags:
                raise option_error(
                    "pretrained",
                    f"{self.model!r} has no 'openai' weights; choose one of "
                    f"{', '.join(tags) or 'none'}, a checkpoint file, or 'random'",
                )
            self.pretrained = "openai"
        elif self.pretrained != "random" and not os.path.isfile(self.pretrained) and self.pretrained not in tags:
            raise option_error(
                "pretrained",
                f"{self.pretrained!r} is neither a pretrained tag of {self.model!r} nor an "
                f"existing file (tags: {', '.join(tags) or 'none'}; or 'random')",
                self.pretrained,
            )
        return self

    def weights(self) -> str | None:
        """The pretrained value to hand to open_clip (None: random weights)."""
        return None if self.pretrained in (None, "random") else self.pretrained


class BackboneLoadError(RuntimeError):
    pass


def check_checkpoint(path: str) -> None:
    """Refuse a checkpoint file that cannot be read safely, naming it: safetensors are read as
    such; other files must be plain tensors (torch's ``weights_only``): clipforge never unpickles
    code, which could run anything."""
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        try:
            with safe_open(path, framework="pt") as f:
                f.keys()
        except Exception as exc:
            raise BackboneLoadError(f"checkpoint {path!r} is not a readable safetensors file: {exc}") from None
        return
    if path.endswith(".npz"):
        raise BackboneLoadError(
            f"checkpoint {path!r}: NumPy .npz checkpoints (big_vision) are not supported; convert it to safetensors"
        )
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        what = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc) or "pickle" in str(exc).lower():
            raise BackboneLoadError(
                f"checkpoint {path!r} holds pickled Python objects, not only tensors; clipforge does not load "
                "those (unpickling can run any code). Save its state_dict with safetensors and point at that"
            ) from None
        raise BackboneLoadError(f"checkpoint {path!r} is not a readable torch checkpoint: {what}") from None


@contextmanager
def _quiet_root_logger():
    """open_clip logs download failures on the root logger; we raise a clearer error instead."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        root.setLevel(level)


class OpenClipBackbone(Backbone):
    """A frozen open_clip model in fp32."""

    name = "open_clip"
    Options = OpenClipOptions
    _bundled = False  # set when the weights come from a bundled (offline) model folder

    def __init__(self, options: OpenClipOptions, device: torch.device) -> None:
        super().__init__(options, device)
        with torch.random.fork_rng(devices=[]):  # random init must not touch the global RNG
            torch.manual_seed(options.init_seed)
            model, self.tokenizer, preprocess = self._load()
        model = model.to(device).eval().float()
        model.requires_grad_(False)
        self.model = model
        self._warned_words: set[str] = set()
        self._warned_long: set[str] = set()
        size = model.visual.image_size
        self.input_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        mean = options.mean or tuple(preprocess.get("mean", OPENAI_MEAN))
        std = options.std or tuple(preprocess.get("std", OPENAI_STD))
        self.interpolation = preprocess.get("interpolation", "bicubic") or "bicubic"
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)

    @property
    def label(self) -> str:
        o = self.options
        if o.config is not None:
            return f"open_clip:config({o.weights() or 'random'})"
        if ":" in o.model or o.model in bundled_models():
            return f"open_clip:{o.model}"
        return f"open_clip:{o.model}/{o.weights() or 'random'}"

    def _load(self) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
        o = self.options
        if o.config is not None:
            return self._from_config(copy.deepcopy(o.config), o.weights())
        bundled = bundled_models()
        if o.model in bundled:
            return self._from_bundled(bundled[o.model])
        if o.model.startswith("local-dir:"):
            folder = Path(o.model.removeprefix("local-dir:"))
            if (folder / "tokenizer.json").is_file():
                return self._from_bundled(folder)
        return self._from_open_clip()

    def _from_open_clip(self) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
        o = self.options
        name = o.model.replace("/", "-") if ":" not in o.model else o.model
        weights = o.weights() if ":" not in name else None
        quick_gelu = False
        if weights and not os.path.isfile(weights):  # e.g. OpenAI's weights were trained with QuickGELU
            quick_gelu = bool(_open_clip().get_pretrained_cfg(name, weights).get("quick_gelu", False))
        if weights and not os.path.isfile(weights) and not os.environ.get("HF_HUB_OFFLINE"):
            # a hub download retries for about a minute before it gives up on a machine without network
            print(
                f"open_clip backbone: fetching the weights of {o.model!r} ({weights!r}) unless cached; "
                "set HF_HUB_OFFLINE=1 to fail at once on a machine without network",
                file=sys.stderr,
            )
        if weights and os.path.isfile(weights):
            check_checkpoint(weights)
        try:
            with _quiet_root_logger():
                model = _open_clip().create_model(
                    name,
                    pretrained=weights,
                    cache_dir=o.cache_dir,
                    force_quick_gelu=quick_gelu,
                )
        except (RuntimeError, OSError, ValueError) as exc:
            what = f"{o.model!r} with pretrained {o.pretrained!r}" if ":" not in name else repr(o.model)
            if "download" in str(exc).lower() or "hub" in str(exc).lower() or "connect" in str(exc).lower():
                if _downloads_off():
                    raise BackboneLoadError(_not_cached_message(what, name, weights, o.cache_dir)) from None
                raise BackboneLoadError(
                    f"open_clip backbone: could not download the weights of {what}; this machine may be "
                    f"offline ({exc}). {_offline_hint()}"
                ) from None
            raise BackboneLoadError(f"open_clip backbone: could not load {what}: {exc}") from None
        try:
            tokenizer = _open_clip().get_tokenizer(name)
        except ModuleNotFoundError as exc:
            raise BackboneLoadError(
                f"open_clip backbone: the tokenizer of {o.model!r} needs the package {exc.name!r}, which is not "
                "installed: pip install 'clipforge[hf]'"
            ) from None
        return model, tokenizer, dict(getattr(model.visual, "preprocess_cfg", {}) or {})

    def _from_config(self, cfg: dict[str, Any], checkpoint: str | None) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
        preprocess = cfg.pop("preprocess_cfg", {})
        custom = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
        cls = _open_clip().CustomTextCLIP if custom else _open_clip().CLIP
        try:
            model = cls(**cfg)
        except TypeError as exc:
            raise BackboneLoadError(f"open_clip backbone: invalid 'config': {exc}") from None
        if checkpoint:
            check_checkpoint(checkpoint)
            try:
                _open_clip().load_checkpoint(model, checkpoint)
            except RuntimeError as exc:  # the weights do not fit the architecture
                first = str(exc).strip().splitlines()
                raise BackboneLoadError(
                    f"checkpoint {checkpoint!r} does not fit the model's 'config': {' '.join(first[:2])[:300]}"
                ) from None
        context = cfg.get("text_cfg", {}).get("context_length", 77)
        return model, _open_clip().SimpleTokenizer(context_length=context), preprocess

    def _from_bundled(self, folder: Path) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
        from clipforge.toyworld import load_model_dir

        config = json.loads((folder / "open_clip_config.json").read_text())
        model, tokenizer = load_model_dir(folder)
        self._bundled = True
        return model, tokenizer, config.get("preprocess_cfg", {})

    def captions(self) -> list[str] | None:
        """An offline model's world captions (every caption its judge classifies against)."""
        if not self._bundled:
            return None
        from clipforge.toyworld import World

        return World.captions()

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image((pixels - self.mean) / self.std)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        self._warn_unknown_words(texts)
        self._warn_cut_texts(texts)
        tokens = self.tokenizer(texts).to(self.device)
        return self.model.encode_text(tokens)

    def token_count(self, text: str) -> int | None:
        """How many tokens the model's tokenizer makes of ``text`` with its start and end tokens, before
        cutting it to the context length; None for a tokenizer that does not say (a Hugging Face one,
        or one that reduces long texts its own way rather than cutting them)."""
        tokenizer = self.tokenizer
        if not callable(getattr(tokenizer, "encode", None)) or getattr(tokenizer, "reduction_fn", None) is not None:
            return None
        if not isinstance(getattr(tokenizer, "context_length", None), int):
            return None
        return len(tokenizer.encode(text)) + 2

    def _warn_cut_texts(self, texts: list[str]) -> None:
        """The tokenizer cuts a text longer than the model's context length, and the model then reads
        only its beginning: said once per text (a prompt's, usually), with how many tokens go."""
        context = getattr(self.tokenizer, "context_length", None)
        for text in dict.fromkeys(texts):
            if text in self._warned_long:
                continue
            count = self.token_count(text)
            if count is None or not isinstance(context, int) or count <= context:
                continue
            self._warned_long.add(text)
            dropped = count - context
            last = "its last token is" if dropped == 1 else f"its last {dropped} tokens are"
            warnings.warn(
                f"{self.label}: the text '{printable(text, 120)}' is {count} tokens long (with its start and end "
                f"tokens), more than the model's context length of {context}: {last} dropped, and the model "
                "reads only its beginning; shorten it",
                stacklevel=3,
            )

    def _warn_unknown_words(self, texts: list[str]) -> None:
        """A word-level tokenizer (the bundled models') reads words outside its vocabulary as one
        untrained token, so "a photo of a dog" on a toy model silently means "a photo of a <unk>"."""
        unknown_words = getattr(self.tokenizer, "unknown_words", None)
        if unknown_words is None:  # open_clip's BPE tokenizers encode every word
            return
        new = sorted({w for text in texts for w in unknown_words(text)} - self._warned_words)
        if new:
            self._warned_words.update(new)
            # words come from the user: shown escaped and cut, never a megabyte of terminal codes
            shown = ", ".join(printable(word, 40) for word in new[:20])
            shown += f" and {len(new) - 20} more" if len(new) > 20 else ""
            warnings.warn(f"{self.label}: not in the model's vocabulary, read as <unk>: {shown}", stacklevel=3)


@hookimpl
def register_backbones(register):
    register(OpenClipBackbone)
