"""MACO: the Fourier magnitude fixed to natural images', only the phase optimised; its crops and noise.

MAgnitude Constrained Optimization (Fel et al., NeurIPS 2023; Xplique and horama implement it).
Why: a free spectrum lets the optimiser pour energy into the frequencies a deep network (a ViT
especially) answers to but a person does not see; with the magnitude of every frequency fixed to
the average of real images, the optimiser can only move structure around (the phase), so the
images keep natural statistics however deep the unit is.

``maco`` makes each image as ``sigmoid(4 MIX irfft2(M exp(i phase)))``: ``M`` is the spectrum
file's magnitude (norm "ortho"), resampled to the image's size as if the images were resized
(``resample_spectrum``); ``MIX`` is the colour mixing of the ``fourier`` parameterisation (the
spectrum is of decorrelated colours, see ``clipforge spectrum``). Horama and Xplique standardise
the image (mean 0, std 1) before a sigmoid; here the fixed magnitude already fixes every image's
energy (Parseval), so the image is kept in the spectrum's own units instead: ``0.5 + MIX x`` has
the contrast and colour cast of the images the spectrum was made of, and ``sigmoid(4 t)`` squashes
it into (0, 1) with slope 1 at mid-gray (standardised, the toy world's images came out at a
third of their contrast, pixel std 0.05 against 0.13, its spectrum being mostly colour). They
also standardise the phase before using it, with NAdam at lr 1.0; here the phase is used as it
is (so that a resize carries it exactly and a checkpoint is the phase alone), with NAdam at lr
0.2 (``Maco.default_optimizer``).

``crops`` and ``noise`` are MACO's augmentations: random square crops resampled to the copies' size
(the engine then resizes copies to the model's input), and additive Gaussian or uniform noise.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, model_validator

from clipforge import (
    API_VERSION,
    COLOR_MIX,
    Augmentation,
    AugmentContext,
    Options,
    Parameterization,
    hookimpl,
    option_error,
    spec_path,
)

CLIPFORGE_API = API_VERSION  # a built-in is written against the API of the clipforge it comes with

#: the toy world's spectrum, shipped for the bundled models (made by ``clipforge spectrum``'s
#: averaging, see clipforge/spectrum.py's docstring for the command)
SHIPPED_SPECTRUM = Path(str(files("clipforge.toyworld") / "spectra" / "toyworld_64.npy"))

# COLOR_MIX (clipforge's, as fourier's): spectrum files are of colours decorrelated with its inverse.


# --------------------------------------------------------------------------- the spectrum file


def read_spectrum(path: str | Path) -> np.ndarray:
    """A spectrum file as a (3, N, N // 2 + 1) float32 array: a ``.npy`` of non-negative finite
    magnitudes, (3, N, N // 2 + 1) or (N, N // 2 + 1) (one magnitude for every channel). Anything
    else is a ``ValueError`` that says what is wrong with the file."""
    try:
        array = np.load(Path(path), allow_pickle=False)
    except Exception as exc:  # truncated, not .npy, pickled objects ...
        why = str(exc).split(". ")[0][:160]
        raise ValueError(f"{str(path)!r} is not a readable .npy spectrum file ({why})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise ValueError(f"{str(path)!r} holds {getattr(array, 'dtype', type(array))}, not float magnitudes")
    if array.ndim == 2:
        array = np.broadcast_to(array, (3, *array.shape))
    if array.ndim != 3 or array.shape[0] != 3 or array.shape[1] < 2 or array.shape[2] != array.shape[1] // 2 + 1:
        raise ValueError(
            f"{str(path)!r} has shape {tuple(np.shape(array))}; a spectrum is (3, N, N // 2 + 1) or "
            "(N, N // 2 + 1): the rfft2 magnitudes of square N x N images"
        )
    array = array.astype(np.float32)
    if not np.isfinite(array).all() or (array < 0).any():
        raise ValueError(f"{str(path)!r} holds negative, NaN or infinite magnitudes")
    if not (array > 0).any():
        raise ValueError(f"{str(path)!r} is all zeros")
    return np.ascontiguousarray(array)


def resample_spectrum(magnitude: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (3, N, N // 2 + 1) magnitude (norm "ortho") of N x N images on the (3, H, W // 2 + 1) grid
    of H x W images, as if these were the same images resized: each frequency keeps its magnitude
    in cycles per image, times sqrt(H W) / N (what resizing does to an "ortho" spectrum, DC
    included: the mean colour and the contrast stay). A smaller image takes the file's low
    frequencies; frequencies above the file's Nyquist follow a power law fitted to its top octave
    (natural spectra fall as one), each colour channel its own."""
    n = magnitude.shape[-2]
    h, w = size
    if (h, w) == (n, n):
        return magnitude.clone()
    ky = torch.fft.fftfreq(h, 1 / h).round().long()[:, None].expand(h, w // 2 + 1)
    kx = torch.fft.rfftfreq(w, 1 / w).round().long()[None, :].expand(h, w // 2 + 1)
    inside = (ky.abs() <= n // 2) & (kx <= n // 2)
    out = torch.empty((3, h, w // 2 + 1), dtype=torch.float64)
    out[:, inside] = magnitude.double()[:, ky[inside] % n, kx[inside]]
    if not inside.all():
        # M = A r^-a, fitted (least squares in log-log) on the file's frequencies n/4 <= r <= n/2
        fy = torch.fft.fftfreq(n, 1 / n).double()[:, None]
        fx = torch.fft.rfftfreq(n, 1 / n).double()[None, :]
        r = (fy**2 + fx**2).sqrt().expand(n, n // 2 + 1)
        band = (r >= n / 4) & (r <= n / 2)
        log_r = r[band].log()
        log_m = magnitude.double()[:, band].clamp_min(1e-12).log()
        slope = ((log_r - log_r.mean()) * (log_m - log_m.mean(dim=1, keepdim=True))).sum(dim=1) / (
            (log_r - log_r.mean()) ** 2
        ).sum()
        intercept = log_m.mean(dim=1) - slope * log_r.mean()
        r_out = (ky[~inside].double() ** 2 + kx[~inside].double() ** 2).sqrt()
        out[:, ~inside] = (intercept[:, None] + slope[:, None] * r_out.log()[None]).exp()
    # a real image's columns 0 and W / 2 (even W) are their own mirror: |X(-k)| = |X(k)| there
    for c in [0] + ([w // 2] if w % 2 == 0 else []):
        column = out[:, :, c]
        out[:, :, c] = (column + torch.roll(column.flip(-1), 1, dims=-1)) / 2
    return (out * math.sqrt(h * w) / n).float()


def _resolve_path(value: str | None, info: ValidationInfo) -> Path:
    return SHIPPED_SPECTRUM if value is None else spec_path(value, info)


# --------------------------------------------------------------------------- the parameterisation


class MacoOptions(Options):
    spectrum: str | None = Field(
        None,
        description="The magnitude spectrum file (.npy, made by `clipforge spectrum DIR --out FILE`), a path "
        "relative to the spec file's folder; null: the toy world's, shipped for the bundled models. "
        "Recorded as an absolute path. Resampled to the image's size when it was made for another.",
    )
    spectrum_sha256: str | None = Field(
        None,
        description="The spectrum file's sha256, filled in when the spec is checked (the run's spec.json "
        "records it); a value given must match the file.",
    )
    init_std: float = Field(1.0, gt=0, description="Standard deviation of the initial phases (radians), as MACO.")

    @model_validator(mode="after")
    def _readable_spectrum(self, info: ValidationInfo) -> MacoOptions:
        path = _resolve_path(self.spectrum, info)
        if not path.is_file():
            raise option_error("spectrum", f"no such spectrum file: {str(path)!r}", self.spectrum)
        try:
            read_spectrum(path)
        except ValueError as exc:
            raise option_error("spectrum", str(exc), self.spectrum) from None
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if self.spectrum_sha256 is not None and self.spectrum_sha256 != digest:
            raise option_error(
                "spectrum_sha256",
                f"{str(path)!r} has sha256 {digest}, not the {self.spectrum_sha256} given: the file changed "
                "since this spec was written (drop spectrum_sha256 to use it as it is now)",
                self.spectrum_sha256,
            )
        # recorded as resolved: the file by absolute path, with its digest
        object.__setattr__(self, "spectrum", str(path.resolve()))
        object.__setattr__(self, "spectrum_sha256", digest)
        return self


class Maco(Parameterization):
    """Per-image phases, (B, 3, H, W // 2 + 1), under a fixed magnitude from a spectrum file."""

    name = "maco"
    Options = MacoOptions
    #: MACO's optimiser, NAdam (horama and Xplique: lr 1.0 on a standardised phase). The phase here is
    #: not standardised: on toyworld-rn's layer3 channels (64 px, 64 steps, crops and noise) NAdam at
    #: lr 0.2 reached the highest activations of 0.05, 0.2 and 1.0 (1.0: a third lower), and beat
    #: Adam at 0.05 and 0.2. For the engine, when a spec gives no optimizer.
    default_optimizer: ClassVar[dict[str, Any]] = {"name": "nadam", "lr": 0.2}

    def __init__(
        self,
        options: MacoOptions,
        batch_size: int,
        size: tuple[int, int],
        generators: Sequence[torch.Generator],
        device: torch.device,
    ) -> None:
        super().__init__(options, batch_size, size, generators, device)
        self.path = options.spectrum or str(SHIPPED_SPECTRUM)
        self.template = torch.from_numpy(read_spectrum(self.path))
        self._set_size(size)
        shape = (3, size[0], size[1] // 2 + 1)
        # one image at a time from its own generator, on the CPU: a seed gives the same phase in any batch
        draws = torch.stack([torch.randn(shape, generator=g) for g in generators]) * options.init_std
        self.phase = draws.to(device).requires_grad_(True)

    def _set_size(self, size: tuple[int, int]) -> None:
        n = self.template.shape[-2]
        if max(size) > n:
            warnings.warn(
                f"maco: the spectrum {self.path!r} is of {n} x {n} images; the frequencies of {size[0]} x {size[1]} "
                "images above its own are extrapolated (a power law); make one at this size with "
                "`clipforge spectrum DIR --out FILE --size N`",
                stacklevel=3,
            )
        self.size = tuple(size)
        self.magnitude = resample_spectrum(self.template, self.size).to(self.device)

    def parameters(self) -> list[torch.Tensor]:
        return [self.phase]

    def spectrum(self) -> torch.Tensor:
        """The complex half spectrum of every image, (B, 3, H, W // 2 + 1): the fixed magnitude with
        the phase made consistent with a real image (on the columns that are their own mirror, the
        phase of frequency -k is minus that of k), so that the image's own spectrum has exactly this
        magnitude; the few frequencies that are their own conjugate (DC, Nyquist) are real,
        ``M cos(phase)``, as irfft2 takes their real part anyway."""
        h, w = self.size
        phase = self.phase
        cols = [0] + ([w // 2] if w % 2 == 0 else [])
        parts = []
        for c in cols:
            column = phase[..., c]
            mirror = torch.roll(column.flip(-1), 1, dims=-1)  # row k -> row -k (mod H)
            parts.append((column - mirror) / 2)
        odd = phase.clone()
        for c, part in zip(cols, parts):
            odd[..., c] = part
        magnitude = self.magnitude.expand_as(odd)
        real = torch.complex(magnitude * torch.cos(phase), torch.zeros_like(odd))
        return torch.where(self._real_bins(), real, torch.polar(magnitude, odd))

    def linear_image(self) -> torch.Tensor:
        """The image before the colour mixing and squashing, (B, 3, H, W): its rfft2 (norm "ortho")
        has the magnitude ``self.magnitude`` (``M |cos(phase)|`` at DC and the Nyquist frequencies)."""
        return torch.fft.irfft2(self.spectrum(), s=self.size, norm="ortho")

    def image(self) -> torch.Tensor:
        """``sigmoid(4 MIX x)``: ``0.5 + MIX x`` is the image in the contrast and colour cast of the
        images the spectrum was made of (the fixed magnitude fixes each image's energy, by Parseval,
        so MACO's standardising would only change units), squashed into (0, 1) with slope 1 at
        mid-gray."""
        x = self.linear_image()
        return torch.sigmoid(4 * torch.einsum("ij,bjhw->bihw", COLOR_MIX.to(x), x))

    def resize(self, size: tuple[int, int]) -> None:
        """Carry the phase by interpolation: the new phase is that of the old (linear) image resized
        bicubically (on the real frequencies, DC and Nyquist, the one whose cosine keeps the value);
        the magnitude is the spectrum resampled to the new size. The image keeps its structure and
        gains the detail the spectrum prescribes at the new, higher frequencies."""
        size = tuple(size)
        with torch.no_grad():
            grown = F.interpolate(self.linear_image().detach(), size=size, mode="bicubic", align_corners=False)
            spectrum = torch.fft.rfft2(grown, norm="ortho")
            self._set_size(size)
            phase = torch.angle(spectrum)
            cosine = torch.acos((spectrum.real / self.magnitude.clamp_min(1e-12)).clamp(-1, 1))
            phase = torch.where(self._real_bins(), cosine, phase)
        self.phase = phase.contiguous().requires_grad_(True)

    def _real_bins(self) -> torch.Tensor:
        """(H, W // 2 + 1) bool: the frequencies that are their own mirror (DC and the Nyquist ones)."""
        h, w = self.size
        real = torch.zeros((h, w // 2 + 1), dtype=torch.bool, device=self.device)
        for c in [0] + ([w // 2] if w % 2 == 0 else []):
            real[0, c] = True
            if h % 2 == 0:
                real[h // 2, c] = True
        return real

    def resize_state(self, tensor: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        """Optimiser moments start afresh: a phase's moment means nothing at another frequency grid."""
        return tensor.new_zeros(tuple(size))


# --------------------------------------------------------------------------- the augmentations


class CropsOptions(Options):
    box_size: tuple[float, float] = Field(
        (0.25, 0.75),
        description="Each crop's side, drawn uniformly in [low, high], as a fraction of the image's side "
        "(MACO's box size); 1 is the whole image.",
    )
    center_std: float = Field(
        0.15, ge=0, description="Crop centres are 0.5 + this x a normal draw per axis (MACO's), kept inside the image."
    )
    size: int | None = Field(
        None,
        ge=1,
        description="Each crop is resampled to this size; omitted: the copies' own size (the engine then "
        "resizes them to the model's input, as it does any copies).",
    )
    mode: Literal["bilinear", "bicubic", "nearest"] = Field("bilinear", description="Sampling of the crop.")

    @model_validator(mode="after")
    def _box_in_the_image(self) -> CropsOptions:
        low, high = self.box_size
        if not 0 < low <= high:
            raise option_error("box_size", f"must be (low, high) with 0 < low <= high, got {list(self.box_size)}")
        if high > 1:
            raise option_error(
                "box_size",
                f"a crop of {high} x the image's side is larger than the image: sides are fractions of it, at most 1",
                list(self.box_size),
            )
        return self


def _normal(u: torch.Tensor) -> torch.Tensor:
    """Standard normal draws from pairs of uniform ones (Box-Muller): (..., 2) -> (...)."""
    return torch.sqrt(-2 * torch.log1p(-u[..., 0])) * torch.cos(2 * math.pi * u[..., 1])


class Crops(Augmentation):
    """MACO's random crops: a square box of a random side about a random centre near the middle,
    resampled to the copies' size; each copy its own box, from its image's generator."""

    name = "crops"
    Options = CropsOptions

    def __call__(self, copies: torch.Tensor, ctx: AugmentContext) -> torch.Tensor:
        o = self.options
        n, _, h, w = copies.shape
        out = (o.size, o.size) if o.size else (h, w)
        u = ctx.per_copy((5,), torch.device("cpu"))  # side, centre y (2 uniforms), centre x (2 uniforms)
        side = o.box_size[0] + u[:, 0] * (o.box_size[1] - o.box_size[0])
        half = side / 2
        cy = (0.5 + o.center_std * _normal(u[:, 1:3])).clamp(half, 1 - half)
        cx = (0.5 + o.center_std * _normal(u[:, 3:5])).clamp(half, 1 - half)
        # an affine grid over the box, in [-1, 1] image coordinates (align_corners=False)
        zero = torch.zeros_like(side)
        theta = torch.stack([torch.stack([side, zero, 2 * cx - 1], 1), torch.stack([zero, side, 2 * cy - 1], 1)], 1).to(
            copies
        )
        grid = F.affine_grid(theta, [n, 3, *out], align_corners=False)
        return F.grid_sample(copies, grid, mode=o.mode, padding_mode="border", align_corners=False)


class NoiseOptions(Options):
    kind: Literal["gaussian", "uniform"] = Field(
        "gaussian", description="'gaussian': N(0, amount^2) per pixel; 'uniform': U(-amount / 2, amount / 2)."
    )
    amount: float = Field(
        0.05, ge=0, description="The noise's standard deviation (gaussian) or width (uniform); MACO's is 0.05."
    )


class Noise(Augmentation):
    """Additive pixel noise, a fresh draw for every copy from its image's generator (MACO adds both
    kinds: list it twice)."""

    name = "noise"
    Options = NoiseOptions

    def __call__(self, copies: torch.Tensor, ctx: AugmentContext) -> torch.Tensor:
        o = self.options
        if o.amount == 0:
            return copies
        shape = tuple(copies.shape[1:])
        if o.kind == "uniform":
            noise = (ctx.per_copy(shape, copies.device) - 0.5) * o.amount
        else:
            noise = _normal(ctx.per_copy((*shape, 2), copies.device)) * o.amount
        return copies + noise.to(copies.dtype)


@hookimpl
def register_parameterizations(register):
    register(Maco)


@hookimpl
def register_augmentations(register):
    register(Crops)
    register(Noise)
