"""A Fourier parameterisation (Lucid / Lucent style).

Each image is a real spectrum in ``torch.fft.rfft2`` layout, scaled by ``1 / f ** decay``, turned
into pixels with an inverse FFT, mixed through a decorrelated colour basis and squashed into
[0, 1]. Why: plain pixels let the optimiser build high-frequency patterns that a CLIP model
responds to but a person does not see; scaling the spectrum like natural images' (1/f) makes every
frequency equally easy to change, which favours smooth, image-like results.

Its defaults (``init_std`` 0.5, learning rate 0.05 through ``default_optimizer``) are chosen so that
no channel collapses: with Lucid's near-gray start (``init_std`` 0.01), a quarter of the channels
of ``toyworld-rn``'s layer2 at the layer example's settings were dead on the start image (a ReLU
unit at zero everywhere gets no gradient), and the total-variation regulariser, whose value falls
as the sigmoid saturates, then drove their images to plain black. A start as varied as the pixel
parameterisation's noise wakes them (measured in ``benchmarks/RESULTS.md``, "The new defaults").

``shared`` (Lucent's ``channel_interpolate``): every image also gets one low-resolution pixel grid
common to the whole batch, so that the frames of an interpolation look alike. Image i is
``squash(MIX(irfft2(own_i * scale) + shared * up(mean_b S_b)))``, with ``S`` a (B, 3, s, s)
parameter whose rows all start at zero, ``up`` a bilinear upsampling to the image's size and MIX
the colour mixing. ``S`` is batch first, as the engine's per-image gradient clipping and
checkpoints want, but only the mean of its rows is used: each row gets 1/B of the shared
gradient, and Adam, being element-wise and scale-free, moves the rows alike (up to each image's own
gradient clipping, which the mean absorbs). An image then depends on the batch it is in.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from clipforge import API_VERSION, COLOR_MIX, Options, Parameterization, hookimpl

CLIPFORGE_API = API_VERSION  # a built-in is written against the API of the clipforge it comes with

# COLOR_MIX (clipforge's): the square root of ImageNet's colour correlation, normalised; mixing three
# independent channels through it gives colours that co-vary as in natural images.


class FourierOptions(Options):
    decay: float = Field(
        1.0,
        ge=0,
        description="Spectrum scale is 1 / f ** decay (f in cycles per pixel); 0 makes every frequency equally loud.",
    )
    decorrelate: bool = Field(
        True,
        description="Mix channels through ImageNet's colour-correlation square "
        "root (normalised by its largest column norm).",
    )
    output: Literal["sigmoid", "clamp"] = Field(
        "sigmoid", description="How values become [0, 1]: a sigmoid, or 0.5 + x clamped (no gradient where clamped)."
    )
    init_std: float = Field(
        0.5,
        ge=0,
        description="Standard deviation of the initial (unscaled) spectrum. The default, 0.5, starts from an image "
        "about as varied as the pixel parameterisation's uniform noise (std 0.29); Lucid's 0.01 starts from a "
        "near-uniform gray on which many ReLU units are dead, so their images never move but into black.",
    )
    shared: float = Field(
        0.0,
        ge=0,
        description="Weight of a low-resolution pixel grid shared by every image of the batch (Lucent's "
        "channel_interpolate): image i is squash(MIX(irfft(own_i) + shared * upsample(mean over rows of S))), "
        "S a (B, 3, s, s) parameter starting at zero. 0: off (no extra parameter). Above 0 the images are no "
        "longer independent of their batch: every prompt and seed of the run shares the grid, so a sweep "
        "that splits the prompts into batches, or another set of seeds, gives other images.",
    )
    shared_size: int | None = Field(
        None,
        ge=1,
        description="Side s of the shared grid in its own pixels; null: a quarter of the starting image's "
        "side (at least 1). The grid keeps this size through resizes (bilinearly upsampled to each size).",
    )


def _half_width(width: int) -> int:
    return width // 2 + 1


def spectrum_scale(size: tuple[int, int], decay: float) -> torch.Tensor:
    """The (H, W // 2 + 1) factor each coefficient is multiplied by: 1 / max(f, 1 / max(H, W)) ** decay,
    with f the coefficient's frequency in cycles per pixel (the clamp keeps DC finite)."""
    h, w = size
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    freq = (fy**2 + fx**2).sqrt()
    return 1.0 / freq.clamp_min(1.0 / max(h, w)) ** decay


def _row_map(old: int, new: int) -> list[tuple[int, int, float, int]]:
    """(old row, new row, weight, signed frequency) for growing an FFT axis of length ``old`` to
    ``new``: positive frequencies stay at the top, negative ones move to the bottom, and the Nyquist
    row of an even ``old`` (both +old/2 and -old/2) is split in half between the two new rows."""
    if new == old:
        return [(i, i, 1.0, 0) for i in range(old)]
    pairs = [(k, k, 1.0, k) for k in range((old + 1) // 2)]  # 0 .. ceil(old/2) - 1
    pairs += [(old - j, new - j, 1.0, -j) for j in range(1, (old - 1) // 2 + 1)]  # -1 .. -floor((old-1)/2)
    if old % 2 == 0:
        pairs += [(old // 2, old // 2, 0.5, old // 2), (old // 2, new - old // 2, 0.5, -(old // 2))]
    return pairs


def _centre_phase(k: int, old: int, new: int) -> complex:
    """The phase that keeps pixel centres aligned as ``F.interpolate(align_corners=False)`` does: old
    pixel n's centre lands at new position (n + 0.5) new / old - 0.5, not at n new / old."""
    return cmath.exp(-1j * math.pi * k * (1.0 / old - 1.0 / new))


def _grow_rows(x: torch.Tensor, old: int, new: int, dim: int) -> torch.Tensor:
    shape = list(x.shape)
    shape[dim] = new
    out = x.new_zeros(shape)
    for src, dst, weight, k in _row_map(old, new):
        out.select(dim, dst).add_(x.select(dim, src) * (weight * _centre_phase(k, old, new)))
    return out


def grow_spectrum(spec: torch.Tensor, old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    """Place a complex half spectrum (..., H, W//2+1) of a real (H, W) image into the half spectrum
    of a (H', W') image so that, up to normalisation, the larger image is the smaller one
    Fourier-interpolated (as a periodic, band-limited signal, pixel centres aligned as in
    ``F.interpolate(align_corners=False)``); the new high frequencies are zero."""
    (h, w), (h2, w2) = old, new
    if h2 < h or w2 < w:
        raise ValueError(f"the Fourier parameterisation only grows: {old} -> {new}")
    spec = spec.clone()
    if w % 2 == 0 and w2 != w:
        # The Nyquist column of an even width is used once (its real part after the row transform);
        # in the wider spectrum it is an ordinary column, used twice (with its mirror): keep the part
        # that is Hermitian along the rows, halved.
        col = spec[..., w // 2]
        mirror = col.roll(-1, dims=-1).flip(-1).conj()  # index k -> value at -k (mod h)
        spec[..., w // 2] = (col + mirror) / 4
    spec = _grow_rows(spec, h, h2, spec.dim() - 2)
    out = spec.new_zeros((*spec.shape[:-1], _half_width(w2)))
    phases = torch.tensor(
        [_centre_phase(k, w, w2) for k in range(_half_width(w))], dtype=spec.dtype, device=spec.device
    )
    out[..., : _half_width(w)] = spec * phases
    return out


class Fourier(Parameterization):
    """Per-image spectra, (B, 3, H, W//2+1, 2) (real, imaginary), scaled by 1/f**decay; with
    ``shared`` > 0 also the shared grid, (B, 3, s, s), of which every image uses the rows' mean."""

    name = "fourier"
    Options = FourierOptions
    # Lucid's and Lucent's rate for a spectrum with Adam; measured on toyworld-rn's layer2 at the layer
    # example's settings (32 channels): with init_std 0.5, no image flat at 0.05 or 0.1 (RESULTS)
    default_optimizer = {"lr": 0.05}

    def __init__(
        self,
        options: FourierOptions,
        batch_size: int,
        size: tuple[int, int],
        generators: Sequence[torch.Generator],
        device: torch.device,
    ) -> None:
        super().__init__(options, batch_size, size, generators, device)
        shape = (3, size[0], _half_width(size[1]), 2)
        # drawn on the CPU, where the generators live, one image at a time: a seed gives the same
        # spectrum whatever the batch and the device
        draws = torch.stack([torch.randn(shape, generator=g) for g in generators]) * options.init_std
        self.spectrum = draws.to(device).requires_grad_(True)
        self._set_size(size)
        self._old_size: tuple[int, int] | None = None
        self.shared_grid: torch.Tensor | None = None
        if options.shared > 0:
            # zeros, so the start image is the one without the shared part, and no image's generator
            # is drawn from (its augmentations stay those of a run without it)
            side = options.shared_size
            grid = (side, side) if side is not None else (max(1, size[0] // 4), max(1, size[1] // 4))
            self.shared_grid = torch.zeros((batch_size, 3, *grid), device=device).requires_grad_(True)

    def _set_size(self, size: tuple[int, int]) -> None:
        self.size = tuple(size)
        self.scale = spectrum_scale(self.size, self.options.decay).to(self.device)

    def parameters(self) -> list[torch.Tensor]:
        if self.shared_grid is None:
            return [self.spectrum]
        return [self.spectrum, self.shared_grid]

    def shared_image(self) -> torch.Tensor:
        """The shared part, ``shared * up(mean of S's rows)``, (1, 3, H, W); zero when ``shared`` is 0."""
        if self.shared_grid is None:
            return torch.zeros((1, 3, *self.size), device=self.device)
        mean = self.shared_grid.mean(dim=0, keepdim=True)
        return self.options.shared * F.interpolate(mean, size=self.size, mode="bilinear", align_corners=False)

    def linear_image(self) -> torch.Tensor:
        """The image before the colour mixing and squashing, (B, 3, H, W), about zero-centred."""
        spec = torch.view_as_complex(self.spectrum) * self.scale
        x = torch.fft.irfft2(spec, s=self.size, norm="ortho")
        if self.shared_grid is not None:
            x = x + self.shared_image()
        return x

    def to_rgb(self, x: torch.Tensor) -> torch.Tensor:
        """Colour mixing (if ``decorrelate``) and squashing into [0, 1]."""
        if self.options.decorrelate:
            x = torch.einsum("ij,bjhw->bihw", COLOR_MIX.to(x), x)
        if self.options.output == "sigmoid":
            return torch.sigmoid(x)
        return (x + 0.5).clamp(0, 1)

    def image(self) -> torch.Tensor:
        return self.to_rgb(self.linear_image())

    def resize(self, size: tuple[int, int]) -> None:
        """Keep every old coefficient at its frequency (in cycles per image) and start the new, higher
        ones at zero: the grown image is the old one Fourier-interpolated, pixel centres aligned
        as in ``F.interpolate(align_corners=False)``. The shared grid keeps its size and values (a
        new leaf): it is upsampled to the new size, so the shared part stays the same picture."""
        old = self.size
        size = tuple(size)
        with torch.no_grad():
            spec = torch.view_as_complex(self.spectrum.detach()) * self.scale
            grown = grow_spectrum(spec, old, size)
            # irfft2(norm="ortho") divides by sqrt(H W): keep pixel values, not coefficient sums
            grown = grown * math.sqrt((size[0] * size[1]) / (old[0] * old[1]))
            self._set_size(size)
            grown = torch.view_as_real(grown / self.scale).contiguous()
        self.spectrum = grown.requires_grad_(True)
        if self.shared_grid is not None:
            self.shared_grid = self.shared_grid.detach().clone().requires_grad_(True)
        self._old_size = old

    def resize_state(self, tensor: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        """Adam moments go to the same positions as their coefficients, unscaled: the coefficients
        are rescaled by one common factor for square growth, and Adam's step does not change when
        all gradients are scaled alike. New frequencies start with zero moments; the Nyquist row and
        column, which split in two, give each half the old moment. The shared grid's moments (4
        dimensions, not the spectrum's 5) carry over as they are, as the grid does."""
        if self._old_size is None:
            raise RuntimeError("fourier.resize_state is only meaningful right after resize")
        shapes = f"{tuple(tensor.shape)} -> {tuple(size)}"
        if self.shared_grid is not None and tensor.dim() == 4:
            if tuple(tensor.shape) != tuple(size) or tuple(size) != tuple(self.shared_grid.shape):
                raise NotImplementedError(f"fourier.resize_state: unexpected shapes {shapes}")
            return tensor.clone()
        (h, w), (h2, w2) = self._old_size, self.size
        if tuple(tensor.shape[-4:-1]) != (3, h, _half_width(w)) or tuple(size[-4:-1]) != (3, h2, _half_width(w2)):
            raise NotImplementedError(f"fourier.resize_state: unexpected shapes {shapes}")
        out = tensor.new_zeros(tuple(size))
        rows = out.dim() - 3
        for src, dst, _, _ in _row_map(h, h2):
            out.select(rows, dst)[..., : _half_width(w), :] = tensor.select(rows, src)
        return out


@hookimpl
def register_parameterizations(register):
    register(Fourier)
