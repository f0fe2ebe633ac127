"""Word-level tokenizer for the toy world's small CLIP text towers.

Layout of ids: ``0 = <pad>``, ``1 = <unk>``, ``2 = <sot>``, then the words in sorted
order, and ``<eot>`` LAST. open_clip's text tower pools the token at
``text.argmax(dim=-1)``, so EOT must carry the largest id and padding must be 0.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import torch

PAD, UNK, SOT, EOT = "<pad>", "<unk>", "<sot>", "<eot>"
_SPECIALS = (PAD, UNK, SOT, EOT)
_WORD_RE = re.compile(r"[a-z0-9]+")

#: generic words used by analysis prompts, covered even though no caption uses them.
EXTRA_WORDS: tuple[str, ...] = (
    "an", "the", "this", "is", "with", "in", "image", "picture", "photograph", "object", "thing",
    "shape", "colour", "color", "scene", "something", "nothing", "small", "large", "big",
    "dark", "bright", "two", "one", "person", "unsafe", "safe",
)  # fmt: skip


def split_words(text: str) -> list[str]:
    """Lower-case and split on anything that is not a letter or digit."""
    return _WORD_RE.findall(text.lower())


class WordTokenizer:
    """Maps text to ``[SOT] words... [EOT] 0 0 ...`` id rows of fixed ``context_length``."""

    def __init__(self, vocab: list[str], context_length: int = 12):
        if context_length < 2:
            raise ValueError("context_length must be >= 2 (room for SOT and EOT)")
        words = sorted({w.lower() for w in vocab} - set(_SPECIALS))
        bad = [w for w in words if split_words(w) != [w]]
        if bad:
            raise ValueError(f"vocabulary entries must be single lower-case words: {bad}")
        self.itos: list[str] = [PAD, UNK, SOT] + words + [EOT]
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        self.context_length = context_length
        self.pad_id, self.unk_id, self.sot_id, self.eot_id = 0, 1, 2, len(self.itos) - 1

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def words(self) -> list[str]:
        return self.itos[3:-1]

    def encode(self, text: str) -> list[int]:
        """Ids of the words only (no SOT/EOT, no padding); unknown words -> ``<unk>``."""
        return [self.stoi.get(w, self.unk_id) for w in split_words(text)]

    def unknown_words(self, text: str) -> list[str]:
        return [w for w in split_words(text) if w not in self.stoi]

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> torch.Tensor:
        """Tokenize to a LongTensor (N, context_length); too-long texts are truncated, EOT kept."""
        if isinstance(texts, str):
            texts = [texts]
        length = context_length or self.context_length
        out = torch.zeros(len(texts), length, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [self.sot_id] + self.encode(text)[: length - 2] + [self.eot_id]
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """Inverse of ``__call__`` for one row (specials and padding dropped)."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return " ".join(self.itos[i] for i in ids if i not in (self.pad_id, self.sot_id, self.eot_id))

    def save(self, path: str | Path) -> None:
        data = {"type": "clipforge.toyworld.WordTokenizer", "context_length": self.context_length, "itos": self.itos}
        Path(path).write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> WordTokenizer:
        data = json.loads(Path(path).read_text())
        tok = cls(data["itos"], data["context_length"])
        if tok.itos != data["itos"]:
            raise ValueError(f"{path}: token ids do not match the canonical layout")
        return tok

    @classmethod
    def for_world(cls, context_length: int = 12, extra: Sequence[str] = ()) -> WordTokenizer:
        """Tokenizer covering the world's caption vocabulary plus ``EXTRA_WORDS`` and a world's own
        ``extra`` words (its decoy names); without extras, the vocabulary every shipped model shares."""
        from clipforge.toyworld.world import World

        return cls(World.vocabulary() + list(EXTRA_WORDS) + list(extra), context_length)

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size}, context_length={self.context_length})"
