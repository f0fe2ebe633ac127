"""Exact values that planted variants got wrong while the rest of the suite passed: token layers laid
out by a reshape or counted by their length; the ``image`` objective's sign; a neuron's ``[y, x]`` and
its default centre; intervals printed as 95 % that are not; the compare report's margin interval; the
screen's "grating drawn" comparison and threshold. Each test names the broken variant it catches.

Token tensors and maps here are never square (tokens != width, height != width), so a reshape, a
transpose and a swapped index all give different numbers."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_backbone, tiny_spec_dict

import clipforge
from clipforge import (
    Backbone,
    Features,
    LayerError,
    Options,
    Row,
    RunSpec,
    captured,
    channel_count,
    channel_maps,
    image_tower,
)
from clipforge.analysis import bootstrap_interval, mean_interval, t_quantile, wilson_interval, with_ci
from clipforge.engine import make_rows
from clipforge.images import save_png
from clipforge.judge import Verdicts
from clipforge.toyworld import MARKER_GRATING_PRESENT, World, marker_grating_share
from clipforge_plugins.analysis_compare import Compare, CompareSpec, compare_results, compare_table
from clipforge_plugins.analysis_layer import channel_values
from clipforge_plugins.analysis_probe import share_summary
from clipforge_plugins.analysis_screen import Screen, ScreenSpec
from clipforge_plugins.objectives import (
    Activations,
    ActivationsOptions,
    Channel,
    ChannelOptions,
    Direction,
    DirectionOptions,
    Diversity,
    ImageEmbedding,
    ImageOptions,
    LayerOptions,
    Neuron,
    NeuronOptions,
)

CPU = torch.device("cpu")
BLOCK = "transformer.resblocks.1"  # a ViT block of toyworld-vit: 65 tokens of width 128
Z95 = 1.959964  # the normal quantile of a two-sided 95 % interval
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def vit() -> Backbone:
    return clipforge.load_backbone({"name": "open_clip", "options": {"model": "toyworld-vit"}}, CPU)


def two_images() -> tuple[RunSpec, list[Row]]:
    spec = clipforge.load_spec(tiny_spec_dict(prompts=["a"], seeds=[0, 1]))
    return spec, make_rows(spec)


def features(layer: str, activations: torch.Tensor, embeddings: torch.Tensor | None = None) -> Features:
    n = activations.shape[0]
    return Features(embeddings if embeddings is not None else torch.zeros(n, 8), {layer: activations}, torch.arange(n))


# --------------------------------------------------------------------------- token layers


def test_channel_maps_transposes_tokens_into_channels_it_does_not_reshape_them():
    """Catches channel_maps laying (N, L, C) tokens out with a reshape instead of a transpose."""
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)  # 5 tokens of width 3
    maps = channel_maps(tokens)
    assert maps.shape == (2, 3, 5)
    for b in range(2):
        for t in range(5):
            for c in range(3):
                assert maps[b, c, t] == tokens[b, t, c]
    conv = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)  # (N, C, H, W): H != W
    assert torch.equal(channel_maps(conv)[1, 2, 1 * 6 + 5], conv[1, 2, 1, 5])  # position y * W + x
    assert torch.equal(channel_maps(torch.tensor([[1.0, 2.0]])), torch.tensor([[[1.0], [2.0]]]))


def test_a_token_layer_has_as_many_channels_as_its_width_not_its_length():
    """Catches channel_count counting a token layer's channels by its length (tokens) instead of its width."""
    assert channel_count((65, 128)) == 128  # (L, C) tokens
    assert channel_count((128, 65)) == 65
    assert channel_count((8, 4, 6)) == 8  # (C, H, W) maps
    assert channel_count((7,)) == 7  # (C,) vectors


