"""What ``clipforge models`` lists: the models one can invert and whether their weights are here.

Nothing is downloaded: bundled models are files inside clipforge or an installed companion package
(clipforge-zoo's study models; those of a zoo that is not installed are listed as such, with the
package to install); for open_clip's pretrained tags,
the weights count as available offline when the file open_clip would fetch is already in the
Hugging Face hub cache (or, for tags open_clip fetches by URL only, in its URL cache).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelEntry:
    """One model one can name in a spec: ``{"name": "open_clip", "options": {"model": model,
    "pretrained": tag}}`` (no tag for a bundled model)."""

    model: str
    tag: str | None
    source: str  # "bundled", "not installed" (a model of a companion package that is not here) or "open_clip"
    offline: bool  # its weights can be loaded without a network
    where: str | None = None  # the hub repository or URL the weights come from, or a bundled model's folder
    package: str | None = None  # a bundled model's distribution: "clipforge", or "clipforge-zoo"


def _hub_files(filename: str) -> list[str]:
    """The file names open_clip tries in a hub repository, in its order (a safetensors twin first)."""
    names = []
    if filename == "open_clip_pytorch_model.bin":
        names.append("open_clip_model.safetensors")
    elif filename.endswith((".bin", ".pth")):
        names.append(filename[:-4] + ".safetensors")
    return [*names, filename]


def weights_cached(cfg: dict, cache_dir: str | None = None) -> bool:
    """Whether the weights an open_clip pretrained config (``get_pretrained_cfg``) names are on this
    machine already, as ``open_clip.create_model`` would look for them (nothing is downloaded)."""
    if cfg.get("file"):
        return os.path.isfile(cfg["file"])
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return False
        repo, filename = os.path.split(hub)
        for name in _hub_files(filename or "open_clip_pytorch_model.bin"):
            if isinstance(try_to_load_from_cache(repo, name, cache_dir=cache_dir), str):
                return True
        return False
    url = cfg.get("url", "")
    if url:
        root = cache_dir or os.path.expanduser("~/.cache/clip")
        return os.path.isfile(os.path.join(root, os.path.basename(url)))
    return False


def list_models(open_clip_models: bool = True, cache_dir: str | None = None) -> list[ModelEntry]:
    """The bundled models (clipforge's and installed companion packages', always available offline; then
    clipforge-zoo's when it is not installed, not available), then open_clip's pretrained (model, tag) pairs."""
    from clipforge.toyworld.models import ZOO_MODELS, ZOO_PACKAGE, installed_models

    installed = installed_models()
    entries = [ModelEntry(m.name, None, "bundled", True, str(m.folder), m.package) for m in installed.values()]
    entries += [ModelEntry(name, None, "not installed", False, None, ZOO_PACKAGE) for name in ZOO_MODELS
                if name not in installed]  # fmt: skip
    if not open_clip_models:
        return entries
    import open_clip

    for model, tag in open_clip.list_pretrained():
        cfg = open_clip.get_pretrained_cfg(model, tag) or {}
        where = cfg.get("hf_hub", "").rstrip("/") or cfg.get("url") or None
        entries.append(ModelEntry(model, tag, "open_clip", weights_cached(cfg, cache_dir), where))
    return entries
