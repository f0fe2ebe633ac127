"""Fixtures. What the tests share besides fixtures is in ``helpers.py``."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub download must fail fast, never hang on retries

import pytest
import torch
from helpers import tiny_spec_dict


@pytest.fixture
def tiny_spec() -> dict:
    return tiny_spec_dict()


@pytest.fixture(autouse=True)
def _threads():
    # CLIPFORGE_TEST_THREADS=1 under the mutation run: a forked child hangs in a parent's thread pool
    torch.set_num_threads(int(os.environ.get("CLIPFORGE_TEST_THREADS", "2")))
    yield
