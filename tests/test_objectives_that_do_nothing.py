"""Objectives that would silently do nothing, and objectives that fail without being named (issue 33,
the weak group): each is refused at the earliest point that can know, naming the objective, its
place in the spec and its plugin."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers import registry_with, tiny_spec_dict

import clipforge
from clipforge.engine import ComponentFailedError
from clipforge.resolved import ComponentStartError

QUIET = [{"name": "progress", "options": {"disable": True}}]
LAYER = "transformer.resblocks.0"  # a layer of the tiny test model


def spec(*objectives, seeds=(0,), **more) -> dict:
    return tiny_spec_dict(
        steps=2, seeds=list(seeds), callbacks=QUIET, prompts=[{"objectives": list(objectives)}], **more
    )


def direction(**options) -> dict:
    return {"name": "direction", "options": options}


@pytest.mark.parametrize(
    "options, says",
    [
        ({"text": "red", "minus": "red"}, "'minus' is 'text'"),
        ({"text": "Red ", "minus": "red"}, "'minus' is 'text'"),
        ({"vector": [0.0] * 32}, "norm 0"),
        ({"vector": [1e-40] * 32}, "norm 5.66e-40"),
    ],
)
def test_a_direction_of_nothing_is_refused_naming_its_place(options, says):
    with pytest.raises(clipforge.SpecError) as caught:
        clipforge.invert(spec(direction(**options)))
    message = str(caught.value)
    assert "prompts[0].objectives[0]" in message and says in message and "plugin 'objectives'" in message


def test_a_zero_direction_file_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "zero.npy"
    np.save(path, np.zeros(32, dtype=np.float32))
    with pytest.raises(clipforge.SpecError, match=r"zero\.npy' has norm 0"):
        clipforge.invert(spec(direction(file=str(path))))


def test_two_texts_that_embed_alike_are_refused_at_the_start():
    """Texts that differ but embed alike (the tokenizer folds runs of spaces into one) give a zero
    difference too; that is known only once the backbone embeds them."""
    with pytest.raises(ComponentStartError, match=r"'a  red' minus 'a red' in .* has norm 0"):
        clipforge.invert(spec(direction(text="a  red", minus="a red")))


def test_a_direction_that_points_somewhere_still_runs():
    result = clipforge.invert(spec(direction(text="red", minus="blue"), direction(vector=[1e-3] * 32)))
    assert result.steps_done == 2


def test_diversity_with_one_image_per_prompt_is_refused():
    with pytest.raises(ComponentStartError, match=r"prompts\[0\] has one image \(one seed\).*two seeds or more"):
        clipforge.invert(spec({"name": "diversity", "options": {"layer": LAYER}}))
    assert clipforge.invert(spec({"name": "diversity", "options": {"layer": LAYER}}, seeds=(0, 1))).steps_done == 2


def test_a_prompt_weighted_zero_reports_its_true_similarity_and_says_it_pursues_nothing():
    """Its similarity was reported as 0.000 (the similarity's weights were the prompt's, all zero);
    it is the similarity to its text, as an unweighted prompt's at the same image would be."""
    weighted = tiny_spec_dict(steps=1, seeds=[0], callbacks=QUIET, prompts=[{"text": "a red circle", "weight": 0}])
    plain = tiny_spec_dict(steps=1, seeds=[0], callbacks=QUIET, prompts=[{"text": "a red circle"}])
    with pytest.warns(UserWarning, match=r"prompts\[0\] has weight 0: its goal is zero"):
        zero = clipforge.invert(weighted)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = clipforge.invert(plain)
    # step 1's similarity is measured on the initial images, the same for both (same seed)
    assert zero.metrics[0]["similarity"][0] == pytest.approx(one.metrics[0]["similarity"][0], abs=1e-6)
    assert zero.metrics[0]["similarity"][0] != 0.0


class Detached(clipforge.Objective):
    name = "detached"

    def __call__(self, features):
        return features.embeddings.detach().sum(-1)


class NotANumber(clipforge.Objective):
    name = "not_a_number"

    def __call__(self, features):
        return features.embeddings.sum(-1) * float("nan")


class Infinite(clipforge.Objective):
    name = "infinite"

    def __call__(self, features):
        return features.embeddings.sum(-1) + float("inf")


class ThreeValues(clipforge.Objective):
    name = "three_values"

    def __call__(self, features):
        value = features.embeddings.sum(-1)
        return value, value, value


class DescribeFails(clipforge.Objective):
    name = "describe_fails"

    @classmethod
    def describe(cls, options):
        raise RuntimeError("no words")

    def __call__(self, features):
        return features.embeddings.sum(-1)


class DescribesANumber(clipforge.Objective):
    name = "describes_a_number"

    @classmethod
    def describe(cls, options):
        return 5

    def __call__(self, features):
        return features.embeddings.sum(-1)


REGISTRY = registry_with(Detached, NotANumber, Infinite, ThreeValues, DescribeFails, DescribesANumber)


@pytest.mark.parametrize(
    "name, error, says",
    [
        ("detached", ComponentFailedError, "no gradient"),
        ("not_a_number", ComponentFailedError, r"not finite \(nan\)"),
        ("infinite", ComponentFailedError, r"not finite \(inf\)"),
        ("three_values", ComponentFailedError, "a tuple of 3"),
        ("describe_fails", ComponentStartError, r"describe\(\) failed: RuntimeError: no words"),
        ("describes_a_number", ComponentStartError, r"describe\(\) returned int, not a string"),
    ],
)
def test_a_plugin_objective_that_misbehaves_is_named(name, error, says):
    with pytest.raises(error, match=says) as caught:
        clipforge.invert(spec(name), registry=REGISTRY)
    message = str(caught.value)
    assert f"prompts[0].objectives[0]: objective {name!r} from plugin 'extra'" in message
    assert "step" not in message.split(":")[0]  # the objective is named first, not only a step


def test_an_objective_with_a_gradient_is_not_refused_under_no_grad():
    """The check reads the gradient only where the images have one (a measurement under no_grad is fine)."""
    from clipforge.goals import check_value

    with torch.no_grad():
        check_value(torch.ones(3), torch.ones(3, 4))
