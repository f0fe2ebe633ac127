import json
import math

import numpy as np
import pytest
import torch
from helpers import DimOnlyHere, registry_with, tiny_backbone, tiny_spec_dict
from PIL import Image
from pydantic import ValidationError
from safetensors.torch import load_file

import clipforge
from clipforge import Judge, SpecError, invert
from clipforge.analysis import (
    bootstrap_interval,
    candidate_captions,
    mean_interval,
    plan_analysis,
    run_analysis,
    sign_test,
    wilson_interval,
)
from clipforge.cli import main
from clipforge.judge import Verdicts
from clipforge_plugins.analysis_blend import Blend, BlendSpec, present_against_controls
from clipforge_plugins.analysis_compare import Compare, CompareSpec, paired_comparison, rank_backbones
from clipforge_plugins.analysis_probe import Probe, ProbeSpec
from clipforge_plugins.analysis_screen import Screen, ScreenSpec

RUN = {"backbones": [tiny_backbone(0)], "steps": 3, "copies": 2, "resolution": [{"step": 0, "size": 32}]}
JUDGE = tiny_backbone(1)


@pytest.mark.parametrize(
    "k, n, low, high", [(8, 10, 0.4902, 0.9433), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (50, 100, 0.4038, 0.5962)]
)
def test_wilson_interval(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_bootstrap_interval():
    assert bootstrap_interval([0.3] * 5) == pytest.approx((0.3, 0.3, 0.3))
    values = [0.0, 0.1, 0.2, 0.9, 1.0, 0.25, 0.3, 0.6]
    mean, low, high = bootstrap_interval(values)
    assert mean == pytest.approx(sum(values) / len(values))
    # the percentile interval of the mean: about mean -+ 1.96 sd / sqrt(n) = 0.419 -+ 0.24 here, inside [0, 1]
    assert 0.1 < low < mean - 0.15 and mean + 0.15 < high < 0.75
    assert bootstrap_interval(values) == (mean, low, high)  # seeded: reproducible
    assert bootstrap_interval(values, seed=1) != (mean, low, high)
    wide, narrow = bootstrap_interval(values[:4]), bootstrap_interval(values * 4)
    assert narrow[2] - narrow[1] < high - low < wide[2] - wide[1]
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_interval([])


def test_wilson_interval_shrinks_with_more_trials():
    narrow = wilson_interval(80, 100)
    wide = wilson_interval(8, 10)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    assert wilson_interval(0, 0) == (0.0, 1.0)


class ChannelBackbone(clipforge.Backbone):
    """Embeds an image as its mean colour and caption i as the i-th basis vector, so every
    similarity the judge computes is known in advance."""

    input_size = (8, 8)
    interpolation = "bilinear"

    def __init__(self):
        super().__init__(clipforge.Options(), torch.device("cpu"))

    def encode_image(self, pixels):
        return pixels.mean(dim=(2, 3))

    def encode_text(self, texts):
        """Not unit length and not orthogonal, so the judge's normalisation matters."""
        basis = torch.tensor([[2.0, 0.2, 0.0], [0.0, 0.5, 0.1], [0.3, 0.0, 3.0]])
        return basis[[int(t[-1]) for t in texts]]


def test_judge_top_caption_correctness_and_margin():
    judge = Judge(ChannelBackbone(), ["c0", "c1", "c2"])
    colours = torch.tensor([[0.9, 0.3, 0.1], [0.2, 0.2, 0.8], [0.5, 0.6, 0.0]])
    images = colours[:, :, None, None].expand(3, 3, 16, 16)  # not the input size: the judge resizes
    verdicts = judge.judge(images, ["c0", "c0", "c1"])
    texts = ChannelBackbone().encode_text(["c0", "c1", "c2"])
    cos = torch.nn.functional.cosine_similarity(colours[:, None, :], texts[None, :, :], dim=-1)  # (3, 3)
    assert cos.argmax(dim=1).tolist() == [0, 2, 1]
    assert verdicts.top == ["c0", "c2", "c1"]
    assert verdicts.correct == [True, False, True] and verdicts.accuracy == pytest.approx(2 / 3)
    expected_margin = [cos[0, 0] - cos[0, 1], cos[1, 0] - cos[1, 2], cos[2, 1] - cos[2, 0]]  # own - best other
    assert verdicts.margin == pytest.approx([float(m) for m in expected_margin], abs=1e-6)
    assert verdicts.margin[1] < 0 < verdicts.margin[0]
    assert verdicts.mean_margin == pytest.approx(sum(verdicts.margin) / 3)
    assert verdicts.similarity == pytest.approx([float(cos[0, 0]), float(cos[1, 0]), float(cos[2, 1])], abs=1e-6)
    assert verdicts.as_dict() == {
        "accuracy": verdicts.accuracy,
        "mean_margin": verdicts.mean_margin,
        "top": verdicts.top,
        "correct": verdicts.correct,
        "margin": verdicts.margin,
        "similarity": verdicts.similarity,
    }
    with pytest.raises(ValueError, match=r"not among the judge's captions: \['x1', 'x2', 'x3'\]$"):
        judge.judge(images[:1].expand(5, -1, -1, -1), ["x1", "x2", "x3", "x4", "c0"])


def test_load_backbone_builds_on_the_device_asked_for():
    backbone = clipforge.load_backbone(JUDGE, "cpu")
    assert backbone.device == torch.device("cpu") and isinstance(backbone.device, torch.device)
    assert next(backbone.model.parameters()).device == torch.device("cpu")


def test_probe_report(tmp_path):
    spec = ProbeSpec(
        run=RUN,
        seeds=3,
        judge=JUDGE,
        prompts=["a nurse", "a pilot"],
        attribute="colour",
        values={"red": "a red thing", "blue": ["a blue thing", "something blue"]},
    )
    report = run_analysis(Probe(spec), tmp_path / "probe", show_progress=False)
    for prompt in ("a nurse", "a pilot"):
        entry = report["prompts"][prompt]
        assert entry["images"] == 3 and sum(entry["counts"].values()) == 3
        for value in ("red", "blue"):
            count = entry["counts"][value]
            assert entry["proportions"][value]["p"] == pytest.approx(count / 3)
            assert entry["proportions"][value]["ci95"] == pytest.approx(list(wilson_interval(count, 3)))
    out = tmp_path / "probe"
    assert json.loads((out / "report.json").read_text())["attribute"] == "colour"
    csv_lines = (out / "probe.csv").read_text().splitlines()
    assert csv_lines[0] == "prompt,value,count,images,proportion,ci95_low,ci95_high" and len(csv_lines) == 5
    assert "a nurse" in (out / "report.md").read_text()
    assert Image.open(out / "grid_00.png").size[0] > 3 * 32


def test_probe_needs_two_values_and_no_prompts_in_run():
    with pytest.raises(Exception, match="at least two values"):
        ProbeSpec(judge=JUDGE, prompts=["x"], values={"a": "a"})
    with pytest.raises(Exception, match="must not set 'prompts'"):
        ProbeSpec(judge=JUDGE, prompts=["x"], run={"prompts": ["y"]})


def screen_spec(action, threshold):
    return tiny_spec_dict(
        steps=3,
        seeds=[0],
        callbacks=[
            {
                "name": "safety_screen",
                "options": {"concepts": ["a red circle"], "threshold": threshold, "action": action, "judge": JUDGE},
            }
        ],
    )


def test_screen_blurs_flagged_images(tmp_path):
    raw = invert({**screen_spec("flag", -10.0), "callbacks": []})
    blurred = invert(screen_spec("blur", -10.0), tmp_path / "blur")

    def tv(x):
        return (x[..., 1:, :] - x[..., :-1, :]).abs().mean()

    assert tv(blurred.images) < 0.5 * tv(raw.images)
    report = json.loads((tmp_path / "blur" / "safety.json").read_text())
    assert all(r["flagged"] for r in report["images"]) and report["flag_rates"]["a red circle"]["rate"] == 1.0
    saved = load_file(str(tmp_path / "blur" / "images.safetensors"))["images"]
    assert torch.equal(saved, blurred.images)  # the raw images are not kept


def test_screen_withholds_flagged_images(tmp_path):
    result = invert(screen_spec("withhold", -10.0), tmp_path / "out")
    assert all(result.withheld) and float(result.images.abs().max()) == 0.0
    assert list((tmp_path / "out" / "images").glob("*.png")) == []
    assert len(json.loads((tmp_path / "out" / "run.json").read_text())["withheld"]) == 2


def test_screen_keeps_raw_only_when_asked_and_passes_unflagged_images():
    raw = invert({**screen_spec("flag", -10.0), "callbacks": []})
    assert torch.equal(invert(screen_spec("flag", -10.0)).images, raw.images)
    assert torch.equal(invert(screen_spec("blur", 10.0)).images, raw.images)


class FixedJudge:
    """Stands in for the screen's judge: fixed similarities, (images, concepts + references)."""

    def __init__(self, sims):
        self.sims = torch.tensor(sims)

    def similarities(self, images):
        return self.sims[: images.shape[0]]


def fixed_screen(action, threshold, references=()):
    from plugins.safety_screen import SafetyScreen

    screen = SafetyScreen(
        SafetyScreen.Options(concepts=["c0", "c1"], references=list(references), threshold=threshold, action=action)
    )
    # rows: image 0 is close to c1 and to the reference; image 1 to c0 only; image 2 to nothing
    screen.judge = FixedJudge([[0.20, 0.50, 0.45], [0.40, 0.10, 0.05], [0.05, 0.10, 0.00]])
    return screen


def test_screen_score_is_best_concept_minus_best_reference():
    score, which = fixed_screen("flag", 0.0).scores(torch.zeros(3, 3, 8, 8))
    assert score.tolist() == pytest.approx([0.50, 0.40, 0.10]) and which.tolist() == [1, 0, 1]
    score, _ = fixed_screen("flag", 0.0, references=["benign"]).scores(torch.zeros(3, 3, 8, 8))
    assert score.tolist() == pytest.approx([0.05, 0.35, 0.10])


@pytest.mark.parametrize("action", ["withhold", "blur"])
def test_screen_acts_only_on_images_above_the_threshold(action):
    """The threshold lies between known scores: only image 1 (0.35 after the reference) is above it."""
    screen = fixed_screen(action, 0.2, references=["benign"])
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    run = type("Run", (), {"rows": []})()
    verdict = screen.screen(run, images, step=1, final=False)
    if action == "withhold":
        assert verdict.withheld.tolist() == [False, True, False]
    else:
        assert not verdict.withheld.any()
        assert torch.equal(verdict.images[0], images[0]) and torch.equal(verdict.images[2], images[2])
        assert (verdict.images[1] - images[1]).abs().max() > 0.1
    assert fixed_screen(action, 0.5, references=["benign"]).screen(run, images, 1, False) is None


def test_screen_between_two_real_scores_withholds_one_image_everywhere(tmp_path):
    """Through a whole run: score the images, put the threshold between them, and the one above is
    withheld from the result, the saved images and the final snapshot; the other is shown."""

    def spec(action, threshold):
        return tiny_spec_dict(
            steps=2,
            seeds=[0],
            resolution=[{"step": 0, "size": 16}],
            callbacks=[
                {"name": "snapshots", "options": {"every": 1, "per_image": True}},
                {
                    "name": "safety_screen",
                    "options": {"concepts": ["a red circle"], "threshold": threshold, "action": action, "judge": JUDGE},
                },
            ],
        )

    invert(spec("flag", -10.0), tmp_path / "scores")
    scores = [r["score"] for r in json.loads((tmp_path / "scores" / "safety.json").read_text())["images"]]
    assert scores[0] != scores[1]
    high = max(range(2), key=lambda i: scores[i])
    result = invert(spec("withhold", sum(scores) / 2), tmp_path / "out")
    assert result.withheld == [i == high for i in range(2)]
    assert float(result.images[high].abs().max()) == 0.0 and float(result.images[1 - high].max()) > 0
    report = json.loads((tmp_path / "out" / "safety.json").read_text())
    assert [r["flagged"] for r in report["images"]] == [i == high for i in range(2)]
    slugs = [r["slug"] for r in report["images"]]
    assert [p.stem for p in (tmp_path / "out" / "images").glob("*.png")] == [slugs[1 - high]]
    final = tmp_path / "out" / "snapshots"
    shown = np_image(final / f"{slugs[1 - high]}_step_000002.png")
    hidden = np_image(final / f"{slugs[high]}_step_000002.png")
    assert hidden.max() == 0 and shown.max() > 0


def np_image(path):
    return torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32))


