"""The contracts every registered component keeps, checked for each component of each kind that is
installed: clipforge's built-in ones and any third-party plugin's (install clipforge-extras and its
components are checked here too). Parameterisations have their own contract tests in
test_parameterizations.py. Then one test per hook (``test_hook_<hook name>``): a fake component
registered through that hook is found and works in a run.

A component whose Options has required fields needs minimal values in ``REQUIRED_OPTIONS``; one
whose defaults do nothing (say, an augmentation that is the identity until told otherwise) can get
options that make it act in ``ACTIVE_OPTIONS``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from helpers import TINY_CONFIG, registry_with, tiny_spec_dict
from pydantic import Field, ValidationError

import clipforge
from clipforge import (
    Analysis,
    AnalysisRun,
    AnalysisSpec,
    Augmentation,
    AugmentContext,
    Backbone,
    Callback,
    Features,
    InversionResult,
    Options,
    Parameterization,
    Regularizer,
    Row,
    RunInfo,
    Screened,
    StepState,
    draw_per_image,
    invert,
    load_spec,
)

CPU = torch.device("cpu")
REGISTRY = clipforge.default_registry()
MODEL_SIZE = (24, 24)  # the backbone input size augmentations are told about (images are 16 x 16)
COPIES = 3

# Minimal values for Options with required fields, by (kind, name).
# Analyses' specs always name what to invert and the judge: an analysis not listed here (a third
# party's, say) is given a judge and prompts, which is all that most need.
_JUDGE = {"name": "open_clip", "options": {"config": TINY_CONFIG}}
ANALYSIS_DEFAULT = {"judge": _JUDGE, "prompts": ["a cat"]}
REQUIRED_OPTIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("analysis", "screen"): {"judge": _JUDGE, "prompts": ["a cat"], "concepts": ["a dog"]},
    ("analysis", "compare"): {"judge": _JUDGE, "prompts": ["a cat"], "backbones": {"a": _JUDGE, "b": _JUDGE}},
    ("analysis", "blend"): {"judge": _JUDGE, "pairs": [["a cat", "a dog"]]},
    ("analysis", "layer"): {"judge": _JUDGE, "layer": "conv1", "run": {"backbones": [_JUDGE]}},
    # the tiny model's layers: conv1 (32 x 4 x 4 maps), transformer.resblocks.0 (17 tokens x 32)
    ("objective", "channel"): {"layer": "conv1", "channel": 3},
    ("objective", "neuron"): {"layer": "transformer.resblocks.0", "channel": 3},
    ("objective", "diversity"): {"layer": "conv1"},
    ("objective", "activation_norm"): {"layer": "transformer.resblocks.0"},  # clipforge-extras' objective
    ("objective", "direction"): {"text": "red", "minus": "blue"},
    ("objective", "image"): {
        "image": str(Path(__file__).resolve().parent.parent / "docs" / "images" / "gallery_quickstart.png")
    },
    ("objective", "layer"): {"layer": "conv1"},
    ("objective", "activations"): {
        "layer": "conv1",
        "image": str(Path(__file__).resolve().parent.parent / "docs" / "images" / "gallery_quickstart.png"),
    },
    ("objective", "interpolate"): {"layer": "conv1", "channel": 3, "channel2": 7},
    # not 'alignment': it compares neighbouring frames, and the contract's run has one prompt (no neighbour)
    ("augmentation", "pad"): {"pixels": 2},
}
# Options that make a component act, for the behaviour tests (defaults otherwise).
ACTIVE_OPTIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("augmentation", "color_shift"): {"mean": 0.1, "std": 0.1},
    ("augmentation", "jitter"): {"limit": 4},
    ("regularizer", "l1"): {"weight": 1.0},
    ("backbone", "open_clip"): {"config": TINY_CONFIG},
}
# Augmentations whose output size is not their input's: the size they must produce.
RESIZING = {"resize": lambda ctx: tuple(ctx.model_size), "pad": lambda ctx: (20, 20)}
# Known gaps in built-in components (expected failures until the team fixes them).
UNDESCRIBED_OPTIONS: dict[tuple[str, str], str] = {}


def every(kind: str | None = None, known_failures: dict[tuple[str, str], str] | None = None) -> list[Any]:
    """Test parameters: every registered component of ``kind`` (or of every kind), as (kind, name)."""
    params = []
    for entry in REGISTRY.all():
        if kind is not None and entry.kind != kind:
            continue
        reason = (known_failures or {}).get((entry.kind, entry.name))
        marks = [pytest.mark.xfail(reason=reason, strict=False)] if reason else []
        params.append(pytest.param(entry.kind, entry.name, id=f"{entry.kind}:{entry.name}", marks=marks))
    return params


def component_class(kind: str, name: str) -> type:
    return REGISTRY.get(kind, name).cls


def required_options(kind: str, name: str) -> dict[str, Any]:
    return REQUIRED_OPTIONS.get((kind, name), ANALYSIS_DEFAULT if kind == "analysis" else {})


def minimal_options(kind: str, name: str) -> Options:
    cls = component_class(kind, name)
    given = required_options(kind, name)
    required = [f for f, info in cls.Options.model_fields.items() if info.is_required() and f not in given]
    if required:
        pytest.skip(f"{kind} {name!r}: Options requires {required}; add minimal values to REQUIRED_OPTIONS")
    return cls.Options(**given)


def active_options(kind: str, name: str) -> Options:
    cls = component_class(kind, name)
    if (kind, name) in ACTIVE_OPTIONS:
        return cls.Options(**{**required_options(kind, name), **ACTIVE_OPTIONS[(kind, name)]})
    return minimal_options(kind, name)


# --------------------------------------------------------------------------- options, every kind


@pytest.mark.parametrize("kind, name", every())
def test_options_default_construct_reject_unknown_keys_and_round_trip(kind, name):
    cls = component_class(kind, name)
    options = minimal_options(kind, name)
    with pytest.raises(ValidationError):
        cls.Options(**required_options(kind, name), no_such_option=1)
    # spec.json stores options as JSON: they must come back the same, and have a schema
    assert cls.Options.model_validate(options.model_dump(mode="json")) == options
    assert cls.Options.model_json_schema()["type"] == "object"


@pytest.mark.parametrize("kind, name", every(known_failures=UNDESCRIBED_OPTIONS))
def test_every_option_has_a_description(kind, name):
    fields = component_class(kind, name).Options.model_fields
    missing = [field for field, info in fields.items() if not (info.description or "").strip()]
    assert not missing, f"{kind} {name!r}: options without a description: {missing}"


# --------------------------------------------------------------------------- augmentations


def context(seeds: tuple[int, ...] = (0, 1)) -> AugmentContext:
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return AugmentContext(gens, COPIES, MODEL_SIZE, step=0, resize_count=0)


def images(batch: int = 2, size: int = 16, seed: int = 5) -> torch.Tensor:
    return torch.rand((batch, 3, size, size), generator=torch.Generator().manual_seed(seed))


def augment(name: str, x: torch.Tensor, seeds: tuple[int, ...]) -> torch.Tensor:
    """Run a fresh augmentation on the copies of ``x`` laid out as the engine does (image-major)."""
    aug = component_class("augmentation", name)(active_options("augmentation", name))
    ctx = context(seeds)
    return aug(x.repeat_interleave(ctx.copies, dim=0), ctx)


@pytest.mark.parametrize("kind, name", every("augmentation"))
def test_augmentation_output_shape(kind, name):
    out = augment(name, images(), (0, 1))
    size = RESIZING[name](context()) if name in RESIZING else (16, 16)
    assert tuple(out.shape) == (2 * COPIES, 3, *size)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("kind, name", every("augmentation"))
def test_augmentation_is_reproducible_from_the_seeds_alone(kind, name):
    state = torch.get_rng_state()
    assert torch.equal(augment(name, images(), (0, 1)), augment(name, images(), (0, 1)))
    assert torch.equal(state, torch.get_rng_state()), f"{name} used the global random generator"


@pytest.mark.parametrize("kind, name", every("augmentation"))
def test_augmentation_copies_do_not_depend_on_the_batch(kind, name):
    together = augment(name, images(), (0, 1))
    alone = augment(name, images()[1:], (1,))
    # pixel values in [0, 1], each an interpolation of a few neighbours: another batch size may pick another
    # kernel and order those sums differently, which moves a value by a few float32 ulps (~1e-7), never 1e-5
    assert torch.allclose(together[COPIES:], alone, atol=1e-5)


@pytest.mark.parametrize("kind, name", every("augmentation"))
def test_augmentation_passes_gradients(kind, name):
    x = images().requires_grad_(True)
    out = augment(name, x, (0, 1))
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert (x.grad.flatten(1).abs().sum(dim=1) > 0).all(), f"{name}: some image gets no gradient"


# --------------------------------------------------------------------------- regularizers


def regularizer(name: str) -> Regularizer:
    return component_class("regularizer", name)(active_options("regularizer", name))


@pytest.mark.parametrize("kind, name", every("regularizer"))
def test_regularizer_gives_one_finite_differentiable_value_per_image(kind, name):
    x = images(batch=3).requires_grad_(True)
    value = regularizer(name)(x)
    assert tuple(value.shape) == (3,) and torch.isfinite(value).all()
    value.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert (x.grad.flatten(1).abs().sum(dim=1) > 0).all(), f"{name}: some image gets no gradient"


@pytest.mark.parametrize("kind, name", every("regularizer"))
def test_regularizer_value_does_not_depend_on_the_batch(kind, name):
    x = images(batch=3)
    together = regularizer(name)(x)
    alone = torch.cat([regularizer(name)(x[i : i + 1]) for i in range(3)])
    # a sum over the image's 3 x H x W values: float32 summation in another order (batch size, CPU) differs by
    # about sqrt(n) ulps, ~1e-6 relative here; 1e-4 holds on any CPU and still fails a batch-wide reduction
    assert torch.allclose(together, alone, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- objectives


def objective_inputs(name: str, prompts: list[str], seeds: list[int], pixels: torch.Tensor):
    """An objective built on the tiny model for ``prompts`` x ``seeds``, and the Features of
    ``pixels``' copies (COPIES of each), its layers captured: what a run hands it."""
    from clipforge.engine import make_rows

    backbone = clipforge.load_backbone(_JUDGE)
    spec = load_spec(tiny_spec_dict(prompts=prompts, seeds=seeds))
    rows = make_rows(spec)
    objective = component_class("objective", name)(minimal_options("objective", name), backbone, rows, spec)
    copies = F.interpolate(pixels, size=backbone.input_size, mode="bicubic").repeat_interleave(COPIES, dim=0)
    with clipforge.captured(clipforge.image_tower(backbone), objective.layers()) as seen:
        emb = F.normalize(backbone.encode_image(copies).float(), dim=-1)
    index = torch.arange(len(rows)).repeat_interleave(COPIES)
    return objective, Features(emb, {n: seen[n] for n in objective.layers()}, index)


