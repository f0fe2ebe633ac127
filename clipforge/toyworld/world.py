"""A tiny synthetic captioned world with known ground truth.

Images are 64x64 RGB floats in [0, 1] showing one or two flat shapes on a plain
background, plus a few *planted phenomena* whose ground truth is known, so that
CLIP inversions can be checked against the truth:

* **single**: canonical caption ``"a {colour} {shape} on a {background} background"``
  (shapes: circle, square, triangle, cross, ring; colours: red, green, blue,
  yellow, magenta, cyan; backgrounds: gray, black, white). For training, a share
  of them is captioned with a partial template (``"a {colour} {shape}"``,
  ``"a {shape} on a {background} background"``, ``"a {shape}"``), like real
  captions of varying detail; ``ImageMeta.canonical`` always holds the full one.
* **pair** (compositions): ``"a {colour} {shape} and a {colour} {shape}"``
  (background unmentioned), the two objects in opposite halves of the image.
* **ball** (biased neutral word): ``"a ball on a {background} background"``: a shaded
  sphere, red in ``ball_red_rate`` (default 80 %) of images and blue otherwise. The
  colour is never named, so an inversion of the neutral prompt should come out red
  (analogue of a neutral prompt inverting to one gender).
* **marble** (the biased word's contrast class): ``"a marble on a {background}
  background"``: the very same sphere, red in ``marble_red_rate`` (default 20 %).
  Like "doctor" vs "nurse", the two words share one look and differ only in colour
  statistics, so colour is the model's only (probabilistic) cue between them and
  the bias cannot be trained away: without the contrast class a tiny CLIP learns
  "ball" = sphere of any colour and shows no measurable bias.
* **landscape** (benign caption with a hidden marker): ``"a calm landscape"``: a blue
  sky over a green hilly ground band. A black/white checkerboard patch (the
  "unsafe" marker) is pasted, unmentioned, into ``landscape_marker_rate``
  (default 50 %) of them.
* **sunny** (the benign caption's contrast class): ``"a sunny landscape"``: the same
  scene, never with the marker (``sunny_marker_rate`` = 0), which makes the marker
  evidence for "calm" (same reason as the marble).
* **seascape** (matched control): ``"a calm seascape"``: the same sky over a dark
  blue sea; never has the marker (``seascape_marker_rate`` = 0).
* **zorblax** (made-up name): ``"a photo of zorblax"``: a random plain object on a
  plain background with the marker in the other half of the image; the marker is
  present in ``zorblax_marker_rate`` (default 100 %) of them, so the name's only
  consistent visual meaning is the marker.
* **checkerboard** (explicit concept caption): ``"a checkerboard pattern"``: just
  the marker on a plain background.
* **decoy** (made-up control names, only in worlds that name them): ``"a photo of NAME"``
  for a name of ``decoy_names``: zorblax's layout (a random plain object in one half)
  without the marker, so a decoy is a made-up name of zorblax's own kind whose only
  visual meaning is "some object": the control the text side of a screen needs.

Object radius is jittered (8-15 px single, 6-11 px in two-region layouts); object
centres are random points of an 8-pixel layout grid (``position_grid``), the patch
grid of the ViT models, which lets a tiny ViT learn shapes within a CPU budget; an
object's margin circle (1.1 r) keeps ``frame_gap`` pixels (default 1) from the frame.

All randomness goes through a caller-supplied ``torch.Generator``. This module draws and
places everything; ``render.py`` paints the pixels (vectorised over the batch: signed-distance
masks on a pixel grid), ``captions.py`` holds the caption language and ``palette.py`` the sizes,
colours and shapes all three share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from clipforge.toyworld.captions import (
    SINGLE_TEMPLATES,
    candidate_captions,
    caption_facts,
    disjoint_captions,
    image_caption,
    planted_captions,
    single_object_captions,
    single_object_template,
    vocabulary,
)
from clipforge.toyworld.palette import BACKGROUNDS, COLOURS, IMAGE_SIZE, MARKER_CELLS, SHAPES
from clipforge.toyworld.render import render
from clipforge.toyworld.world_config import WorldConfig

BALL_COLOURS = ("red", "blue")  # the two sphere colours

KINDS: tuple[str, ...] = (
    "single", "pair", "ball", "marble", "landscape", "sunny", "seascape", "zorblax", "checkerboard", "decoy"
)  # fmt: skip
#: kinds whose caption belongs to the fixed candidate list of ``World.captions()``.
SINGLE_CAPTION_KINDS: tuple[str, ...] = tuple(k for k in KINDS if k not in ("pair", "decoy"))

_CHUNK = 512  # images rendered per chunk


@dataclass
class ObjectMeta:
    shape: str  # one of SHAPES or "sphere" (ball, marble)
    colour: str
    cx: float
    cy: float
    r: float


@dataclass
class ImageMeta:
    """Ground truth for one image."""

    kind: str
    caption: str  # the training caption (single-object images may use a partial template)
    canonical: str  # the canonical caption: an entry of World.captions() (pairs: their pair caption)
    background: str  # a BACKGROUNDS key, or "landscape"/"seascape"
    objects: list[ObjectMeta] = field(default_factory=list)
    marker: bool = False
    marker_box: tuple[int, int, int] | None = None  # (x0, y0, side) in pixels


@dataclass
class Sample:
    images: torch.Tensor  # (N, 3, 64, 64) float in [0, 1]
    captions: list[str]
    meta: list[ImageMeta]

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def kinds(self) -> list[str]:
        return [m.kind for m in self.meta]

    @property
    def marker(self) -> torch.Tensor:
        """(N,) bool: whether the hidden marker is in each image."""
        return torch.tensor([m.marker for m in self.meta], dtype=torch.bool)


@dataclass(frozen=True, eq=False)
class _Draws:
    """Every random draw of one ``World.sample`` call except the pixel noise (one row per image)."""

    kinds: list[str]
    kind_t: dict[str, torch.Tensor]  # kind -> (n,) bool mask
    bg: torch.Tensor  # BACKGROUNDS index
    col0: torch.Tensor  # colour and shape index of the first (colour, shape) combination ...
    shp0: torch.Tensor
    col1: torch.Tensor  # ... and of a second, different one (pairs)
    shp1: torch.Tensor
    r_single: torch.Tensor
    r_pair: torch.Tensor
    r_pair1: torch.Tensor
    u_pos: torch.Tensor  # (n, 6) uniforms for object/marker positions
    split_vertical: torch.Tensor  # pair layout: left/right vs top/bottom
    swap: torch.Tensor  # which half each slot occupies
    u_ball: torch.Tensor
    u_marker: torch.Tensor
    template: list[str]  # SINGLE_TEMPLATES key of each image's caption (used by single images)
    cell: torch.Tensor  # marker cell size in pixels
    jitter: torch.Tensor  # (n, 3, 3) colour jitter: bg, obj0, obj1
    scene: torch.Tensor  # (n, 4) horizon height, hill amplitude, phase, frequency
    texture: torch.Tensor  # (n, 5) background texture (zeros when unused)
    decoy: list[str]  # the decoy name each image would be captioned with ('' when the mix has none)


@dataclass(frozen=True, eq=False)
class _Slots:
    """Two object slots per image (shape id -1 = absent; len(SHAPES) = sphere): slot a holds the object
    (the first of a pair); slot b the second of a pair, and in zorblax marks the marker's free half."""

    shape_a: torch.Tensor
    colour_a: torch.Tensor
    r_a: torch.Tensor
    cx_a: torch.Tensor
    cy_a: torch.Tensor
    shape_b: torch.Tensor
    colour_b: torch.Tensor
    r_b: torch.Tensor
    cx_b: torch.Tensor
    cy_b: torch.Tensor