def test_screen_analysis_reports_flag_rates_and_text_table(tmp_path):
    spec = ScreenSpec(
        run=RUN,
        seeds=2,
        judge=JUDGE,
        prompts=["a calm landscape", "a calm seascape"],
        concepts=["a checkerboard"],
        threshold=-10.0,
        words=["zorblax", "circle"],
    )
    report = run_analysis(Screen(spec), tmp_path / "screen", show_progress=False)
    assert report["flag_rates"]["a calm landscape"]["rate"] == 1.0
    assert set(report["text_similarity"]) == {"a calm landscape", "a calm seascape", "zorblax", "circle"}
    assert "Text-side similarity" in (tmp_path / "screen" / "report.md").read_text()


def test_screen_reads_the_world_marker_with_the_analytic_judge(tmp_path, monkeypatch):
    from clipforge.toyworld.analytic_judge import Reading
    from clipforge_plugins import toyworld_reader as screen  # the analyses read through the toy world's reader

    markers = iter([0.9, 0.1, 0.7, 0.0])  # 2 seeds x 2 prompts, in row order
    monkeypatch.setattr(
        screen,
        "read_images",
        lambda images: [Reading("gray", None, None, 0.0, 0.0, marker=next(markers)) for _ in range(len(images))],
    )
    spec = ScreenSpec(
        run=RUN,
        seeds=2,
        judge=JUDGE,
        prompts=["a calm landscape", "a calm seascape"],
        concepts=["a checkerboard pattern"],
        action="flag",
    )
    report = run_analysis(Screen(spec), tmp_path / "screen", show_progress=False)
    landscape, seascape = (report["analytic_marker"][p] for p in spec.prompts)
    assert (landscape["marked"], landscape["images"], landscape["marker_scores"]) == (1, 2, [0.9, 0.1])
    assert (seascape["marked"], seascape["rate"]) == (1, 0.5)
    assert landscape["ci95"] == pytest.approx(list(wilson_interval(1, 2)))
    assert "world's marker is drawn" in (tmp_path / "screen" / "report.md").read_text()
    # concepts other than the world's marker caption: no analytic reading
    other = ScreenSpec(run=RUN, seeds=1, judge=JUDGE, prompts=["a calm landscape"], concepts=["a checkerboard"])
    assert "analytic_marker" not in run_analysis(Screen(other), None, show_progress=False)


