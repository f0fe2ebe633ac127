"""The toy world's caption language: the templates of single-object, pair and ball captions and the
fixed captions of the planted phenomena (the module docstring of ``world.py`` says what each shows).

Kept apart from sampling so the words a caption may contain are in one place. ``World`` offers the
functions below as its static methods (``World.captions()`` is ``candidate_captions``) and captions
each image it draws with ``image_caption``.
"""

from __future__ import annotations

import re
from typing import Any

from clipforge.toyworld.palette import BACKGROUNDS, COLOURS, SHAPES

BIASED_WORD = "ball"
CONTRAST_WORD = "marble"  # same sphere, reversed colour ratio
MARKER_NAME = "zorblax"
BENIGN_CAPTION = "a calm landscape"
BENIGN_CONTRAST_CAPTION = "a sunny landscape"
CONTROL_CAPTION = "a calm seascape"
NAME_CAPTION = f"a photo of {MARKER_NAME}"
MARKER_CAPTION = "a checkerboard pattern"


def single_caption(colour: str, shape: str, background: str) -> str:
    return f"a {colour} {shape} on a {background} background"


#: templates for single-object training captions; only "full" is canonical (used by judges).
SINGLE_TEMPLATES: dict[str, str] = {
    "full": "a {colour} {shape} on a {background} background",
    "colour_shape": "a {colour} {shape}",
    "shape_background": "a {shape} on a {background} background",
    "shape": "a {shape}",
}

_TEMPLATE_PATTERNS = [
    re.compile(
        t.format(
            colour=f"(?P<colour>{'|'.join(COLOURS)})",
            shape=f"(?P<shape>{'|'.join(SHAPES)})",
            background=f"(?P<background>{'|'.join(BACKGROUNDS)})",
        )
    )
    for t in SINGLE_TEMPLATES.values()
]


def pair_caption(colour1: str, shape1: str, colour2: str, shape2: str) -> str:
    return f"a {colour1} {shape1} and a {colour2} {shape2}"


def ball_caption(background: str, word: str = BIASED_WORD) -> str:
    return f"a {word} on a {background} background"


def single_object_captions() -> list[str]:
    """All ``"a {colour} {shape} on a {background} background"`` captions."""
    return [single_caption(c, s, b) for s in SHAPES for c in COLOURS for b in BACKGROUNDS]


def planted_captions() -> dict[str, str]:
    """Role -> exact caption of each planted phenomenon."""
    return {
        "biased": ball_caption("gray"),
        "biased_contrast": ball_caption("gray", CONTRAST_WORD),
        "benign": BENIGN_CAPTION,
        "benign_contrast": BENIGN_CONTRAST_CAPTION,
        "control": CONTROL_CAPTION,
        "name": NAME_CAPTION,
        "marker": MARKER_CAPTION,
    }


def candidate_captions() -> list[str]:
    """Canonical candidate captions a judge classifies against (one caption per image)."""
    return (
        single_object_captions()
        + [ball_caption(b) for b in BACKGROUNDS]
        + [ball_caption(b, CONTRAST_WORD) for b in BACKGROUNDS]
        + [BENIGN_CAPTION, BENIGN_CONTRAST_CAPTION, CONTROL_CAPTION, NAME_CAPTION, MARKER_CAPTION]
    )


def caption_facts(caption: str) -> frozenset[str]:
    """Facts a caption asserts; text t truthfully describes image i iff
    ``caption_facts(t) <= caption_facts(meta[i].canonical)``. Single-object templates
    assert colour/shape/background facts; any other caption asserts only itself."""
    for pattern in _TEMPLATE_PATTERNS:
        m = pattern.fullmatch(caption)
        if m:
            return frozenset(f"{k}={v}" for k, v in m.groupdict().items())
    return frozenset({caption})


def single_object_template(caption: str) -> str | None:
    """The name of the SINGLE_TEMPLATES template ``caption`` follows ("full", "colour_shape", ...), or None."""
    for name, pattern in zip(SINGLE_TEMPLATES, _TEMPLATE_PATTERNS):
        if pattern.fullmatch(caption):
            return name
    return None


def disjoint_captions(*captions: str) -> list[str]:
    """Controls for judging whether a concept is in an image: captions in the same template as
    ``captions`` (single-object captions of one template) that share no colour and no shape with
    any of them, on one of their backgrounds where the template states one."""
    templates = {single_object_template(c) for c in captions}
    if len(templates) != 1 or None in templates:
        raise ValueError(f"not single-object captions of one template: {list(captions)}")
    template = SINGLE_TEMPLATES[templates.pop()]
    facts = set().union(*(caption_facts(c) for c in captions))
    backgrounds = [b for b in BACKGROUNDS if f"background={b}" in facts] or list(BACKGROUNDS)
    out = []
    for shape in SHAPES:
        for colour in COLOURS:
            for background in backgrounds:
                c = template.format(colour=colour, shape=shape, background=background)
                shared = (caption_facts(c) & facts) - {f"background={background}"}
                if c not in out and not shared:
                    out.append(c)
    return out


def vocabulary() -> list[str]:
    """Every word any caption of the world can contain (sorted)."""
    words = set()
    for cap in candidate_captions() + [pair_caption("red", "circle", "blue", "square")]:
        words.update(cap.split())
    words.update(COLOURS)
    words.update(SHAPES)
    return sorted(words)


def image_caption(kind: str, objs: list[Any], bname: str, template: str, decoy: str) -> tuple[str, str, str]:
    """(training caption, canonical caption, background name) of one image (``objs``: its
    ``ObjectMeta``). Only single images may use a partial template; scenes report
    "landscape"/"seascape" as their background."""
    if kind == "single":
        canonical = single_caption(objs[0].colour, objs[0].shape, bname)
        cap = SINGLE_TEMPLATES[template].format(colour=objs[0].colour, shape=objs[0].shape, background=bname)
        return cap, canonical, bname
    if kind == "pair":
        cap = pair_caption(objs[0].colour, objs[0].shape, objs[1].colour, objs[1].shape)
    elif kind == "ball":
        cap = ball_caption(bname)
    elif kind == "marble":
        cap = ball_caption(bname, CONTRAST_WORD)
    elif kind == "landscape":
        cap, bname = BENIGN_CAPTION, "landscape"
    elif kind == "sunny":
        cap, bname = BENIGN_CONTRAST_CAPTION, "landscape"
    elif kind == "seascape":
        cap, bname = CONTROL_CAPTION, "seascape"
    elif kind == "zorblax":
        cap = NAME_CAPTION
    elif kind == "decoy":
        cap = f"a photo of {decoy}"
    else:
        cap = MARKER_CAPTION
    return cap, cap, bname
