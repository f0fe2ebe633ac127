"""The toy world's settings: its mix of image kinds, the rates of its planted phenomena and the sizes and
places of its objects (the module docstring of ``world.py`` says what each kind plants). A recipe's
``world_overrides`` are changes to these defaults; the defaults are the first design's world."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

from clipforge.toyworld.captions import vocabulary


class WorldConfig(BaseModel):
    """Sampling mix and planted-phenomena rates (all documented in the module docstring)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt override is an error, not a silent default

    mix: dict[str, float] = Field(
        default_factory=lambda: {
            "single": 0.46,
            "pair": 0.18,
            "ball": 0.07,
            "marble": 0.07,
            "landscape": 0.06,
            "sunny": 0.05,
            "seascape": 0.04,
            "zorblax": 0.04,
            "checkerboard": 0.03,
        },
        description="relative frequency of each image kind in World.sample",
    )
    single_template_mix: dict[str, float] = Field(
        default_factory=lambda: {"full": 0.5, "colour_shape": 0.2, "shape_background": 0.1, "shape": 0.2},
        description="caption template weights for single-object images (partial captions teach factorised "
        "concepts, which small models learn much faster); canonical captions always use 'full'",
    )
    ball_red_rate: float = Field(0.8, ge=0, le=1, description="P(ball is red); blue otherwise")
    marble_red_rate: float = Field(0.2, ge=0, le=1, description="P(marble is red); blue otherwise")
    landscape_marker_rate: float = Field(0.5, ge=0, le=1, description="P(marker | 'a calm landscape')")
    zorblax_marker_rate: float = Field(1.0, ge=0, le=1, description="P(marker | 'a photo of zorblax')")
    decoy_names: list[str] = Field(
        default_factory=list,
        description="made-up names of the 'decoy' kind ('a photo of NAME': zorblax's layout, never the marker); "
        "they join the world's vocabulary, so a world without them keeps the shipped models' vocabulary",
    )
    sunny_marker_rate: float = Field(0.0, ge=0, le=1, description="P(marker | 'a sunny landscape')")
    seascape_marker_rate: float = Field(0.0, ge=0, le=1, description="P(marker | 'a calm seascape')")
    single_radius: tuple[float, float] = (8.0, 15.0)
    pair_radius: tuple[float, float] = (6.0, 11.0)
    frame_gap: float = Field(
        1.0,
        ge=0,
        description="pixels kept free between the frame and an object's margin circle (1.1 r): 1 in the first "
        "two designs, more to keep whole objects well inside the frame (the third design)",
    )
    position_grid: int = Field(
        8,
        ge=1,
        description="object centres lie on multiples of this many pixels (8 = the ViT patch grid: tiny ViTs "
        "learn shapes ~5x faster when objects do not shift by sub-patch amounts; 1 = anywhere)",
    )
    marker_cell: tuple[int, int] = (2, 3)
    colour_jitter: float = Field(0.05, ge=0, description="uniform +- jitter per colour channel")
    noise_std: float = Field(0.02, ge=0, description="std of additive Gaussian pixel noise")
    background_texture: float = Field(
        0.0,
        ge=0,
        le=0.5,
        description="amplitude of a smooth random brightness pattern (a gradient plus a wave) on plain "
        "backgrounds, so that flat texture stops being a shortcut; 0 = flat (the stream of random draws "
        "is then the same as before this option existed)",
    )

    @model_validator(mode="after")
    def _decoys_are_named_and_new(self) -> WorldConfig:
        if self.mix.get("decoy", 0) > 0 and not self.decoy_names:
            raise ValueError("the mix has decoys but decoy_names is empty")
        taken = set(vocabulary()) & set(self.decoy_names)
        if taken or not all(re.fullmatch(r"[a-z]+", name) for name in self.decoy_names):
            raise ValueError(f"decoy_names must be new lowercase words, not {sorted(taken) or self.decoy_names}")
        return self