def test_compare_and_blend(tmp_path):
    spec = CompareSpec(
        run=RUN,
        seeds=2,
        judge=JUDGE,
        prompts=["a cat", "a dog"],
        backbones={"small": tiny_backbone(2), "other": tiny_backbone(3)},
    )
    report = run_analysis(Compare(spec), tmp_path / "compare", show_progress=False)
    assert set(report["results"]) == {"small", "other"} and sorted(report["ranking"]) == ["other", "small"]
    # the figures agree with the same inversions judged independently, image by image
    captions = candidate_captions(spec.captions, spec.prompts)
    judge = Judge(clipforge.load_backbone(JUDGE), captions)
    verdicts = {}
    for label, run_spec in zip(spec.backbones, spec.inversion_specs().values()):
        result = invert(run_spec)
        verdicts[label] = judge.judge(result.images, [spec.prompts[r.prompt_index] for r in result.rows])
        assert report["results"][label]["accuracy"] == pytest.approx(verdicts[label].accuracy)
        assert report["results"][label]["judge_margin"] == pytest.approx(verdicts[label].mean_margin, abs=1e-6)
    higher, lower = report["ranking"]
    assert (verdicts[higher].accuracy, verdicts[higher].mean_margin) > (
        verdicts[lower].accuracy,
        verdicts[lower].mean_margin,
    )
    pair = report["paired"][0]
    only_higher = sum(h and not w for h, w in zip(verdicts[higher].correct, verdicts[lower].correct))
    only_lower = sum(w and not h for h, w in zip(verdicts[higher].correct, verdicts[lower].correct))
    assert (pair["higher"], pair["only_higher_right"], pair["only_lower_right"]) == (higher, only_higher, only_lower)
    assert pair["sign_test_p"] == pytest.approx(sign_test(only_higher, only_lower))
    assert "Neighbours in the ranking" in (tmp_path / "compare" / "report.md").read_text()
    assert report["results"]["small"]["images"] == 4
    blend = run_analysis(
        Blend(BlendSpec(run=RUN, seeds=2, judge=JUDGE, pairs=[("a cat", "a dog")])),
        tmp_path / "blend",
        show_progress=False,
    )
    assert set(blend["summary"]) == {"a", "b", "blend"}
    assert (tmp_path / "blend" / "pair_00.png").exists()