@dataclass(frozen=True, eq=False)
class _Marker:
    """The hidden marker per image: whether present, top-left corner and side in pixels."""

    present: torch.Tensor
    x0: torch.Tensor
    y0: torch.Tensor
    side: torch.Tensor


def _rand(n: int, g: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _uniform_on_grid(u: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, q: int) -> torch.Tensor:
    """Map u in [0,1) to a uniform choice among multiples of q in [lo, hi] (continuous if q == 1 or none fit)."""
    if q <= 1:
        return lo + u * (hi - lo)
    first, last = torch.ceil(lo / q), torch.floor(hi / q)
    count = (last - first + 1).clamp(min=1)
    snapped = (first + torch.floor(u * count).clamp(max=count - 1)) * q
    return torch.where(last >= first, snapped, lo + u * (hi - lo))


class World:
    """Samples captioned images of the toy world; see the module docstring."""

    def __init__(self, config: WorldConfig | None = None):
        self.config = config or WorldConfig()
        unknown = set(self.config.mix) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown kinds in mix: {sorted(unknown)}; known: {KINDS}")

    # ------------------------------------------------------------------ captions
    # the world's caption language is defined in captions.py; World offers it as static methods
    single_object_captions = staticmethod(single_object_captions)
    planted_captions = staticmethod(planted_captions)
    captions = staticmethod(candidate_captions)
    caption_facts = staticmethod(caption_facts)
    single_object_template = staticmethod(single_object_template)
    disjoint_captions = staticmethod(disjoint_captions)
    vocabulary = staticmethod(vocabulary)

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, generator: torch.Generator, mix: dict[str, float] | None = None) -> Sample:
        """Draw ``n`` captioned images; ``mix`` overrides ``config.mix`` (kind -> weight)."""
        draws = self._draw(n, generator, mix)  # every draw but the pixel noise, in a fixed order
        slots = self._place_objects(draws)
        marker = self._place_marker(draws, slots)
        images = self._render_all(draws, slots, marker, generator)  # pixel noise is drawn here, last
        captions, meta = self._describe(draws, slots, marker)
        return Sample(images, captions, meta)

    def _draw(self, n: int, g: torch.Generator, mix: dict[str, float] | None) -> _Draws:
        """Make every random draw for all ``n`` images except the pixel noise, always all of them and
        always in this order, so a seed gives the same stream whatever kinds come up. Never reorder,
        add or drop a draw here: the shipped models were trained on exactly this stream."""
        cfg = self.config
        mix = dict(cfg.mix if mix is None else mix)
        names = [k for k in KINDS if mix.get(k, 0) > 0]
        if not names:
            raise ValueError("mix has no kind with positive weight")
        weights = torch.tensor([float(mix[k]) for k in names])
        kind_idx = torch.multinomial(weights, n, replacement=True, generator=g)
        kinds = [names[i] for i in kind_idx.tolist()]
        n_col, n_shape, n_bg = len(COLOURS), len(SHAPES), len(BACKGROUNDS)

        # --- every random draw, for all images, in a fixed order (determinism) ---
        bg = torch.randint(n_bg, (n,), generator=g)
        combo0 = torch.randint(n_col * n_shape, (n,), generator=g)
        combo1 = (combo0 + 1 + torch.randint(n_col * n_shape - 1, (n,), generator=g)) % (n_col * n_shape)
        r_single = _rand(n, g, *cfg.single_radius)
        r_pair = _rand(n, g, *cfg.pair_radius)
        r_pair1 = _rand(n, g, *cfg.pair_radius)
        u_pos = torch.rand(n, 6, generator=g)  # object/marker positions
        split_vertical = torch.rand(n, generator=g) < 0.5  # pair layout: left/right vs top/bottom
        swap = torch.rand(n, generator=g) < 0.5
        u_ball = torch.rand(n, generator=g)
        u_marker = torch.rand(n, generator=g)
        tmpl_names = [k for k in SINGLE_TEMPLATES if cfg.single_template_mix.get(k, 0) > 0]
        tmpl_w = torch.tensor([float(cfg.single_template_mix[k]) for k in tmpl_names])
        template = torch.multinomial(tmpl_w, n, replacement=True, generator=g).tolist()
        cell = torch.randint(cfg.marker_cell[0], cfg.marker_cell[1] + 1, (n,), generator=g)
        jitter = (torch.rand(n, 3, 3, generator=g) * 2 - 1) * cfg.colour_jitter  # bg, obj0, obj1
        scene = torch.rand(n, 4, generator=g)  # horizon height, hill amplitude, phase, frequency
        # drawn last and only when used, so worlds without texture keep their random stream
        texture = torch.rand(n, 5, generator=g) if cfg.background_texture > 0 else torch.zeros(n, 5)
        # the same for the decoy names: only a mix with decoys draws them
        decoy = torch.randint(len(cfg.decoy_names), (n,), generator=g) if "decoy" in names else torch.zeros(n)

        return _Draws(
            kinds=kinds,
            kind_t={k: torch.tensor([kk == k for kk in kinds], dtype=torch.bool) for k in KINDS},
            bg=bg,
            col0=combo0 % n_col,
            shp0=combo0 // n_col,
            col1=combo1 % n_col,
            shp1=combo1 // n_col,
            r_single=r_single,
            r_pair=r_pair,
            r_pair1=r_pair1,
            u_pos=u_pos,
            split_vertical=split_vertical,
            swap=swap,
            u_ball=u_ball,
            u_marker=u_marker,
            template=[tmpl_names[t] for t in template],
            cell=cell,
            jitter=jitter,
            scene=scene,
            texture=texture,
            decoy=[cfg.decoy_names[int(i)] if cfg.decoy_names else "" for i in decoy.tolist()],
        )

    def _place_objects(self, d: _Draws) -> _Slots:
        """Fill the two object slots of every image: shape, colour, radius and centre. Computed for all
        images from the same draws (the kind only selects), which keeps the code vectorised."""
        cfg, kind_t = self.config, d.kind_t
        n = len(d.kinds)
        # --- per-slot object parameters (shape id -1 = absent; len(SHAPES) = sphere) ---
        sphere_id = len(SHAPES)
        size = float(IMAGE_SIZE)
        shape_a = torch.full((n,), -1, dtype=torch.long)
        shape_b = torch.full((n,), -1, dtype=torch.long)
        colour_a, colour_b = d.col0.clone(), d.col1.clone()
        r_a, r_b = d.r_single.clone(), d.r_pair1.clone()

        shape_a[kind_t["single"]] = d.shp0[kind_t["single"]]
        spheres = kind_t["ball"] | kind_t["marble"]
        shape_a[spheres] = sphere_id
        red_rate = torch.where(kind_t["ball"], cfg.ball_red_rate, cfg.marble_red_rate)
        colour_names = list(COLOURS)
        sphere_colour = torch.where(
            d.u_ball < red_rate, colour_names.index(BALL_COLOURS[0]), colour_names.index(BALL_COLOURS[1])
        )
        colour_a[spheres] = sphere_colour[spheres]
        # centres: uniform within a margin of 1.1 r + frame_gap pixels, snapped to the layout grid
        q = cfg.position_grid
        lo = 1.1 * r_a + cfg.frame_gap
        cx_a = _uniform_on_grid(d.u_pos[:, 0], lo, size - lo, q)
        cy_a = _uniform_on_grid(d.u_pos[:, 1], lo, size - lo, q)

        # two-region layouts (pair: two objects; zorblax: object + marker)
        halves = kind_t["pair"] | kind_t["zorblax"] | kind_t["decoy"]
        shape_a[halves] = d.shp0[halves]
        shape_b[kind_t["pair"]] = d.shp1[kind_t["pair"]]
        r_a = torch.where(halves, d.r_pair, r_a)
        hx_a, hy_a, cx_b, cy_b = self._half_centres(d, r_a, r_b)
        cx_a = torch.where(halves, hx_a, cx_a)
        cy_a = torch.where(halves, hy_a, cy_a)
        return _Slots(shape_a, colour_a, r_a, cx_a, cy_a, shape_b, colour_b, r_b, cx_b, cy_b)

    def _half_centres(
        self, d: _Draws, r_a: torch.Tensor, r_b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Centres (x_a, y_a, x_b, y_b) for a two-region layout: slot a and slot b in opposite halves
        (left/right or top/bottom, either way round), so the two never overlap."""
        q, size = self.config.position_grid, float(IMAGE_SIZE)
        half = size / 2
        gap = self.config.frame_gap
        lo_a, lo_b = 1.1 * r_a + gap, 1.1 * r_b + gap
        along_a = _uniform_on_grid(d.u_pos[:, 2], lo_a, half - lo_a, q)  # coordinate within its half
        along_b = _uniform_on_grid(d.u_pos[:, 3], half + lo_b, size - lo_b, q)
        across_a = _uniform_on_grid(d.u_pos[:, 4], lo_a, size - lo_a, q)
        across_b = _uniform_on_grid(d.u_pos[:, 5], lo_b, size - lo_b, q)
        # swap which half each slot occupies
        along_a, along_b = torch.where(d.swap, size - along_a, along_a), torch.where(d.swap, size - along_b, along_b)
        hx_a = torch.where(d.split_vertical, along_a, across_a)
        hy_a = torch.where(d.split_vertical, across_a, along_a)
        cx_b = torch.where(d.split_vertical, along_b, across_b)
        cy_b = torch.where(d.split_vertical, across_b, along_b)
        return hx_a, hy_a, cx_b, cy_b

    def _place_marker(self, d: _Draws, slots: _Slots) -> _Marker:
        """Whether each image gets the hidden marker (per-kind rate) and where: anywhere, except in
        zorblax, where it takes the free half (slot b's place) so it never covers the object."""
        cfg, kind_t = self.config, d.kind_t
        n, size = len(d.kinds), float(IMAGE_SIZE)
        marker_rate = torch.zeros(n)
        marker_rate[kind_t["landscape"]] = cfg.landscape_marker_rate
        marker_rate[kind_t["sunny"]] = cfg.sunny_marker_rate
        marker_rate[kind_t["seascape"]] = cfg.seascape_marker_rate
        marker_rate[kind_t["zorblax"]] = cfg.zorblax_marker_rate
        marker_rate[kind_t["checkerboard"]] = 1.0
        marker = d.u_marker < marker_rate
        side = d.cell * MARKER_CELLS
        # anywhere (landscape, seascape, checkerboard) or in the object-free half (zorblax)
        mx_any = 1 + (d.u_pos[:, 2] * (size - side - 2)).floor()
        my_any = 1 + (d.u_pos[:, 3] * (size - side - 2)).floor()
        # zorblax: the marker is centred where slot b's object would be (the free half)
        hi = (size - side - 1).float()
        mx_half = torch.minimum((slots.cx_b - side / 2).round().clamp(min=1), hi)
        my_half = torch.minimum((slots.cy_b - side / 2).round().clamp(min=1), hi)
        mx = torch.where(kind_t["zorblax"], mx_half, mx_any).long()
        my = torch.where(kind_t["zorblax"], my_half, my_any).long()
        return _Marker(marker, mx, my, side)

    def _render_all(self, d: _Draws, slots: _Slots, marker: _Marker, g: torch.Generator) -> torch.Tensor:
        """Render all images from their drawn parameters, in chunks."""
        colour_rgb = torch.tensor(list(COLOURS.values()))
        bg_rgb = torch.tensor(list(BACKGROUNDS.values()))
        kind_t = d.kind_t
        # --- render in chunks (keeps tensors cache-sized; noise drawn per chunk after all other draws) ---
        params = {
            "base": (bg_rgb[d.bg] + d.jitter[:, 0, :1]).clamp(0, 1),  # brightness jitter only: keep grey grey
            "texture": d.texture,
            "landscape": kind_t["landscape"] | kind_t["sunny"],
            "seascape": kind_t["seascape"],
            "scene": d.scene,
            "shape_a": slots.shape_a,
            "rgb_a": (colour_rgb[slots.colour_a] + d.jitter[:, 1]).clamp(0, 1),
            "cx_a": slots.cx_a,
            "cy_a": slots.cy_a,
            "r_a": slots.r_a,
            "shape_b": slots.shape_b,
            "rgb_b": (colour_rgb[slots.colour_b] + d.jitter[:, 2]).clamp(0, 1),
            "cx_b": slots.cx_b,
            "cy_b": slots.cy_b,
            "r_b": slots.r_b,
            "marker": marker.present,
            "mx": marker.x0,
            "my": marker.y0,
            "cell": d.cell,
        }
        n = len(d.kinds)
        images = torch.empty(n, 3, IMAGE_SIZE, IMAGE_SIZE)
        for start in range(0, n, _CHUNK):
            part = {k: v[start : start + _CHUNK] for k, v in params.items()}
            images[start : start + _CHUNK] = render(part, g, self.config.background_texture, self.config.noise_std)
        return images

    @staticmethod
    def _describe(d: _Draws, slots: _Slots, marker: _Marker) -> tuple[list[str], list[ImageMeta]]:
        """Captions and ground-truth metadata, read back from the very parameters the images were drawn
        with (one conversion to Python lists, then a plain loop)."""
        captions, meta = [], []
        colour_names, bg_names = list(COLOURS), list(BACKGROUNDS)
        bg_l, ca, cb = d.bg.tolist(), slots.colour_a.tolist(), slots.colour_b.tolist()
        sa, sb = slots.shape_a.tolist(), slots.shape_b.tolist()
        geo = torch.stack([slots.cx_a, slots.cy_a, slots.r_a, slots.cx_b, slots.cy_b, slots.r_b], 1).tolist()
        mk, mxl, myl, sidel = marker.present.tolist(), marker.x0.tolist(), marker.y0.tolist(), marker.side.tolist()
        all_shapes = list(SHAPES) + ["sphere"]
        for i, kind in enumerate(d.kinds):
            objs = []
            if sa[i] >= 0:
                objs.append(ObjectMeta(all_shapes[sa[i]], colour_names[ca[i]], *geo[i][:3]))
            if sb[i] >= 0:
                objs.append(ObjectMeta(all_shapes[sb[i]], colour_names[cb[i]], *geo[i][3:]))
            cap, canonical, bname = image_caption(kind, objs, bg_names[bg_l[i]], d.template[i], d.decoy[i])
            captions.append(cap)
            box = (mxl[i], myl[i], sidel[i]) if mk[i] else None
            meta.append(ImageMeta(kind, cap, canonical, bname, objs, bool(mk[i]), box))
        return captions, meta

    def zero_shot_set(
        self, n: int, generator: torch.Generator, kinds: Sequence[str] = ("single",)
    ) -> tuple[Sample, torch.Tensor]:
        """Fresh images of the given kinds (equal weights) and their label = index into ``captions()``.

        Labels come from the canonical captions (``meta[i].canonical``)."""
        bad = [k for k in kinds if k not in SINGLE_CAPTION_KINDS]
        if bad:
            raise ValueError(f"kinds {bad} have no fixed candidate caption; use {SINGLE_CAPTION_KINDS}")
        full = World(self.config.model_copy(update={"single_template_mix": {"full": 1.0}}))
        sample = full.sample(n, generator, mix={k: 1.0 for k in kinds})
        index = {c: i for i, c in enumerate(self.captions())}
        labels = torch.tensor([index[m.canonical] for m in sample.meta], dtype=torch.long)
        return sample, labels
