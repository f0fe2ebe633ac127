"""A magnitude spectrum from a folder of images: MACO's template (``clipforge spectrum DIR --out FILE``).

MACO (Fel et al., NeurIPS 2023) fixes each image's Fourier magnitude to the average magnitude of
natural images and optimises only the phase. This module makes that average from any folder of
images, so that a model is visualised with the statistics of the images it was trained on.

The file is a NumPy ``.npy`` array of float32, shape ``(3, N, N // 2 + 1)``: for each of the three
decorrelated colour channels, the mean over the images of ``|torch.fft.rfft2(x)|`` (norm
``"ortho"``), in ``rfft2``'s layout (rows: frequencies ``fftfreq(N)``; columns ``rfftfreq(N)``), for
square ``N x N`` images. Each image is read as RGB in [0, 1], resized to ``N`` (bicubic,
antialiased), centred on mid-gray (``x - 0.5``, the value the ``maco`` parameterisation's sigmoid
gives 0) and decorrelated with the inverse of :data:`COLOR_MIX`, the colour mixing the ``fourier``
and ``maco`` parameterisations apply. A ``(N, N // 2 + 1)`` array (one magnitude for all three
channels) is accepted by the ``maco`` plugin too. The format is that of Xplique's and horama's
``spectrum_decorrelated.npy``.

The spectrum shipped for the bundled models, ``clipforge/toyworld/spectra/toyworld_64.npy``
(sha256 ``c60333d5fe96d50d0ae3cef224800dc80c59d896eb45be6ac5c753e1721cfc9f``), was made from 512
images of toyworld-rn's world (seed 0) at 64 px by :func:`clipforge.toyworld.spectrum.toyworld_spectrum`, which
averages them
exactly as ``clipforge spectrum`` averages a folder's (without the round trip through 8-bit
files)::

    rm clipforge/toyworld/spectra/toyworld_64.npy   # a spectrum file is never overwritten
    python -c "from clipforge.toyworld.spectrum import toyworld_spectrum; print(toyworld_spectrum())"
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from clipforge.files import atomic_path

#: Lucid's square root of ImageNet's colour correlation, normalised by its largest column norm: the
#: colour mixing of the ``fourier`` and ``maco`` parameterisations (public, ``clipforge.COLOR_MIX``).
#: Images are decorrelated with its inverse before their spectrum is taken.
COLOR_MIX = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_MIX = COLOR_MIX / COLOR_MIX.norm(dim=0).max()

#: the image files a folder's spectrum is made of
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

#: where the toy world's spectrum is shipped
TOYWORLD_SPECTRUM = Path(__file__).parent / "toyworld" / "spectra" / "toyworld_64.npy"


class SpectrumError(ValueError):
    """A folder or file a spectrum cannot be made from or written to; the message names it."""


def image_files(folder: Path) -> list[Path]:
    """The folder's PNG and JPEG files (not its subfolders'), sorted by name."""
    if not folder.is_dir():
        raise SpectrumError(f"{str(folder)!r} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SpectrumError(f"{str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)} files)")
    return files


def decorrelated_magnitudes(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, N, N) RGB images in [0, 1] -> their (B, 3, N, N // 2 + 1) Fourier magnitudes in the
    decorrelated colour space (``COLOR_MIX`` inverted), centred on mid-gray."""
    unmix = torch.linalg.inv(COLOR_MIX.double()).float()
    x = torch.einsum("ij,bjhw->bihw", unmix, images.float() - 0.5)
    return torch.fft.rfft2(x, norm="ortho").abs()


def mean_spectrum(batches: Iterable[torch.Tensor]) -> np.ndarray:
    """The mean decorrelated magnitude of every image of ``batches`` ((B, 3, N, N) each), float32."""
    total, count = None, 0
    for batch in batches:
        magnitudes = decorrelated_magnitudes(batch).double().sum(dim=0)
        total = magnitudes if total is None else total + magnitudes
        count += batch.shape[0]
    if total is None:
        raise SpectrumError("no images to average")
    return (total / count).float().numpy()


def folder_spectrum(folder: str | Path, size: int = 64) -> np.ndarray:
    """The mean decorrelated magnitude of every image in ``folder``, each resized to ``size``."""
    from clipforge.images import read_image

    if size < 2:
        raise SpectrumError(f"--size must be 2 or more, not {size}")
    files = image_files(Path(folder))

    def batches() -> Iterable[torch.Tensor]:
        for start in range(0, len(files), 64):
            yield torch.stack([read_image(path, (size, size)) for path in files[start : start + 64]])

    return mean_spectrum(batches())


def check_out_file(path: str | Path) -> Path:
    """Refuse a spectrum file that cannot be written: not ``.npy``, in a missing folder, or already
    there (a spectrum a run recorded by its digest is never overwritten)."""
    path = Path(path)
    if path.suffix != ".npy":
        raise SpectrumError(f"{str(path)!r}: a spectrum file is a .npy file; name it ...npy")
    if not path.parent.is_dir():
        raise SpectrumError(f"{str(path)!r}: the folder {str(path.parent)!r} does not exist")
    if path.exists():
        raise SpectrumError(f"{str(path)!r} already exists; choose another --out (clipforge does not overwrite it)")
    return path


def write_spectrum(path: str | Path, spectrum: np.ndarray) -> str:
    """Write ``spectrum`` as a new ``.npy`` file, whole or not at all; returns its sha256."""
    path = check_out_file(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(spectrum, dtype=np.float32), allow_pickle=False)
    return file_sha256(path)


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