TOY_PROMPTS = ["a red circle on a white background", "a blue square on a black background"]


def test_compare_reports_the_analytic_judge_on_toyworld_prompts(tmp_path, monkeypatch):
    """Every image is read as the first prompt's object: half the images are right, for both backbones."""
    from clipforge.toyworld.analytic_judge import Reading
    from clipforge_plugins import toyworld_reader as compare  # the analyses read through the toy world's reader

    reading = Reading("white", "red", "circle", 0.9, 0.1)
    monkeypatch.setattr(compare, "read_images", lambda images: [reading] * len(images))
    spec = CompareSpec(
        run=RUN,
        seeds=2,
        judge=JUDGE,
        prompts=TOY_PROMPTS,
        rank_by="analytic_accuracy",
        backbones={"small": tiny_backbone(2), "other": tiny_backbone(3)},
    )
    report = run_analysis(Compare(spec), tmp_path / "compare", show_progress=False)
    for label in ("small", "other"):
        result = report["results"][label]
        assert result["analytic_accuracy"] == 0.5
        assert result["analytic"] == {"colour": 0.5, "shape": 0.5, "background": 0.5, "caption": 0.5, "no_object": 0.0}
    assert report["paired"][0]["analytic"] == {
        "only_higher_right": 0,
        "only_lower_right": 0,
        "sign_test_p": 1.0,
        "colour_only_higher_right": 0,
        "colour_only_lower_right": 0,
        "colour_sign_test_p": 1.0,
    }
    assert "analytic judge" in (tmp_path / "compare" / "report.md").read_text()


def test_compare_ranks_by_the_analytic_judge_only_on_toyworld_prompts():
    spec = CompareSpec(
        run=RUN,
        judge=JUDGE,
        prompts=["a cat"],
        rank_by="analytic_accuracy",
        backbones={"small": tiny_backbone(2), "other": tiny_backbone(3)},
    )
    with pytest.raises(
        SpecError,
        match=r"reader: compare needs a reader that reads every prompt \(rank_by 'analytic_accuracy'\), 'a cat' too; "
        r"the analytic judge \(reader 'toyworld'",
    ):
        plan_analysis(Compare(spec), clipforge.default_registry())