def values_of(output) -> tuple[torch.Tensor, torch.Tensor | None]:
    return output if isinstance(output, tuple) else (output, None)


@pytest.mark.parametrize("kind, name", every("objective"))
def test_objective_gives_one_finite_differentiable_value_per_copy(kind, name):
    pixels = images(batch=2).requires_grad_(True)
    objective, features = objective_inputs(name, ["a red circle"], [0, 1], pixels)
    value, similarity = values_of(objective(features))
    assert tuple(value.shape) == (2 * COPIES,) and torch.isfinite(value).all()
    assert similarity is None or (tuple(similarity.shape) == (2 * COPIES,) and torch.isfinite(similarity).all())
    value.sum().backward()
    assert pixels.grad is not None and torch.isfinite(pixels.grad).all()
    assert (pixels.grad.flatten(1).abs().sum(dim=1) > 0).all(), f"{name}: some image gets no gradient"
    assert isinstance(type(objective).describe(objective.options), str)


@pytest.mark.parametrize("kind, name", every("objective"))
def test_objective_value_does_not_depend_on_the_batch_unless_it_says_so(kind, name):
    if component_class("objective", name).compares_images:
        pytest.skip(f"{name} compares the images of a batch (compares_images)")
    pixels = images(batch=2)
    objective, features = objective_inputs(name, ["a red circle", "a blue square"], [0], pixels)
    together = values_of(objective(features))[0]
    first, features = objective_inputs(name, ["a red circle"], [0], pixels[:1])
    alone = values_of(first(features))[0]
    # the tiny model's float sums in another order (batch size): ~1e-6 relative; 1e-4 holds on any CPU
    assert torch.allclose(together[:COPIES], alone, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- callbacks


def fake_run(out_dir) -> RunInfo:
    """A 2-image run (one prompt, two seeds) on the tiny model, as callbacks see it."""
    spec = load_spec(tiny_spec_dict(prompts=["a red circle"], seeds=[0, 1], steps=4, callbacks=[]))
    rows = [
        Row(index=i, prompt_index=0, seed=s, label="a red circle", slug=f"00-a-red-circle-seed{s}")
        for i, s in enumerate(spec.seeds)
    ]
    return RunInfo(
        spec=spec,
        rows=rows,
        device=CPU,
        out_dir=out_dir,
        spec_hash=spec.hash(),
        total_steps=spec.steps,
        extra={"backbones": ["open_clip"]},
    )


def check_screened(verdict: Screened | None, shown: torch.Tensor) -> None:
    if verdict is not None:
        assert isinstance(verdict, Screened)
        assert verdict.images.shape == shown.shape
        assert verdict.withheld.shape == (shown.shape[0],) and verdict.withheld.dtype == torch.bool


@pytest.mark.parametrize("where", ["out_dir", "no_out_dir"])
@pytest.mark.parametrize("kind, name", every("callback"))
def test_callback_methods_run_on_a_fake_run(kind, name, where, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out_dir = tmp_path / "out" if where == "out_dir" else None
    if out_dir is not None:
        out_dir.mkdir()
    run = fake_run(out_dir)
    callback = component_class(kind, name)(minimal_options(kind, name))
    callback.on_run_start(run)
    metrics = []
    for step in range(1, run.total_steps + 1):
        size = run.spec.size_at(step - 1)
        shown = images(batch=2, size=size, seed=step)
        callback.on_step_end(run, StepState(step=step, size=(size, size), _images=lambda shown=shown: shown))
        record = {
            "step": step,
            "size": size,
            "loss": [1.0, 0.9],
            "data": [1.0, 0.9],
            "similarity": [0.1, 0.2],
            "regularizers": {"tv": [0.01, 0.02]},
        }
        metrics.append(record)
        callback.on_metrics(run, [record])
        check_screened(callback.screen(run, shown, step, False), shown)
    final = images(batch=2, size=32, seed=99)
    check_screened(callback.screen(run, final, run.total_steps, True), final)
    result = InversionResult(
        images=final,
        rows=run.rows,
        metrics=metrics,
        spec=run.spec,
        spec_hash=run.spec_hash,
        device="cpu",
        steps_done=run.total_steps,
        interrupted=False,
        seconds=0.1,
        out_dir=out_dir,
        withheld=[False, False],
    )
    callback.on_run_end(run, result)
    assert list(cwd.iterdir()) == [], f"{name} wrote into the working directory"


# --------------------------------------------------------------------------- backbones

BACKBONE_TEST_OPTIONS = {name: opts for (kind, name), opts in ACTIVE_OPTIONS.items() if kind == "backbone"}


@pytest.mark.parametrize("kind, name", every("backbone"))
def test_backbone_embeds_images_and_texts_in_one_space(kind, name):
    if name not in BACKBONE_TEST_OPTIONS:
        pytest.skip(f"no small, offline options known for backbone {name!r} (add them to ACTIVE_OPTIONS)")
    backbone = component_class(kind, name)(active_options(kind, name), CPU)
    size = tuple(backbone.input_size)
    assert len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)
    pixels = torch.rand((3, 3, *size), generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    image_emb = backbone.encode_image(pixels)
    text_emb = backbone.encode_text(["a red circle", "a blue square"])
    assert image_emb.dim() == 2 and image_emb.shape[0] == 3
    assert tuple(text_emb.shape) == (2, image_emb.shape[1])
    assert torch.isfinite(image_emb).all() and torch.isfinite(text_emb).all()
    image_emb.sum().backward()  # the engine optimises pixels through encode_image
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0
    with torch.no_grad():
        alone = backbone.encode_image(pixels[1:2].detach())
    # a network's output on batch 3 against batch 1: the CPU's kernels (oneDNN, BLAS) choose blockings by batch
    # size, so sums are ordered differently; relative errors of 1e-6-1e-5 are rounding, an image mixed with
    # its neighbours (a batch-wide norm, say) moves the embedding by far more than 1e-3 of its scale
    scale = float(alone.abs().max())
    torch.testing.assert_close(image_emb[1:2].detach(), alone, rtol=1e-3, atol=1e-3 * scale)


# --------------------------------------------------------------------------- one test per hook


def short_spec(**overrides: Any) -> dict[str, Any]:
    """Four steps through one resize, two images, no callbacks."""
    return tiny_spec_dict(**{"prompts": ["a red circle"], "seeds": [0, 1], "steps": 4, "callbacks": [], **overrides})


class PooledColourClip(Backbone):
    """A fake CLIP: an image is its 4 x 4 average-pooled colours, projected; a text, a seeded draw."""

    name = "fake_clip"
    input_size = (16, 16)

    def __init__(self, options: Options, device: torch.device) -> None:
        super().__init__(options, device)
        self.projection = torch.randn((48, 8), generator=torch.Generator().manual_seed(0)).to(device)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(pixels, 4).flatten(1) @ self.projection

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        seeds = [sum(ord(c) for c in t) for t in texts]
        return torch.stack([torch.randn(8, generator=torch.Generator().manual_seed(s)) for s in seeds]).to(self.device)


def test_hook_register_backbones():
    registry = registry_with(PooledColourClip, plugin="fake_backbones")
    result = invert(short_spec(backbones=[{"name": "fake_clip"}]), registry=registry)
    assert result.images.shape == (2, 3, 32, 32) and len(result.metrics) == 4
    assert result.metrics[-1]["similarity"][0] > result.metrics[0]["similarity"][0]


class SigmoidPixels(Parameterization):
    """A fake parameterisation: images are the sigmoid of per-image logits."""

    name = "fake_sigmoid"

    def __init__(self, options, batch_size, size, generators, device) -> None:
        super().__init__(options, batch_size, size, generators, device)
        self.logits = (draw_per_image(generators, (3, *size), device, -1.0, 1.0)).requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.logits]

    def image(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    def resize(self, size: tuple[int, int]) -> None:
        self.logits = F.interpolate(self.logits.detach(), size=size, mode="bilinear").requires_grad_(True)
        self.size = size


def test_hook_register_parameterizations():
    registry = registry_with(SigmoidPixels, plugin="fake_params")
    result = invert(short_spec(parameterization={"name": "fake_sigmoid"}), registry=registry)
    assert result.images.shape == (2, 3, 32, 32)
    assert 0 < result.images.min() and result.images.max() < 1  # a sigmoid never reaches 0 or 1


class RandomFlip(Augmentation):
    """A fake augmentation: flips half the copies left-right, drawn per copy."""

    name = "fake_flip"

    def __call__(self, copies: torch.Tensor, ctx: AugmentContext) -> torch.Tensor:
        flip = ctx.per_copy((1,), copies.device)[:, 0] < 0.5
        return torch.where(flip.view(-1, 1, 1, 1), copies.flip(-1), copies)


def test_hook_register_augmentations():
    registry = registry_with(RandomFlip, plugin="fake_augs")
    spec = short_spec(augmentations=["fake_flip", "resize"])
    a, b = invert(spec, registry=registry), invert(spec, registry=registry)
    assert torch.equal(a.images, b.images)  # drawn from the seeds alone
    plain = invert(short_spec(augmentations=["resize"]), registry=registry)
    assert not torch.equal(a.images, plain.images)


class MeanBrightness(Regularizer):
    """A fake regulariser: each image's mean value."""

    name = "fake_brightness"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(1, 2, 3))


def test_hook_register_regularizers():
    registry = registry_with(MeanBrightness, plugin="fake_regs")
    spec = short_spec(regularizers=[{"name": "fake_brightness", "options": {"weight": 5.0}}])
    metrics = invert(spec, registry=registry).metrics
    first, last = metrics[0]["regularizers"]["fake_brightness"], metrics[-1]["regularizers"]["fake_brightness"]
    assert len(last) == 2 and all(b < a for a, b in zip(first, last))  # a heavy penalty darkens the images


class Brightest(clipforge.Objective):
    """A fake objective that reads no layer: the mean of the normalised embedding's values."""

    name = "fake_mean_embedding"

    def __call__(self, features):
        return features.embeddings.mean(dim=-1)


def test_hook_register_objectives():
    registry = registry_with(Brightest, plugin="fake_objectives")
    goal = [{"name": "fake_mean_embedding", "options": {"weight": 10.0}}]
    result = invert(short_spec(prompts=[{"objectives": goal}]), registry=registry)
    metrics = result.metrics
    assert [r.label for r in result.rows] == ["10*fake_mean_embedding"] * 2  # named by its weighted objective
    first, last = metrics[0]["data"], metrics[-1]["data"]
    assert all(b < a for a, b in zip(first, last))  # the goal rose: minus it, the data term, fell


class RecorderOptions(Options):
    tag: str = Field("calls", description="Where the calls are recorded.")


class Recorder(Callback):
    """A fake callback: records which of its methods the engine calls, in order."""

    name = "fake_recorder"
    Options = RecorderOptions
    calls: list[tuple[str, Any]] = []

    def on_run_start(self, run):
        Recorder.calls.append(("on_run_start", self.options.tag))

    def on_step_end(self, run, state):
        Recorder.calls.append(("on_step_end", state.step))

    def on_metrics(self, run, records):
        Recorder.calls.append(("on_metrics", [r["step"] for r in records]))

    def screen(self, run, images, step, final):
        Recorder.calls.append(("screen", final))
        return None

    def on_run_end(self, run, result):
        Recorder.calls.append(("on_run_end", result.steps_done))


def test_hook_register_callbacks(monkeypatch):
    monkeypatch.setattr(Recorder, "calls", [])
    registry = registry_with(Recorder, plugin="fake_callbacks")
    invert(
        short_spec(callbacks=[{"name": "fake_recorder", "options": {"tag": "mine"}}], log_every=2), registry=registry
    )
    calls = Recorder.calls
    assert calls[0] == ("on_run_start", "mine") and calls[-1] == ("on_run_end", 4)
    assert [v for k, v in calls if k == "on_step_end"] == [1, 2, 3, 4]
    assert [v for k, v in calls if k == "on_metrics"] == [[1, 2], [3, 4]]
    assert ("screen", True) in calls


class BrightnessSpec(AnalysisSpec):
    prompts: list[str] = Field(min_length=1, description="Prompts to invert.")


class MeanBrightnessStudy(Analysis):
    """A fake analysis: how bright are the inversions of each prompt?"""

    name = "fake_brightness_study"
    description = "mean brightness of inversions"
    Options = BrightnessSpec

    def analyse(self, run: AnalysisRun) -> dict[str, Any]:
        result = run.result
        return {
            "brightness": {
                p: result.images[[r.index for r in result.rows if r.prompt_index == i]].mean().item()
                for i, p in enumerate(self.options.prompts)
            },
            "judge_dim": int(run.judge.encode_text(["x"]).shape[-1]),
        }

    def write_report(self, report, run, out):
        (out / "report.md").write_text(f"# Brightness\n\n{report['brightness']}\n", encoding="utf-8")


def test_hook_register_analyses(tmp_path):
    from clipforge.analysis import run_analysis

    registry = registry_with(MeanBrightnessStudy, plugin="fake_analyses")
    spec = BrightnessSpec(
        prompts=["a red circle", "a blue square"],
        seeds=2,
        judge=_JUDGE,
        run={k: v for k, v in short_spec().items() if k not in ("prompts", "seeds")},
    )
    report = run_analysis(MeanBrightnessStudy(spec), tmp_path / "study", registry, show_progress=False)
    assert report["analysis"] == "fake_brightness_study" and set(report["brightness"]) == set(spec.prompts)
    assert all(0 <= v <= 1 for v in report["brightness"].values()) and report["judge_dim"] > 0
    assert json.loads((tmp_path / "study" / "report.json").read_text()) == report
    assert (tmp_path / "study" / "report.md").read_text().startswith("# Brightness")
