"""activation_norm: its value on known activations, its checks at the start, and a tiny run that raises it."""

import json

import pytest
import torch
from clipforge_extras import ActivationNorm
from pydantic import ValidationError

import clipforge
from clipforge import Features, Row
from clipforge.cli import main

LAYER = "transformer.resblocks.0"  # a layer of the tiny ViT: 17 tokens of 32 channels per image


@pytest.fixture
def backbone(tiny_backbone):
    return tiny_backbone


def objective(model, **options):
    rows = [Row(index=0, prompt_index=0, seed=0, label="", slug="x")]
    return ActivationNorm(ActivationNorm.Options(**{"layer": LAYER, **options}), model, rows, clipforge.RunSpec())


def value(objective, activations):
    n = activations.shape[0]
    features = Features(torch.zeros(n, 32), {objective.options.layer: activations}, torch.zeros(n, dtype=torch.long))
    return objective(features)


def test_the_value_is_the_mean_length_of_the_activation_vectors(backbone):
    norm = objective(backbone)
    tokens = torch.tensor([[[3.0, 4.0], [6.0, 8.0]], [[0.0, 1.0], [0.0, 0.0]]])  # (N, L, C): lengths 5, 10; 1, 0
    assert value(norm, tokens).tolist() == pytest.approx([7.5, 0.5])
    feature_map = torch.zeros(1, 2, 3, 3)  # (N, C, H, W): the vector (3, 4) at every position
    feature_map[:, 0], feature_map[:, 1] = 3.0, 4.0
    assert value(norm, feature_map).tolist() == pytest.approx([5.0])
    assert value(norm, torch.tensor([[3.0, 4.0]])).tolist() == pytest.approx([5.0])  # (N, C): one vector


def test_each_copy_is_valued_on_its_own(backbone):
    norm = objective(backbone)
    activations = torch.randn(4, 17, 32)
    together = value(norm, activations)
    alone = torch.cat([value(norm, activations[i : i + 1]) for i in range(4)])
    assert together.shape == (4,) and torch.allclose(together, alone)


def test_a_zero_vector_gives_a_zero_gradient_not_nan(backbone):
    """After a ReLU a whole position can be zero: it must not poison the step."""
    activations = torch.zeros(2, 4, 3, 3)
    activations[1, 0] = 1.0
    activations.requires_grad_(True)
    value(objective(backbone), activations).sum().backward()
    assert torch.isfinite(activations.grad).all() and activations.grad[0].abs().sum() == 0


def test_a_wrong_layer_fails_at_the_start_with_the_nearest_names(backbone):
    with pytest.raises(
        clipforge.LayerError, match=r"no layer 'transformer\.resblock\.0'.*nearest: transformer\.resblocks\.0"
    ):
        objective(backbone, layer="transformer.resblock.0")


def test_it_reads_its_layer_on_its_backbone_and_describes_itself(backbone):
    norm = objective(backbone, backbone=1)
    assert norm.shape == (17, 32) and norm.layers() == [LAYER]
    assert ActivationNorm.backbone_indices(norm.options, 3) == [1]
    assert ActivationNorm.describe(norm.options) == f"activation_norm {LAYER}"
    assert not ActivationNorm.uses_prompt and not ActivationNorm.compares_images


def test_options():
    assert ActivationNorm.Options(layer="conv1").model_dump() == {"weight": 1.0, "layer": "conv1", "backbone": 0}
    for bad in ({}, {"layer": ""}, {"layer": "conv1", "backbone": -1}, {"layer": "conv1", "layr": "x"}):
        with pytest.raises(ValidationError):
            ActivationNorm.Options(**bad)


def goal_run(tmp_path, make_spec, steps=8, **prompt):
    """A prompt of activation_norm alone, on the tiny model, without augmentations (a steady climb)."""
    goal = [{"name": "activation_norm", "options": {"layer": LAYER}}]
    spec = make_spec(
        prompts=[{"objectives": goal, **prompt}],
        augmentations=[],
        regularizers=[],
        copies=1,
        steps=steps,
        resolution=[{"step": 0, "size": 32}],
        callbacks=[{"name": "progress", "options": {"disable": True}}, "metrics"],
    )
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def test_a_tiny_run_raises_the_norm(tmp_path, make_spec, capsys):
    out = tmp_path / "run"
    assert main(["invert", str(goal_run(tmp_path, make_spec)), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote 2 image(s)" in printed and "goal " in printed  # no similarity to report: the goal instead
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = ([-d for d in r["data"]] for r in (records[0], records[-1]))  # the loss's data term is minus the goal
    assert all(b > a for a, b in zip(first, last)), (first, last)
    assert records[-1]["similarity"] == [None, None]
    images = sorted(p.name for p in (out / "images").iterdir())
    assert len(images) == 2 and all("activation" in name for name in images)  # named as describe() says


def test_a_wrong_layer_in_a_spec_stops_the_run_before_its_first_step(tmp_path, make_spec, capsys):
    spec = json.loads(goal_run(tmp_path, make_spec).read_text())
    spec["prompts"][0]["objectives"][0]["options"]["layer"] = "transformer.resblock.0"
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps(spec))
    assert main(["invert", str(path), "--out", str(tmp_path / "wrong")]) != 0
    err = capsys.readouterr().err
    assert "prompts[0].objectives[0]" in err and "nearest: transformer.resblocks.0" in err
    assert not (tmp_path / "wrong").exists()