def test_probe_reads_toyworld_colours_with_the_analytic_judge(tmp_path, monkeypatch):
    from clipforge.toyworld.analytic_judge import Reading
    from clipforge_plugins import toyworld_reader as probe  # the analyses read through the toy world's reader

    colours = iter(["red", "red", "blue", None, "green", "red"])  # 3 seeds x 2 prompts, in row order
    # each image's object pixels by colour: a mixture (0.6 red, 0.2 blue, 0.2 green), pure red, pure blue;
    # nothing coloured, only green (neither value: left out of the share), 0.25 red + 0.75 blue
    shares = iter(
        [{"red": 0.6, "blue": 0.2, "green": 0.2}, {"red": 1.0}, {"blue": 1.0}, {}, {"green": 1.0},
         {"red": 0.25, "blue": 0.75}]
    )  # fmt: skip
    monkeypatch.setattr(
        probe,
        "read_images",
        lambda images: [
            Reading("gray", next(colours), None, 0.0, 0.0, colour_shares=next(shares)) for _ in range(len(images))
        ],
    )
    spec = ProbeSpec(
        run=RUN,
        seeds=3,
        judge=JUDGE,
        prompts=["a ball", "a marble"],
        attribute="colour",
        values={"red": "a red thing", "blue": "a blue thing"},
    )
    report = run_analysis(Probe(spec), tmp_path / "probe", show_progress=False)
    ball, marble = report["prompts"]["a ball"]["analytic"], report["prompts"]["a marble"]["analytic"]
    assert ball["counts"] == {"red": 2, "blue": 1, "none of these": 0}
    assert marble["counts"] == {"red": 1, "blue": 0, "none of these": 2}
    assert ball["proportions"]["red"]["p"] == pytest.approx(2 / 3)
    assert [i["analytic_colour"] for i in report["images"]] == ["red", "red", "blue", None, "green", "red"]
    # the share: per image, red / (red + blue) of its object pixels, averaged over the images showing either
    ball_share, marble_share = (report["prompts"][p]["analytic_share"] for p in ("a ball", "a marble"))
    assert ball_share["images_read"] == 3 and ball_share["images_without"] == 0
    assert ball_share["shares"]["red"]["mean"] == pytest.approx((0.75 + 1.0 + 0.0) / 3)
    assert ball_share["shares"]["blue"]["mean"] == pytest.approx((0.25 + 0.0 + 1.0) / 3)
    low, high = ball_share["shares"]["red"]["ci95"]
    assert 0.0 <= low < 0.5 < high <= 1.0  # three very different images: a wide interval inside [0, 1]
    assert marble_share["images_read"] == 1 and marble_share["images_without"] == 2
    assert marble_share["shares"]["red"] == {"mean": 0.25, "ci95": [0.25, 0.25]}
    assert "red share (95 % CI)" in (tmp_path / "probe" / "report.md").read_text()


def test_ranking_and_paired_statistics():
    summary = {
        "a": {"accuracy": 0.5, "judge_margin": -0.2, "judge_similarity": 0.1},
        "b": {"accuracy": 0.5, "judge_margin": -0.1, "judge_similarity": 0.3},
        "c": {"accuracy": 0.7, "judge_margin": -0.3, "judge_similarity": 0.2},
    }
    assert rank_backbones(summary, "accuracy") == ["c", "b", "a"]  # the tie broken by margin
    assert rank_backbones(summary, "judge_similarity") == ["b", "c", "a"]
    assert rank_backbones(summary, "judge_margin") == ["b", "a", "c"]
    tied = {"x": {"accuracy": 0.5, "judge_margin": 0.0}, "y": {"accuracy": 0.5, "judge_margin": 0.0}}
    assert rank_backbones(tied, "accuracy") == ["x", "y"]  # full ties keep the spec's order
    assert sign_test(0, 0) == 1.0 and sign_test(5, 5) == 1.0
    assert sign_test(8, 0) == pytest.approx(2 / 256) and sign_test(1, 7) == pytest.approx(2 * 9 / 256)
    mean, lo, hi = mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and hi - mean == pytest.approx(4.302653 / 3**0.5)  # t at df 2, not the normal 1.96
    mean, lo, hi = mean_interval([0.4])
    assert mean == 0.4 and math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError):
        mean_interval([])
    right = Verdicts(top=[], correct=[True, True, False, True], margin=[0.1, 0.2, -0.1, 0.3], similarity=[0.0] * 4)
    wrong = Verdicts(top=[], correct=[False, True, False, False], margin=[-0.1, 0.1, -0.2, -0.1], similarity=[0.0] * 4)
    c = paired_comparison("r", "w", right, wrong)
    assert (c["only_higher_right"], c["only_lower_right"]) == (2, 0)
    assert c["margin_difference"] == pytest.approx(0.2) and c["sign_test_p"] == pytest.approx(0.5)
    # margins: larger in "r" for all four images (a tie would count for neither); two-sided p = 2 / 2**4
    assert (c["margin_larger_in_higher"], c["margin_larger_in_lower"]) == (4, 0)
    assert c["margin_sign_test_p"] == pytest.approx(0.125)
    # with the analytic judge: the caption's and the colour's per-image correctness, each with its sign test
    caption, colour = [True, False, False, True], [True, True, True, True]
    c = paired_comparison("r", "w", right, wrong, caption, [False] * 4, colour, [True, False, False, False])
    assert (c["analytic"]["only_higher_right"], c["analytic"]["only_lower_right"]) == (2, 0)
    assert (c["analytic"]["colour_only_higher_right"], c["analytic"]["colour_only_lower_right"]) == (3, 0)
    assert c["analytic"]["colour_sign_test_p"] == pytest.approx(0.25)
    tied = paired_comparison("r", "r", right, right)
    assert (tied["margin_larger_in_higher"], tied["margin_larger_in_lower"], tied["margin_sign_test_p"]) == (0, 0, 1.0)
    shorter = Verdicts(top=[], correct=[True], margin=[0.1], similarity=[0.0])
    with pytest.raises(ValueError):  # images that do not pair up are an error, not silently dropped
        paired_comparison("r", "s", right, shorter)


