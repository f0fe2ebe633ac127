"""What the toy world's images are made of: their size, the object colours, backgrounds and shapes,
and the marker's size in cells.

A module of its own because sampling (``world.py``), painting (``render.py``) and captions
(``captions.py``) all need these names, and ``world.py`` imports the other two; every name stays
importable from ``clipforge.toyworld.world``.
"""

from __future__ import annotations

IMAGE_SIZE = 64

#: object colours, chosen far apart in RGB and distinct from every background.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.75, 0.10),
    "blue": (0.10, 0.20, 0.95),
    "yellow": (0.95, 0.85, 0.10),
    "magenta": (0.90, 0.10, 0.90),
    "cyan": (0.10, 0.85, 0.90),
}
#: plain backgrounds; each differs from every object colour by >= 0.4 in some channel.
BACKGROUNDS: dict[str, tuple[float, float, float]] = {
    "gray": (0.50, 0.50, 0.50),
    "black": (0.06, 0.06, 0.06),
    "white": (0.94, 0.94, 0.94),
}
#: flat shapes used in single and pair captions.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring")

MARKER_CELLS = 4  # the marker is a MARKER_CELLS x MARKER_CELLS checkerboard
