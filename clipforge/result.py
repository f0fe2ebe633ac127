"""What a run returns, and how it shows itself: the images as a tensor, as PIL images, as one grid,
and inline in Jupyter (each image with its prompt or objective, seed, final similarity and goal)."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from clipforge.spec import RunSpec

#: the smallest side an image is shown at inline (toy models' images are 64 px)
SHOWN_AT_LEAST = 128

#: an image whose every colour channel has a standard deviation below this (on [0, 1], about 5 of
#: the PNG's 255 levels) is flat: a collapse (a plain black, white or single-colour image), reported
#: per image (``InversionResult.flat``, ``run.json``'s ``flat``) rather than silently saved
FLAT_STD = 0.02


@dataclass
class Row:
    """One independent image of a run: a prompt (index into the spec) and a seed."""

    index: int
    prompt_index: int
    seed: int
    label: str  # human-readable prompt text
    slug: str  # file-name-safe identifier, unique within the run

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "prompt_index": self.prompt_index,
            "seed": self.seed,
            "label": self.label,
            "slug": self.slug,
        }


@dataclass
class InversionResult:
    """What a run produced. ``images`` are (B, 3, H, W) in [0, 1] on the CPU, one per row.

    ``interrupted`` is true when the run stopped early (Ctrl-C, a notebook's interrupt, SIGTERM):
    the images are those of the last step done (``steps_done``).

    ``attribution``: where the spec asks for it (``output.attribution``), (B, H, W) on the CPU, per
    image the absolute gradient of its objective (the data term, not the regularisers) with respect
    to the un-augmented image, summed over colour channels and over every step (maps of earlier,
    smaller sizes resized as the image grew, their totals kept); zero for a withheld image. None
    otherwise. ``flat``: per image, whether it came out flat (:data:`FLAT_STD`)."""

    images: torch.Tensor
    rows: list[Row]
    metrics: list[dict[str, Any]]
    spec: RunSpec
    spec_hash: str
    device: str
    steps_done: int
    interrupted: bool
    seconds: float
    out_dir: Path | None = None
    withheld: list[bool] = field(default_factory=list)  # rows a screening callback withheld (zeroed)
    extra: dict[str, Any] = field(default_factory=dict)
    attribution: torch.Tensor | None = None  # (B, H, W) where the spec asks for it
    flat: list[bool] = field(default_factory=list)  # rows whose image came out flat

    def image(self, prompt: int | str = 0, seed: int | None = None) -> torch.Tensor:
        """The (3, H, W) image of a prompt (index or text) and seed (the first seed by default)."""
        for row in self.rows:
            hit = row.prompt_index == prompt if isinstance(prompt, int) else row.label == prompt
            if hit and (seed is None or row.seed == seed):
                return self.images[row.index]
        raise KeyError(f"no image for prompt {prompt!r}, seed {seed!r}")

    # ------------------------------------------------------------------ looking at it

    def final(self) -> list[dict[str, Any]]:
        """Per image: its label, seed, final similarity (None where no objective reports one) and goal
        (the weighted sum of its objectives, averaged over the copies of the last step)."""
        last = self.metrics[-1] if self.metrics else None
        out = []
        for row in self.rows:
            similarity = last["similarity"][row.index] if last else None
            goal = -last["data"][row.index] if last else None
            withheld = bool(self.withheld and self.withheld[row.index])
            out.append(
                {"label": row.label, "seed": row.seed, "similarity": similarity, "goal": goal, "withheld": withheld}
            )
        return out

    def to_pil(self) -> list[Image.Image]:
        """Every image as a PIL image, in row order (as saved: each rescaled as the spec's ``output`` says)."""
        from clipforge.images import to_display, to_pil

        return [to_pil(image) for image in to_display(self.images, self.spec.output.rescale)]

    def grid(self, columns: int | None = None) -> Image.Image:
        """Every image in one PIL image, a row per prompt (its seeds side by side) unless ``columns`` says."""
        from clipforge.images import image_grid, to_display, to_pil

        columns = columns or len(self.spec.seeds)
        return to_pil(image_grid(to_display(self.images, self.spec.output.rescale), max(1, columns)))

    def _repr_html_(self) -> str:
        """Jupyter's view: a card per image with what it is and how it ended."""
        size = max(SHOWN_AT_LEAST, self.images.shape[-1])
        cards = []
        for image, facts in zip(self.to_pil(), self.final()):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            source = base64.b64encode(buffer.getvalue()).decode("ascii")
            numbers = [f"seed {facts['seed']}"]
            if facts["similarity"] is not None:
                numbers.append(f"similarity {facts['similarity']:.3f}")
            if facts["goal"] is not None:
                numbers.append(f"goal {facts['goal']:.3f}")
            picture = (
                f"<div style='width:{size}px;height:{size}px;background:#ddd'>withheld</div>"
                if facts["withheld"]
                else f"<img src='data:image/png;base64,{source}' width='{size}' style='image-rendering:pixelated'>"
            )
            cards.append(
                f"<figure style='display:inline-block;margin:4px;text-align:center;font:12px sans-serif'>{picture}"
                f"<figcaption style='max-width:{size}px'>{html.escape(facts['label'])}<br>"
                f"{html.escape(', '.join(numbers))}</figcaption></figure>"
            )
        state = f"interrupted at step {self.steps_done} of {self.spec.steps}" if self.interrupted else "finished"
        where = f", saved in {html.escape(str(self.out_dir))}" if self.out_dir is not None else ""
        head = (
            f"<div style='font:12px sans-serif'>{len(self.rows)} image(s), {state} in {self.seconds:.1f} s{where}</div>"
        )
        return head + "<div>" + "".join(cards) + "</div>"

    def __repr__(self) -> str:
        state = "interrupted" if self.interrupted else "finished"
        return (
            f"<InversionResult: {len(self.rows)} image(s) {tuple(self.images.shape[-2:])}, {state} after "
            f"{self.steps_done} steps in {self.seconds:.1f} s>"
        )