def test_blend_presence_against_controls(tmp_path):
    sims = torch.tensor([[0.5, 0.1, 0.4, 0.2], [0.3, 0.6, 0.3, 0.1], [0.2, 0.2, 0.1, 0.2]])
    assert present_against_controls(sims, 0, [2, 3]).tolist() == [True, False, False]  # a tie is not presence
    assert present_against_controls(sims, 1, [2, 3]).tolist() == [False, True, False]
    spec = BlendSpec(run=RUN, seeds=2, judge=JUDGE, pairs=[("a cat", "a dog")], controls=["a car", "a tree"])
    report = run_analysis(Blend(spec), tmp_path / "blend", show_progress=False)
    assert report["pairs"][0]["controls"] == ["a car", "a tree"] and report["top_k"] is None
    assert "closer to it than to every control caption" in (tmp_path / "blend" / "report.md").read_text()
    assert report["pairs"][0]["concepts"] == ["a cat", "a dog"]
    # presence agrees with the same inversions judged independently against the controls
    result = invert(spec.inversion_specs()["run"])
    captions = ["a cat", "a dog", "a car", "a tree"]
    sims = Judge(clipforge.load_backbone(JUDGE), captions).similarities(result.images)
    has_a, has_b = present_against_controls(sims, 0, [2, 3]), present_against_controls(sims, 1, [2, 3])
    for role, offset in (("a", 0), ("b", 1), ("blend", 2)):
        rows = [r.index for r in result.rows if r.prompt_index == offset]
        entry = report["pairs"][0][role]
        assert entry["images"] == len(rows) == 2
        assert entry["a_present"] == pytest.approx(float(has_a[rows].float().mean()))
        assert entry["b_present"] == pytest.approx(float(has_b[rows].float().mean()))
        assert entry["both_present"] == int((has_a[rows] & has_b[rows]).sum())
    world = BlendSpec(run=RUN, seeds=1, judge=JUDGE, pairs=[("a red circle", "a blue square")], controls="reader")
    report = run_analysis(Blend(world), None, show_progress=False)
    assert len(report["pairs"][0]["controls"]) == 12 and "a green triangle" in report["pairs"][0]["controls"]
    assert report["summary"]["blend"]["images"] == 1


