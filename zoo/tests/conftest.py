"""clipforge-zoo's tests run against the installed package (``pip install ./zoo``): without it, they
stop at once saying so rather than test clipforge's own models."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub download must fail fast, never hang

import pytest
import torch


def pytest_configure(config):
    try:
        import clipforge_zoo  # noqa: F401
    except ImportError:
        raise pytest.UsageError(
            "clipforge-zoo is not installed: pip install ./zoo (from the clipforge repository), then run its tests"
        ) from None


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    yield
