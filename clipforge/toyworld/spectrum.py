"""The toy world's spectrum for the ``maco`` parameterisation (``spectra/toyworld_64.npy``), made from
the world's own images: kept beside the world, so that the runtime's spectrum module
(:mod:`clipforge.spectrum`) does not import the toy world."""

from __future__ import annotations

from pathlib import Path

import torch

from clipforge.spectrum import TOYWORLD_SPECTRUM, mean_spectrum, write_spectrum
from clipforge.toyworld.models import model_world


def toyworld_spectrum(out: str | Path = TOYWORLD_SPECTRUM, count: int = 512, seed: int = 0) -> str:
    """Make the toy world's spectrum: ``count`` images of the world the bundled ``toyworld-rn`` was
    trained on, drawn with ``seed``, at its 64 px, averaged as :func:`folder_spectrum` averages a
    folder's (without the round trip through 8-bit PNG files). Returns the file's sha256."""
    sample = model_world("toyworld-rn").sample(count, torch.Generator().manual_seed(seed))
    return write_spectrum(out, mean_spectrum(sample.images.split(64)))