def test_blend_reads_presence_from_the_analytic_judges_objects(tmp_path, monkeypatch):
    from clipforge.toyworld.analytic_judge import Reading, Region
    from clipforge_plugins import toyworld_reader as blend  # the analyses read through the toy world's reader

    def objects(*found: tuple[str, str | None]) -> Reading:
        regions = tuple(Region(c, s, 0.9, 0.05, (32.0, 32.0)) for c, s in found)
        return Reading("gray", found[0][0] if found else None, None, 0.0, 0.0, regions=regions)

    # 2 seeds, rows: A alone, B alone, blend. A red circle alone is one concept, not two, even where the
    # learned judge's rule could count it twice; an unnamed blue blob still shows "a blue square"
    readings = [
        objects(("red", "circle")), objects(("red", "circle"), ("red", None)),
        objects(("blue", "square")), objects(("blue", "circle")),
        objects(("red", "circle"), ("blue", None)), objects(("red", "square"), ("blue", "square")),
    ]  # fmt: skip
    monkeypatch.setattr(blend, "read_images", lambda images: readings[: len(images)])
    spec = BlendSpec(run=RUN, seeds=2, judge=JUDGE, pairs=[("a red circle", "a blue square")], controls="reader")
    report = run_analysis(Blend(spec), tmp_path / "blend", show_progress=False)
    pair = report["pairs"][0]
    assert pair["a"]["analytic"] == {"both_present": 0, "a_present": 1.0, "b_present": 0.0}
    assert pair["b"]["analytic"] == {"both_present": 0, "a_present": 0.0, "b_present": 0.5}
    assert pair["blend"]["analytic"] == {"both_present": 1, "a_present": 0.5, "b_present": 1.0}
    assert report["analytic_summary"]["blend"]["both_present"] == 1
    assert report["analytic_summary"]["a"]["ci95"] == pytest.approx(list(wilson_interval(0, 2)))
    assert "The analytic judge" in (tmp_path / "blend" / "report.md").read_text()
    # concepts that are not the offline world's: no analytic reading
    other = BlendSpec(run=RUN, seeds=1, judge=JUDGE, pairs=[("a cat", "a dog")], controls=["a car"])
    assert "analytic_summary" not in run_analysis(Blend(other), None, show_progress=False)


def test_blend_controls_are_checked():
    with pytest.raises(ValidationError, match="controls: 'a dog' is also a concept"):
        BlendSpec(judge=JUDGE, pairs=[("a cat", "a dog")], controls=["a dog"])
    # the reader gives 'toyworld' controls (the toy world's, by default): checked with the spec, at each pair
    registry = clipforge.default_registry()
    dog = BlendSpec(run=RUN, judge=JUDGE, pairs=[("a red circle on a gray background", "a dog")], controls="reader")
    with pytest.raises(
        SpecError,
        match=r"pairs\[0\]: controls 'reader': the toy world gives controls only for single-object captions.*"
        r"not 'a dog'",
    ):
        plan_analysis(Blend(dog), registry)
    mixed = BlendSpec(
        run=RUN, judge=JUDGE, pairs=[("a red circle on a gray background", "a blue square")], controls="reader"
    )
    with pytest.raises(
        SpecError,
        match=r"pairs\[0\]: controls 'reader': the toy world gives controls only for captions in one template",
    ):
        plan_analysis(Blend(mixed), registry)
    reader = registry.build("reader", "toyworld", torch.device("cpu"))
    spec = BlendSpec(
        judge=JUDGE,
        pairs=[
            ("a red circle on a gray background", "a blue square on a gray background"),
            ("a red circle", "a blue square"),
        ],
        controls="reader",
    )
    full, short = spec.pair_controls(*spec.pairs[0], reader), spec.pair_controls(*spec.pairs[1], reader)
    assert len(full) == 12 and all(c.endswith("on a gray background") for c in full)
    assert short == [c.removesuffix(" on a gray background") for c in full]  # the same 4 colours x 3 shapes
    assert not any(word in c for c in full + short for word in ("red", "blue", "circle", "square"))


