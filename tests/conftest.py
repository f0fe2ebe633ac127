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


@pytest.fixture
def backbones_built(monkeypatch) -> list[str]:
    """Every backbone built while the test runs, as its options' JSON, in order (to count builds)."""
    import json

    from clipforge.registry import ResolvedComponent

    built: list[str] = []
    real = ResolvedComponent.build

    def counting(self, *args, **kwargs):
        if self.entry.kind == "backbone":
            built.append(json.dumps(self.options.model_dump(mode="json"), sort_keys=True))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ResolvedComponent, "build", counting)
    return built
