"""The benchmark scripts' own arithmetic: a wrong ratio there would be a wrong figure in RESULTS.md."""

import pytest
import torch

from benchmarks import compare_parameterizations, speed, toyworld_eval


def test_speed_methods_take_turns_and_keep_medians():
    calls = []

    def method(name, seconds):
        def run():
            calls.append(name)
            return [seconds.pop(0) * 10] * 3  # three phases of 10 steps

        return run

    results = speed.measure(
        {"a": method("a", [1.0, 3.0, 2.0]), "b": method("b", [5.0, 4.0, 6.0])},
        torch.device("cpu"),
        repeats=3,
        steps_per_phase=10,
    )
    assert calls == ["a", "b"] * 3  # alternating, so drift of the machine hits both alike
    assert results["a"]["seconds_per_step"] == pytest.approx(2.0)
    assert results["b"]["seconds_per_step"] == pytest.approx(5.0)
    assert results["a"]["runs"] == pytest.approx([1.0, 3.0, 2.0])


def test_speed_weights_phases_by_the_paper_schedule():
    # 10 steps per phase at 1, 2 and 4 s/step, weighted 900/900/1600 of 3400
    expected = (1 * 900 + 2 * 900 + 4 * 1600) / 3400
    assert speed.weighted_seconds_per_step([10.0, 20.0, 40.0], 10) == pytest.approx(expected)


def test_attribute_accuracy_counts_each_stated_fact_of_the_prompt():
    attribute_accuracy = toyworld_eval.attribute_accuracy
    prompts = [
        "a red circle on a gray background",
        "a blue square on a white background",
        "a green ring on a black background",
        "a cyan cross on a gray background",
    ]
    judged = [
        "a red square on a gray background",  # colour, background
        "a blue square on a white background",  # all three
        "a green ring",  # colour, shape (partial caption: no background)
        "a calm landscape",
    ]  # nothing
    acc = attribute_accuracy(prompts, judged)
    assert acc == {"colour": 3 / 4, "shape": 2 / 4, "background": 2 / 4}


def test_first_reaching_finds_the_first_check_at_or_above_the_target():
    first_reaching = compare_parameterizations.first_reaching
    curve = [
        {"step": 50, "accuracy": 0.1, "seconds": 1.0},
        {"step": 100, "accuracy": 0.4, "seconds": 2.0},
        {"step": 150, "accuracy": 0.3, "seconds": 3.0},
        {"step": 200, "accuracy": 0.5, "seconds": 4.0},
    ]
    assert first_reaching(curve, 0.4)["step"] == 100  # reached exactly, not only exceeded
    assert first_reaching(curve, 0.45)["step"] == 200
    assert first_reaching(curve, 0.05)["step"] == 50
    assert first_reaching(curve, 0.6) is None


def test_the_hand_written_reference_step_agrees_with_the_built_ins():
    from benchmarks.common import paper_affine, tv_four_directions
    from clipforge import default_registry

    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    tv = default_registry().get("regularizer", "tv").cls
    assert torch.allclose(tv_four_directions(images), tv(tv.Options())(images), atol=1e-6)
    still = torch.tensor([[0.5, 0.5, 0.5, 0.6, 0.0]]).repeat(3, 1)  # no turn, no shift, scale 1, applied
    assert torch.allclose(paper_affine(images, still), images, atol=1e-5)
    skipped = torch.tensor([[0.9, 0.1, 0.9, 0.0, 0.7]]).repeat(3, 1)  # a big move, but not applied
    assert torch.equal(paper_affine(images, skipped), images)
    moved = torch.tensor([[0.9, 0.1, 0.9, 0.0, 0.1]]).repeat(3, 1)
    assert (paper_affine(images, moved) - images).abs().max() > 0.1


def test_marker_frequency_calibrates_and_compares_a_screen_reports_gratings(tmp_path, capsys, monkeypatch):
    import json

    from benchmarks import marker_frequency

    shares = {"a calm landscape": [0.05, 0.06, 0.07, 0.08], "a calm seascape": [0.01, 0.02, 0.03, 0.065]}
    report = {"analytic_grating": {p: {"shares": v} for p, v in shares.items()}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    monkeypatch.setattr("sys.argv", ["marker_frequency", str(tmp_path), "--calibrate", "--json"])
    marker_frequency.main()
    # 8 shares: the 95th percentile by nearest rank is the 8th (ceil(0.95 * 8) = 8), the largest
    assert json.loads(capsys.readouterr().out) == {"images": 8, "p95_nearest_rank": 0.08, "max": 0.08}
    assert marker_frequency.nearest_rank([float(i) for i in range(1, 49)], 0.95) == 46.0  # ceil(45.6)
    monkeypatch.setattr("sys.argv", ["marker_frequency", str(tmp_path), "--json"])
    marker_frequency.main()
    out = json.loads(capsys.readouterr().out)
    assert out["auc_first_above_second"] == (16 - 2) / 16  # of the 16 pairs, 0.065 beats 0.05 and 0.06
    (tmp_path / "report.json").write_text("{}")
    with pytest.raises(SystemExit, match="no analytic_grating"):
        marker_frequency.main()