def test_layer_objectives_on_a_vit_block_equal_their_hand_computation(vit):
    """Catches a scrambled token layout or channel count in the channel, neuron, direction and diversity
    objectives on a real ViT block: each value is computed by hand from the raw hooked (N, L, C) output."""
    spec, rows = two_images()
    pixels = torch.rand((2, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), captured(image_tower(vit), [BLOCK]) as seen:
        vit.encode_image(pixels)
    raw = seen[BLOCK]  # (2, 65, 128): token t, feature c is raw[:, t, c]
    assert raw.shape == (2, 65, 128)
    feats = features(BLOCK, raw)

    channel = Channel(ChannelOptions(layer=BLOCK, channel=100), vit, rows, spec)  # 100: a width, not a length
    assert channel.channels == 128
    assert torch.allclose(channel(feats), raw[:, :, 100].mean(dim=1), atol=1e-6)
    with pytest.raises(LayerError, match="channel 128 is out of range.*128 channels"):
        Channel(ChannelOptions(layer=BLOCK, channel=128), vit, rows, spec)

    neuron = Neuron(NeuronOptions(layer=BLOCK, channel=100, position=[7]), vit, rows, spec)
    assert torch.equal(neuron(feats), raw[:, 7, 100])
    first = Neuron(NeuronOptions(layer=BLOCK, channel=3), vit, rows, spec)  # default: the class token
    assert torch.equal(first(feats), raw[:, 0, 3])
    with pytest.raises(LayerError, match=r"position \[65\]"):
        Neuron(NeuronOptions(layer=BLOCK, channel=3, position=[65]), vit, rows, spec)

    vector = torch.linspace(-1, 1, 128)
    direction = Direction(DirectionOptions(layer=BLOCK, vector=vector.tolist()), vit, rows, spec)
    want = F.cosine_similarity(raw, vector.view(1, 1, -1), dim=2).mean(dim=1)  # each token's vector, averaged
    assert torch.allclose(direction(feats), want, atol=1e-5)

    diversity = Diversity(LayerOptions(layer=BLOCK), vit, rows, spec)
    grams = [F.normalize((raw[i].T @ raw[i]).flatten() / 65, dim=0) for i in range(2)]  # (C, C) over tokens
    assert torch.allclose(diversity(feats), -(grams[0] @ grams[1]).expand(2), atol=1e-5)


def test_the_layer_analysis_reads_a_vit_blocks_channels_and_a_maps_centre_as_the_objectives_do(vit):
    """Catches the layer analysis's channel_values scrambling tokens, and its neuron centre disagreeing
    with the neuron objective's default (y, x) = (H // 2, W // 2)."""
    tokens = torch.randn((2, 65, 128), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(channel_values(tokens, "channel"), tokens.mean(dim=1), atol=1e-6)
    assert torch.equal(channel_values(tokens, "neuron"), tokens[:, 0, :])
    maps = torch.randn((2, 4, 7, 10), generator=torch.Generator().manual_seed(2))
    assert torch.equal(channel_values(maps, "neuron"), maps[:, :, 3, 5])
    spec, rows = two_images()
    conv1 = torch.randn((2, 128, 8, 8), generator=torch.Generator().manual_seed(3))
    neuron = Neuron(NeuronOptions(layer="conv1", channel=9), vit, rows, spec)  # toyworld-vit's 8 x 8 patch map
    assert torch.equal(neuron(features("conv1", conv1)), conv1[:, 9, 4, 4])
    assert torch.equal(channel_values(conv1, "neuron")[:, 9], conv1[:, 9, 4, 4])


# --------------------------------------------------------------------------- a neuron's position


class Transpose(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class ShapeTower(torch.nn.Module):
    """A 7 x 10 map of 4 channels (odd height, even width), and the same as 70 tokens of width 4."""

    def __init__(self) -> None:
        super().__init__()
        self.maps = torch.nn.Conv2d(3, 4, kernel_size=3)
        self.tokens = torch.nn.Sequential(torch.nn.Flatten(2), Transpose())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokens(self.maps(x)).mean(dim=1)


class ShapeBackbone(Backbone):
    name = "shape_net"
    input_size = (9, 12)

    def __init__(self, options: Options, device: torch.device) -> None:
        super().__init__(options, device)
        self.model = SimpleNamespace(visual=ShapeTower())

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.visual(pixels)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return torch.ones(len(texts), 4)


@pytest.fixture(scope="module")
def shapes() -> Backbone:
    backbone = ShapeBackbone(Options(), CPU)
    assert clipforge.layer_shape(backbone, "maps") == (4, 7, 10)
    return backbone


def test_a_neurons_position_is_y_then_x_on_a_map_that_is_not_square(shapes):
    """Catches a neuron's [y, x] swapped, or its rows counted by the height: [2, 7] reads x[:, c, 2, 7]."""
    spec, rows = two_images()
    maps = torch.randn((2, 4, 7, 10), generator=torch.Generator().manual_seed(4))
    neuron = Neuron(NeuronOptions(layer="maps", channel=1, position=[2, 7]), shapes, rows, spec)
    assert torch.equal(neuron(features("maps", maps)), maps[:, 1, 2, 7])
    corner = Neuron(NeuronOptions(layer="maps", channel=3, position=[6, 9]), shapes, rows, spec)
    assert torch.equal(corner(features("maps", maps)), maps[:, 3, 6, 9])
    with pytest.raises(LayerError, match=r"position \[9, 6\] is not in layer 'maps'.*y < 7, x < 10"):
        Neuron(NeuronOptions(layer="maps", channel=0, position=[9, 6]), shapes, rows, spec)


def test_a_neurons_default_centre_is_h_over_2_w_over_2_on_odd_and_even_sides(shapes):
    """Catches the neuron's default centre off by one on even maps: 7 x 10 -> [3, 5] (8 x 8 -> [4, 4]: above)."""
    spec, rows = two_images()
    maps = torch.randn((2, 4, 7, 10), generator=torch.Generator().manual_seed(5))
    centre = Neuron(NeuronOptions(layer="maps", channel=2), shapes, rows, spec)
    assert torch.equal(centre(features("maps", maps)), maps[:, 2, 3, 5])


def test_a_token_layer_of_a_small_model_counts_its_width(shapes):
    """Catches a token layer counted by its length (70 tokens) instead of its width (4 channels)."""
    spec, rows = two_images()
    assert clipforge.layer_shape(shapes, "tokens") == (70, 4)
    tokens = torch.randn((2, 70, 4), generator=torch.Generator().manual_seed(6))
    channel = Channel(ChannelOptions(layer="tokens", channel=3), shapes, rows, spec)
    assert channel.channels == 4
    assert torch.allclose(channel(features("tokens", tokens)), tokens[:, :, 3].mean(dim=1), atol=1e-6)
    with pytest.raises(LayerError, match="channel 4 is out of range"):
        Channel(ChannelOptions(layer="tokens", channel=4), shapes, rows, spec)


# --------------------------------------------------------------------------- the image objective


def test_the_image_objective_is_largest_at_its_target_image(vit, tmp_path):
    """Catches the ``image`` objective pursuing the opposite of its target (minus the cosine, or a distance)."""
    spec, rows = two_images()
    g = torch.Generator().manual_seed(7)
    target, other = torch.rand((3, 64, 64), generator=g), torch.zeros(3, 64, 64)
    other[0] = 0.9  # a plain red image
    save_png(target, tmp_path / "target.png")
    objective = ImageEmbedding(ImageOptions(image=str(tmp_path / "target.png")), vit, rows, spec)
    pixels = torch.stack([clipforge.read_image(tmp_path / "target.png", (64, 64)), other])
    with torch.no_grad():
        embeddings = F.normalize(vit.encode_image(pixels).float(), dim=-1)
    value, similarity = objective(Features(embeddings, {}, torch.arange(2)))
    assert value[0] == pytest.approx(1.0, abs=1e-5)  # the target itself: cosine 1, the largest there is
    assert value[1] < value[0] - 0.01
    assert torch.allclose(value, embeddings @ F.normalize(embeddings[0], dim=0), atol=1e-5)
    assert torch.equal(similarity, value)


def test_the_direction_and_activations_objectives_are_largest_at_their_target(vit, tmp_path):
    """Catches the neighbours of the ``image`` objective pursuing the opposite: a direction along an
    embedding is 1 there, and matching an image's activations is best (l2: 0, cosine: 1) at that image."""
    spec, rows = two_images()
    target, other = torch.rand((3, 64, 64), generator=torch.Generator().manual_seed(9)), torch.full((3, 64, 64), 0.3)
    save_png(target, tmp_path / "target.png")
    pixels = torch.stack([clipforge.read_image(tmp_path / "target.png", (64, 64)), other])
    with torch.no_grad(), captured(image_tower(vit), [BLOCK]) as seen:
        embeddings = F.normalize(vit.encode_image(pixels).float(), dim=-1)
    feats = Features(embeddings, {BLOCK: seen[BLOCK]}, torch.arange(2))
    direction = Direction(DirectionOptions(vector=embeddings[0].tolist()), vit, rows, spec)
    along = direction(feats)
    assert along[0] == pytest.approx(1.0, abs=1e-5) and along[1] < along[0] - 0.01
    image = str(tmp_path / "target.png")
    l2 = Activations(ActivationsOptions(layer=BLOCK, image=image), vit, rows, spec)(feats)
    assert l2[0] == pytest.approx(0.0, abs=1e-3) and l2[1] < -1.0  # minus a distance: best (0) at the image
    cosine = Activations(ActivationsOptions(layer=BLOCK, image=image, match="cosine"), vit, rows, spec)(feats)
    assert cosine[0] == pytest.approx(1.0, abs=1e-5) and cosine[1] < cosine[0] - 0.01


# --------------------------------------------------------------------------- intervals


def test_mean_interval_is_a_95_percent_t_interval():
    """Catches mean_interval's level at 68 % or 90 %, or a normal z (1.96) where n - 1 = 5 degrees of
    freedom need t = 2.5706 (the published table's value)."""
    values = [0.2, 0.5, 0.1, 0.9, 0.4, 0.3]
    mean, lo, hi = mean_interval(values)
    half = 2.5706 * statistics.stdev(values) / math.sqrt(len(values))
    assert (mean, lo, hi) == pytest.approx((statistics.fmean(values), mean - half, mean + half), abs=1e-4)


def test_t_quantile_matches_the_published_table():
    """Student's t, two-sided 95 % and 99 %, at df 1, 2, 4, 9, 29, 100, 1000 (any t table), both sides
    of the switch to the large-df expansion (200)."""
    table = {1: 12.706, 2: 4.303, 4: 2.776, 9: 2.262, 29: 2.045, 100: 1.984, 1000: 1.962}
    for df, t in table.items():
        assert t_quantile(0.95, df) == pytest.approx(t, abs=1e-3), df
    assert t_quantile(0.99, 4) == pytest.approx(4.604, abs=1e-3)
    assert t_quantile(0.99, 1000) == pytest.approx(2.581, abs=1e-3)
    assert t_quantile(0.95, 10**7) == pytest.approx(Z95, abs=1e-6)
    with pytest.raises(ValueError, match="df >= 1"):
        t_quantile(0.95, 0)


def test_mean_interval_covers_the_true_mean_95_percent_of_the_time_at_three_values():
    """The reason for t: with three seeds, a normal interval (z = 1.96) covers the true mean about 81 %
    of the time; the t interval 95 %. 4000 normal samples of three (seeded): the t interval's coverage
    lies within 0.94-0.96 (its binomial spread is 0.0035), far from 0.81."""
    draws = torch.randn(4000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64).tolist()
    covered = sum(lo <= 0 <= hi for _, lo, hi in (mean_interval(row) for row in draws))
    assert 0.94 <= covered / len(draws) <= 0.96


def test_wilson_interval_is_95_percent():
    """Catches wilson_interval's default z at 68 % or 90 %: 3 of 12, by the Wilson formula at z = 1.96."""
    p, n, z = 3 / 12, 12, Z95
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson_interval(3, 12) == pytest.approx((centre - half, centre + half), abs=1e-12)


def test_the_bootstrap_interval_covers_95_percent():
    """Catches bootstrap_interval's default level at 90 % or 68 %: on 400 values its bounds lie where a
    normal 95 % interval of the mean puts them (the two agree within a few % at this n)."""
    values = torch.randn(400, generator=torch.Generator().manual_seed(8), dtype=torch.float64).tolist()
    mean, lo, hi = bootstrap_interval(values)
    half = Z95 * statistics.pstdev(values) / math.sqrt(len(values))  # the sd of resampled means
    assert mean - lo == pytest.approx(half, rel=0.06) and hi - mean == pytest.approx(half, rel=0.06)
    assert bootstrap_interval(values, level=0.90)[1] > lo + 0.1 * half  # and the level is what it says


def test_the_probes_share_interval_is_the_95_percent_bootstrap():
    """Catches the probe's share interval at another level than the 95 % its report prints."""
    shares = [{"red": r, "blue": 1 - r} for r in (0.1, 0.4, 0.35, 0.9, 0.6, 0.2, 0.75, 0.5)]
    out = share_summary([*shares, None], ["red", "blue"])
    red = [s["red"] for s in shares]
    assert out["images_read"] == 8 and out["images_without"] == 1
    assert out["shares"]["red"]["ci95"] == list(bootstrap_interval(red, level=0.95)[1:])


# --------------------------------------------------------------------------- the compare report's margins


class StubJudge:
    """Verdicts by backbone: each backbone's images are filled with its number."""

    def __init__(self, verdicts: list[Verdicts]) -> None:
        self.verdicts = verdicts

    def judge(self, images: torch.Tensor, prompts: list[str]) -> Verdicts:
        return self.verdicts[int(images[0, 0, 0, 0])]


#: margins and similarities deliberately unrelated, so that an interval of one is never the other's
FIRST = Verdicts(
    top=[], correct=[True, True, False, True], margin=[0.10, -0.05, 0.20, 0.02], similarity=[0.30, 0.32, 0.31, 0.35]
)
SECOND = Verdicts(
    top=[], correct=[False, True, False, False], margin=[-0.10, 0.01, -0.30, 0.00], similarity=[0.25, 0.20, 0.28, 0.22]
)


def compare_stub() -> tuple[CompareSpec, dict, StubJudge]:
    spec = CompareSpec(
        prompts=["a cat", "a dog"],
        seeds=2,
        judge=tiny_backbone(1),
        backbones={"first": tiny_backbone(0), "second": tiny_backbone(2)},
    )
    rows = [SimpleNamespace(index=i, prompt_index=i // 2, seed=i % 2) for i in range(4)]
    results = {
        label: SimpleNamespace(
            rows=rows, images=torch.full((4, 3, 2, 2), float(i)), metrics=[{"similarity": [0.5] * 4}]
        )
        for i, label in enumerate(["first", "second"])
    }
    return spec, results, StubJudge([FIRST, SECOND])


def test_the_compare_reports_margin_intervals_are_the_margins(tmp_path):
    """Catches the compare report's margin intervals (per backbone, and the paired difference) computed
    from the similarity instead of the margin, or printed beside the wrong estimate."""
    spec, results, judge = compare_stub()
    summary, ranking, paired = compare_results(spec, results, judge)
    assert ranking == ["first", "second"]
    for label, v in (("first", FIRST), ("second", SECOND)):
        assert summary[label]["judge_margin"] == pytest.approx(statistics.fmean(v.margin))
        assert summary[label]["judge_margin_ci95"] == pytest.approx(list(mean_interval(v.margin)[1:]))
        assert summary[label]["judge_similarity_ci95"] == pytest.approx(list(mean_interval(v.similarity)[1:]))
    diffs = [x - y for x, y in zip(FIRST.margin, SECOND.margin)]
    (pair,) = paired
    assert pair["margin_difference"] == pytest.approx(statistics.fmean(diffs))
    half, diff = 3.1824 * statistics.stdev(diffs) / 2, pair["margin_difference"]  # four paired images: t at df 3
    assert pair["margin_difference_ci95"] == pytest.approx([diff - half, diff + half], abs=1e-4)

    report = {"results": summary, "ranking": ranking, "paired": paired, "rank_by": spec.rank_by}
    run = SimpleNamespace(results={f"backbones.{label}": r for label, r in results.items()})
    Compare(spec).write_report(report, run, tmp_path)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    s = summary["first"]
    row = f"| first | 4 | {with_ci(s['judge_similarity'], s['judge_similarity_ci95'], 3)} |"
    assert row in md and f"| {with_ci(s['judge_margin'], s['judge_margin_ci95'], 3)} |" in md
    assert f"| first > second | {with_ci(pair['margin_difference'], pair['margin_difference_ci95'], 3)} |" in md
    cells = [c._cells for c in compare_table(report).columns]
    assert cells[5][0].startswith(with_ci(pair["margin_difference"], pair["margin_difference_ci95"], 3))


# --------------------------------------------------------------------------- the screen's grating


def grating_images(shares: list[float]) -> torch.Tensor:
    """64 px images whose marker-grating share is exactly ``shares``: a cosine of period 8 px (in the
    marker's band) and one of period 32 px (outside it), powers in the given ratio."""
    x = torch.arange(64, dtype=torch.float64)
    images = []
    for share in shares:
        row = math.sqrt(share) * torch.cos(2 * math.pi * x / 8) + math.sqrt(1 - share) * torch.cos(2 * math.pi * x / 32)
        images.append((0.5 + 0.1 * row).expand(3, 64, 64))
    return torch.stack(images).float()


class StubText:
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return torch.arange(1.0, 1.0 + 4 * len(texts)).view(len(texts), 4)


def test_the_screen_counts_a_grating_drawn_strictly_above_its_threshold():
    """Catches the screen's 'grating drawn' comparison flipped, or its threshold ten times too high: shares
    just above the default threshold are drawn, just below (and at) it not."""
    above, below, at = 1.04 * MARKER_GRATING_PRESENT, 0.96 * MARKER_GRATING_PRESENT, MARKER_GRATING_PRESENT
    images = grating_images([above, above, below, at])
    assert marker_grating_share(images).tolist() == pytest.approx([above, above, below, at], abs=1e-6)
    marker = World.planted_captions()["marker"]
    spec = ScreenSpec(prompts=["p", "q"], concepts=[marker], seeds=2, judge=tiny_backbone(1), action="flag")
    assert spec.grating_threshold is None  # the reader's: the toy world's is MARKER_GRATING_PRESENT
    screen = Screen(spec)
    screen.screen = SimpleNamespace(
        report=lambda: {
            "flag_rates": {p: {"flagged": f, "images": 2, "rate": f / 2} for p, f in zip("pq", (1, 0))},
            "images": [],
        }
    )
    rows = [SimpleNamespace(index=i, prompt_index=i // 2, seed=i % 2) for i in range(4)]
    result = SimpleNamespace(images=images, rows=rows, device="cpu")
    backbone = SimpleNamespace(build=lambda device: StubText())
    run = SimpleNamespace(result=result, specs={"run": SimpleNamespace(components={"backbones": [backbone]})})
    report = screen.analyse(run)
    assert report["flag_rates"]["p"]["ci95"] == list(wilson_interval(1, 2))  # the learned screen's rate: 95 % too
    grating = report["analytic_grating"]
    assert (grating["p"]["drawn"], grating["q"]["drawn"]) == (2, 0)
    assert grating["p"]["ci95"] == list(wilson_interval(2, 2)) and grating["q"]["ci95"] == list(wilson_interval(0, 2))
    assert report["grating_threshold"] == MARKER_GRATING_PRESENT


def test_the_grating_threshold_is_the_calibrations_95th_percentile():
    """Catches the grating threshold ten times too high (or low): it is the 95th percentile (nearest rank)
    of the shares over the calibration report's 48 inversions of a prompt that never carries the marker."""
    report = json.loads((REPO / "zoo/examples/reports/screen_calibration/report.json").read_text())
    (calibration,) = report["analytic_grating"].values()
    shares = sorted(calibration["shares"])
    assert len(shares) == 48
    p95 = shares[math.ceil(0.95 * len(shares)) - 1]
    toyworld = clipforge.default_registry().build("reader", "toyworld", torch.device("cpu"))
    assert MARKER_GRATING_PRESENT == p95 == toyworld.marker_grating()[1]  # the screen's default, through its reader