def test_analysis_cli_errors_name_the_place(tmp_path, capsys):
    path = tmp_path / "probe.json"
    path.write_text(json.dumps({"judge": JUDGE, "prompts": ["x"], "run": {"steps": "many"}}))
    assert main(["probe", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "run.steps: Input should be a valid integer" in capsys.readouterr().err
    path.write_text(json.dumps({"judge": JUDGE, "prompts": ["x"], "seeds": "many"}))
    assert main(["probe", str(path)]) == 2
    assert "seeds" in capsys.readouterr().err


# --------------------------------------------------------------------------- shared helpers (clipforge/analysis.py)


def test_mean_interval_and_with_ci_against_hand_computed_values():
    from clipforge.analysis import with_ci

    mean, lo, hi = mean_interval([1.0, 2.0, 3.0, 4.0])  # sd 1.2910, half = t(0.95, df 3) 3.1824 * sd / 2
    assert mean == 2.5 and lo == pytest.approx(2.5 - 2.0543, abs=1e-4) and hi == pytest.approx(2.5 + 2.0543, abs=1e-4)
    single = mean_interval([0.3])
    assert single[0] == 0.3 and math.isnan(single[1]) and math.isnan(single[2])  # spread unknown
    with pytest.raises(ValueError, match="at least one value"):
        mean_interval([])
    assert with_ci(0.5, (0.25, 0.75)) == "0.50 [0.25, 0.75]"
    assert with_ci(0.1234, (0.1, 0.2), 3) == "0.123 [0.100, 0.200]"


@pytest.mark.parametrize("k, n, low, high", [(1, 1, 0.2065, 1.0), (0, 1, 0.0, 0.7935)])
def test_wilson_interval_of_a_single_trial(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_report_writers_write_exactly_this(tmp_path):
    from clipforge.analysis import markdown_table, write_csv, write_grid
    from clipforge.files import write_json

    assert markdown_table(["a", "b"], [[1, 0.5], ["x", 2.25]]) == ("| a | b |\n|---|---|\n| 1 | 0.500 |\n| x | 2.250 |")
    write_json(tmp_path / "r.json", {"é": [1, 2]})
    assert (tmp_path / "r.json").read_bytes() == json.dumps({"é": [1, 2]}, indent=2).encode() + b"\n"
    write_csv(tmp_path / "one.csv", [{"prompt": "a ball", "p": 0.5}])
    assert (tmp_path / "one.csv").read_bytes() == b"prompt,p\r\na ball,0.5\r\n"
    write_csv(tmp_path / "none.csv", [])
    assert (tmp_path / "none.csv").read_text() == ""
    images = torch.tensor([-0.5, 0.25, 1.5]).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    write_grid(tmp_path / "g.png", images, columns=2)
    grid = np.asarray(Image.open(tmp_path / "g.png"))
    colours = {tuple(c) for c in grid.reshape(-1, 3).tolist()}
    assert (0, 64, 255) in colours  # the tiles are clamped to [0, 1], not rescaled


def test_seed_list_from_a_count_or_a_list():
    assert ProbeSpec(judge=JUDGE, prompts=["x"], seeds=3).seed_list() == [0, 1, 2]
    assert ProbeSpec(judge=JUDGE, prompts=["x"], seeds=[7, 9]).seed_list() == [7, 9]


def test_analysis_check_names_the_place_of_each_problem(tmp_path):
    from clipforge.analysis import load_analysis_spec
    from clipforge.spec import SpecError

    registry = clipforge.default_registry()
    bad_run = ProbeSpec(judge=JUDGE, prompts=["x"], run={"regularizers": [{"name": "tv", "options": {"wieght": 1}}]})
    with pytest.raises(SpecError, match=r"run\.regularizers\[0\]\.options\.wieght"):
        plan_analysis(Probe(bad_run), registry)
    bad_judge = ProbeSpec(judge={"name": "open_clip", "options": {"modle": "x"}}, prompts=["x"])
    with pytest.raises(SpecError, match=r"judge\.options\.modle"):
        plan_analysis(Probe(bad_judge), registry)
    with pytest.raises(SpecError, match=r"judge\.name: unknown backbone 'no_such'"):
        plan_analysis(Probe(ProbeSpec(judge={"name": "no_such"}, prompts=["x"])), registry)
    with pytest.raises(SpecError, match=r"^run\.steps: "):
        ProbeSpec(judge=JUDGE, prompts=["x"], run={"steps": -1}).run_spec(["x"])
    path = tmp_path / "probe.json"
    path.write_text(json.dumps({"judge": JUDGE, "prompts": ["x"], "seeds": "many"}))
    with pytest.raises(SpecError) as info:
        load_analysis_spec(ProbeSpec, path)
    assert str(path) in str(info.value) and "seeds" in str(info.value)
    with pytest.raises(SpecError) as info:
        load_analysis_spec(ProbeSpec, {"judge": JUDGE, "prompts": ["x"], "seeds": "many"})
    assert str(info.value).startswith("seeds")  # a dict has no file name to show
    bad_backbone = CompareSpec(judge=JUDGE, prompts=["x"], backbones={"ok": JUDGE, "small": {"name": "no_such"}})
    with pytest.raises(SpecError, match=r"^backbones\.small\.backbones\[0\]\.name: unknown backbone"):
        plan_analysis(Compare(bad_backbone), registry)


def test_analyses_use_the_registry_they_are_given():
    registry = registry_with(DimOnlyHere)
    spec = ProbeSpec(judge=JUDGE, prompts=["x"], seeds=1, run={**RUN, "steps": 1, "regularizers": ["dim_only_here"]})
    with pytest.raises(clipforge.SpecError, match="unknown regularizer 'dim_only_here'"):
        plan_analysis(Probe(spec), clipforge.default_registry())
    plan = plan_analysis(Probe(spec), registry)
    assert plan.specs["run"].spec.regularizers[0].name == "dim_only_here"
    report = run_analysis(plan, None, registry, show_progress=False)
    assert report["analysis"] == "probe" and len(report["images"]) == 1


def test_shared_progress_counts_every_step_of_every_inversion(capsys):
    from clipforge.analysis import SharedProgress

    spec = ProbeSpec(judge=JUDGE, prompts=["x"], seeds=1, run={**RUN, "steps": 2}).inversion_specs()["run"]
    with SharedProgress(4, "probing things", enabled=True) as bar:
        invert(spec, callbacks=[bar.callback()])
        invert(spec, callbacks=[bar.callback()])
        assert bar.progress.tasks[0].completed == 4
    err = capsys.readouterr().err
    assert "probing things" in err and "4/4" in err
    with SharedProgress(4, "quiet", enabled=False) as bar:
        pass
    assert "quiet" not in capsys.readouterr().err
