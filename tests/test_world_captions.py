"""An analysis that asks for "the world's captions" gets them from the judge's backbone, which knows
the world its model was trained on (the offline models) or says it knows none; the general analysis
code names no world of its own."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_backbone
from pydantic import ValidationError

from clipforge import SpecError, load_backbone
from clipforge.analysis import candidate_captions
from clipforge.toyworld import World
from clipforge_plugins.analysis_compare import CompareSpec

CPU = torch.device("cpu")


def test_an_offline_judge_gives_its_worlds_captions():
    judge = load_backbone({"name": "open_clip", "options": {"model": "toyworld-judge-rn"}}, CPU)
    assert judge.captions() == World.captions()
    for value in ("world", "toyworld"):  # the older name means the same
        assert candidate_captions(value, ["a red circle on a gray background"], judge) == World.captions()
    # a list is taken as it is, the prompts added once
    assert candidate_captions(["a", "b"], ["b", "c"], judge) == ["a", "b", "c"]


def test_a_judge_that_knows_no_world_is_an_error_naming_it():
    judge = load_backbone(tiny_backbone(), CPU)
    assert judge.captions() is None
    with pytest.raises(SpecError, match=r"captions: 'world' asks the judge.*open_clip:config\(random\) knows none"):
        candidate_captions("world", ["a cat"], judge)


def test_captions_must_be_a_list_or_the_worlds():
    base = {
        "judge": tiny_backbone(),
        "prompts": ["a cat"],
        "seeds": 1,
        "backbones": {"a": tiny_backbone(), "b": tiny_backbone(1)},
    }
    assert CompareSpec(**base, captions="world").captions == "world"
    with pytest.raises(ValidationError, match="captions"):  # before, any string passed and was read letter by letter
        CompareSpec(**base, captions="a cat")
