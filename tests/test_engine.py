import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_CONFIG, DimOnlyHere, registry_with, tiny_spec_dict
from PIL import Image
from safetensors.torch import load_file

import clipforge
from clipforge import Callback, Options, SpecError, invert
from clipforge.cli import main
from clipforge.step import RunParts, clip_grad_per_image

# --------------------------------------------------------------------------- comparing across batches and paths
#
# A run's images do not depend on the batch they are optimised in, or on how the copies are chunked,
# but the float32 sums behind them do: BLAS kernels block their reductions by the batch size and the
# CPU's vector width, so the gradients of one image come out about 1e-6 apart (relative) from one
# batch size, chunking or CPU to another. Two things follow for the images after Adam (lr 0.1):
# - almost every value moves by about lr x 1e-6 per step apart (Adam divides each value's gradient
#   by its own running norm, so a relative error stays relative): 1e-7 here, far under 1e-4;
# - a value whose gradient is within rounding of zero can take Adam's step the other way, up to
#   2 x lr per step: a handful of such values decide the largest difference (measured 4e-6 to
#   7e-4 on one CPU, 1.9e-5 where another CPU failed an old 1e-5 bound), so the largest difference
#   cannot be bounded by rounding at all.
# So a comparison checks the bulk (the 99th percentile and the mean of the differences under 1e-4,
# 100x or more over what rounding gives) and lets a few values differ. A real change of the
# computation (the chunked path dropping a term, clipping over the batch) moves the bulk by 1e-2 to
# 1e-1, and is caught. Where bit-identity is promised (resume, shards) comparisons stay exact.
ROUNDING = 1e-4


def assert_equal_up_to_rounding(a: torch.Tensor, b: torch.Tensor, what: object = "") -> None:
    d = (a - b).abs().flatten().double()
    assert float(d.quantile(0.99)) < ROUNDING and float(d.mean()) < ROUNDING, (
        f"{what}: 99th percentile {float(d.quantile(0.99)):.3g}, mean {float(d.mean()):.3g}, max {float(d.max()):.3g}"
    )


#: a loss (about 1.3 here) computed from the same images in another batch or chunking: a few float32
#: ulps apart (1e-7 measured); 1e-4 leaves a factor of 500 and still catches any change of the
#: objective, which moves it by 1e-2 or more
LOSS_ROUNDING = 1e-4


def run_cli(tmp_path, spec, out_name="out", *extra):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / out_name
    return main(["invert", str(path), "--out", str(out), *extra]), out


def test_cli_invert_writes_every_output(tmp_path, tiny_spec):
    code, out = run_cli(tmp_path, tiny_spec)
    assert code == 0
    rows = json.loads((out / "run.json").read_text())["rows"]
    assert len(rows) == 4
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["steps_done"] == 6 and run["device"] == "cpu"
    assert {"torch", "open_clip_torch", "clipforge", "python"} <= set(run["versions"])
    spec = json.loads((out / "spec.json").read_text())
    assert spec["regularizers"][0] == {"name": "tv", "options": {"weight": 0.005, "p": 2.0}}
    # the resolved spec runs again as it is
    assert clipforge.load_spec(out / "spec.json").hash() == run["spec_hash"]
    for row in rows:
        png = Image.open(out / "images" / f"{row['slug']}.png")
        assert png.size == (32, 32)
        assert png.text["prompt"] == row["label"] and png.text["seed"] == str(row["seed"])
        assert png.text["spec_hash"] == run["spec_hash"]
    tensors = load_file(str(out / "images.safetensors"))
    assert tensors["images"].shape == (4, 3, 32, 32)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 6
    record = json.loads(lines[-1])
    assert record["step"] == 6 and len(record["similarity"]) == 4 and len(record["regularizers"]["tv"]) == 4
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == [
        "step_000002.png",
        "step_000004.png",
        "step_000006.png",
    ]


def test_same_seed_gives_bit_identical_images(tmp_path, tiny_spec):
    code_a, out_a = run_cli(tmp_path, tiny_spec, "a")
    code_b, out_b = run_cli(tmp_path, tiny_spec, "b")
    assert code_a == code_b == 0
    a = load_file(str(out_a / "images.safetensors"))["images"]
    b = load_file(str(out_b / "images.safetensors"))["images"]
    assert torch.equal(a, b)
    assert (out_a / "images" / "00-a-red-circle-seed0.png").read_bytes() == (
        out_b / "images" / "00-a-red-circle-seed0.png"
    ).read_bytes()
    # and a different seed gives a different image
    assert not torch.equal(a[0], a[1])


def test_batched_rows_equal_single_runs(tiny_spec):
    spec = tiny_spec_dict(callbacks=[], steps=5)
    batched = invert(spec)
    for row in batched.rows:
        alone = invert({**spec, "prompts": [spec["prompts"][row.prompt_index]], "seeds": [row.seed]})
        # equal up to floating-point summation order (see assert_equal_up_to_rounding)
        assert_equal_up_to_rounding(alone.images[0], batched.images[row.index], row)
        assert alone.metrics[-1]["loss"][0] == pytest.approx(batched.metrics[-1]["loss"][row.index], abs=LOSS_ROUNDING)


def test_existing_output_directory_is_never_overwritten(tmp_path, tiny_spec, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.png").write_bytes(b"results")
    code, _ = run_cli(tmp_path, tiny_spec)
    assert code == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "precious.png").read_bytes() == b"results"
    assert sorted(p.name for p in out.iterdir()) == ["precious.png"]


class StopAt(Callback):
    """Keeps the images as they are after step 3, then interrupts as Ctrl-C would."""

    name = "stop_at"
    seen = None

    def on_step_end(self, run, state):
        if state.step == 3:
            StopAt.seen = state.images().clone()
            raise KeyboardInterrupt


def test_interrupt_stops_cleanly_and_saves_current_images(tmp_path):
    result = invert(tiny_spec_dict(steps=50), tmp_path / "out", callbacks=[StopAt(Options())])
    assert result.interrupted and result.steps_done == 3
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["status"] == "interrupted" and run["steps_done"] == 3
    assert len(list((tmp_path / "out" / "images").glob("*.png"))) == 4
    assert len((tmp_path / "out" / "metrics.jsonl").read_text().splitlines()) == 3
    # what was saved is the images of the step of interruption, not the start or a later step
    saved = load_file(str(tmp_path / "out" / "images.safetensors"))["images"]
    assert torch.equal(saved, StopAt.seen) and torch.equal(result.images, StopAt.seen)
    first = invert(tiny_spec_dict(steps=2, callbacks=[])).images
    assert not torch.equal(saved, first)
    for row in result.rows:
        png = torch.from_numpy(np.array(Image.open(tmp_path / "out" / "images" / f"{row.slug}.png"))).float()
        expected = (StopAt.seen[row.index].permute(1, 2, 0) * 255).round()
        assert (png - expected).abs().max() <= 1, row.slug


def test_cli_interrupt_exits_130_and_says_where_the_images_are(tmp_path, monkeypatch, capsys):
    original = RunParts.step
    calls = []

    def interrupted_step(self, optimizer, ctx):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original(self, optimizer, ctx)

    monkeypatch.setattr(RunParts, "step", interrupted_step)
    code, out = run_cli(tmp_path, tiny_spec_dict(steps=50))
    assert code == 130
    err = capsys.readouterr().err
    assert "interrupted at step 3/50" in err and str(out) in err.replace("\n", "")
    assert json.loads((out / "run.json").read_text())["steps_done"] == 3


class Boom(Callback):
    name = "boom"

    def on_step_end(self, run, state):
        if state.step == 2:
            raise RuntimeError("callback bug")


def test_a_failing_run_still_saves_what_it_had(tmp_path):
    with pytest.raises(RuntimeError, match="callback bug"):
        invert(tiny_spec_dict(steps=50), tmp_path / "out", callbacks=[Boom(Options())])
    assert len(list((tmp_path / "out" / "images").glob("*.png"))) == 4


def test_python_api_returns_images_and_metrics_without_writing(tiny_spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tiny_spec_dict(callbacks=[])
    result = invert(spec)
    assert result.images.shape == (4, 3, 32, 32)
    assert 0 <= result.images.min() and result.images.max() <= 1
    assert len(result.metrics) == 6 and result.out_dir is None
    assert result.image("a blue square", seed=1).shape == (3, 32, 32)
    assert list(tmp_path.iterdir()) == []


def test_optimisation_raises_similarity():
    spec = tiny_spec_dict(
        callbacks=[],
        steps=30,
        seeds=[0],
        prompts=["a red circle"],
        resolution=[{"step": 0, "size": 32}],
        regularizers=[],
    )
    result = invert(spec)
    assert result.metrics[-1]["similarity"][0] > result.metrics[0]["similarity"][0] + 0.2


def test_several_backbones_average_their_losses():
    two = [{"name": "open_clip", "options": {"config": TINY_CONFIG, "init_seed": s}} for s in (0, 1)]
    spec = tiny_spec_dict(callbacks=[], steps=2, regularizers=[])
    both = invert({**spec, "backbones": two})
    alone = [invert({**spec, "backbones": [b]}) for b in two]
    # the first step's terms come from the same initial images and copies, so they must be the mean
    for key in ("data", "similarity"):
        mean = [(x + y) / 2 for x, y in zip(alone[0].metrics[0][key], alone[1].metrics[0][key])]
        # the same batch through the same kernels: only the float32 sum and halving of the two terms
        # (about 1.3) differ from the mean taken here in float64, by an ulp or two (1.2e-7 each)
        assert both.metrics[0][key] == pytest.approx(mean, abs=1e-6), key
    assert alone[0].metrics[0]["data"] != pytest.approx(alone[1].metrics[0]["data"], abs=1e-3)


def test_local_dir_model_loads_through_the_backbone(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_CONFIG)
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": TINY_CONFIG, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}})
    )
    save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))
    entry = clipforge.default_registry().get("backbone", "open_clip")
    backbone = entry.cls(entry.cls.Options(model=f"local-dir:{folder}"), torch.device("cpu"))
    assert backbone.input_size == (32, 32)
    assert torch.allclose(backbone.std.flatten(), torch.tensor([0.25] * 3))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():  # the same weights and batch; (x - mean) / std rounds in another order: ~1e-7
        assert torch.allclose(backbone.encode_image(x), model.encode_image((x - 0.5) / 0.25), atol=1e-5)
    # a checkpoint file with an inline config loads the same weights
    ckpt = backbone_from_file = entry.cls(
        entry.cls.Options(config=TINY_CONFIG, pretrained=str(folder / "open_clip_model.safetensors")),
        torch.device("cpu"),
    )
    with torch.no_grad():
        assert torch.allclose(ckpt.model.encode_image(x), model.encode_image(x), atol=1e-5)
    del backbone_from_file


def test_missing_pretrained_weights_fail_with_a_clear_message(tmp_path, capsys):
    code, out = run_cli(tmp_path, {"prompts": ["a dog"], "steps": 1})
    err = capsys.readouterr().err
    assert code == 2 and "backbones[0]: backbone 'open_clip'" in err  # the place, and the plugin
    assert "the weights of 'ViT-B-16' with pretrained 'openai'" in " ".join(err.split())
    assert "toyworld-rn" in err and "local checkpoint" in err
    assert not out.exists()


def test_set_overrides_from_the_command_line(tmp_path, tiny_spec):
    code, out = run_cli(tmp_path, tiny_spec, "out", "--set", "steps=2", "--set", "seeds=[5]")
    assert code == 0
    run = json.loads((out / "run.json").read_text())
    assert run["steps_done"] == 2 and [r["seed"] for r in run["rows"]] == [5, 5]


def test_bad_spec_in_api_raises_spec_error():
    with pytest.raises(SpecError, match=r"regularizers\[0\].name: unknown regularizer 'tvv'"):
        invert(tiny_spec_dict(regularizers=["tvv"]))


def test_chunked_copies_give_the_same_result():
    spec = tiny_spec_dict(callbacks=[], steps=4, copies=5)
    whole = invert(spec)
    for chunk in (1, 3, 7):
        chunked = invert({**spec, "performance": {"chunk_copies": chunk}})
        assert_equal_up_to_rounding(whole.images, chunked.images, chunk)  # the gradients are summed in chunks
        assert whole.metrics[-1]["loss"] == pytest.approx(chunked.metrics[-1]["loss"], abs=LOSS_ROUNDING)


def test_bf16_autocast_runs_and_stays_close_to_fp32():
    spec = tiny_spec_dict(callbacks=[], steps=3)
    fp32 = invert(spec)
    bf16 = invert({**spec, "performance": {"precision": "bf16"}})
    assert bf16.images.dtype == torch.float32
    assert bf16.metrics[0]["similarity"] == pytest.approx(fp32.metrics[0]["similarity"], abs=0.05)
    # after the updates too: the images moved the same way, and the similarity rose in both
    moved = fp32.images - invert({**spec, "steps": 1}).images
    assert (bf16.images - fp32.images).abs().mean() < 0.2 * moved.abs().mean()
    assert bf16.metrics[-1]["similarity"] == pytest.approx(fp32.metrics[-1]["similarity"], abs=0.05)
    assert bf16.metrics[-1]["similarity"][0] > bf16.metrics[0]["similarity"][0]


def test_image_targets_relative_to_the_spec_file(tmp_path, capsys):
    from clipforge.images import save_png

    (tmp_path / "pics").mkdir()
    save_png(torch.rand(3, 20, 24), tmp_path / "pics" / "target.png")
    spec = tiny_spec_dict(
        callbacks=[],
        steps=3,
        seeds=[0],
        prompts=[
            {"image": "pics/target.png"},
            {"terms": [{"image": "pics/target.png"}, {"text": "a dog", "weight": -0.5}]},
        ],
    )
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    result = invert(path)
    assert result.images.shape[0] == 2 and result.rows[0].label == "image:target.png"
    spec["prompts"] = [{"image": "pics/missing.png"}]
    path.write_text(json.dumps(spec))
    assert main(["validate", str(path)]) == 2
    assert "prompts[0].image: no such image file" in capsys.readouterr().err


def test_embedding_combination_aims_at_the_mixed_embedding():
    from clipforge.judge import load_backbone
    from clipforge_plugins.objectives import embed_targets

    backbone = load_backbone({"name": "open_clip", "options": {"config": TINY_CONFIG}})
    spec = clipforge.load_spec(
        tiny_spec_dict(prompts=[{"terms": ["a cat", "a dog", {"text": "fur", "weight": -1}], "combine": "embedding"}])
    )
    targets = embed_targets(backbone, spec.prompts)
    texts = torch.nn.functional.normalize(backbone.encode_text(["a cat", "a dog", "fur"]).float(), dim=-1)
    mixed = torch.nn.functional.normalize(texts[0] + texts[1], dim=-1)
    assert torch.allclose(targets.embeddings[0, 0], mixed, atol=1e-5)
    assert torch.allclose(targets.embeddings[0, 1], texts[2], atol=1e-5)
    assert targets.weights[0].tolist() == [1.0, -1.0]


# --------------------------------------------------------------------------- gradient clipping


def test_clip_grad_per_image_clips_each_image_as_clip_grad_norm_would_alone():
    """Two parameter tensors (like multires' levels), three images of very different gradient norms."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(3, 3, 4, 4), (3, 3, 8, 8)]
    scale = torch.tensor([0.01, 1.0, 50.0]).view(3, 1, 1, 1)
    grads = [torch.randn(s, generator=gen) * scale for s in shapes]
    params = [torch.zeros(s, requires_grad=True) for s in shapes]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    norms = clip_grad_per_image(params, max_norm=2.0)
    for b in range(3):
        alone = [torch.zeros(s[1:], requires_grad=True) for s in shapes]
        for p, g in zip(alone, grads):
            p.grad = g[b].clone()
        expected_norm = torch.nn.utils.clip_grad_norm_(alone, max_norm=2.0)
        # a float32 sum of n = 240 squares is within n x 2**-24 = 1.4e-5 (relative) of the exact one
        # whatever the order, and its square root within half that: rel=1e-5 holds on any CPU
        assert float(norms[b]) == pytest.approx(float(expected_norm), rel=1e-5)
        for p, a in zip(params, alone):
            assert torch.allclose(p.grad[b], a.grad, rtol=1e-5, atol=1e-7), b
    # the small image kept its gradient; the large ones were cut to the norm
    assert torch.equal(params[0].grad[0], grads[0][0])
    after = torch.stack([p.grad.flatten(1).pow(2).sum(1) for p in params]).sum(0).sqrt()
    assert after[1:].tolist() == pytest.approx([2.0, 2.0], rel=1e-4)


@pytest.mark.parametrize("param", ["pixel", "multires"])
def test_clipping_acts_per_image_in_a_run(param):
    """With a clip small enough to act at every step, a batched run still equals single runs (global
    clipping would couple the images) and differs from a run without clipping."""
    spec = tiny_spec_dict(
        callbacks=[],
        steps=4,
        resolution=[{"step": 0, "size": 16}],
        parameterization={"name": param},
        optimizer={"grad_clip": 1e-3},
    )
    batched = invert(spec)
    unclipped = invert({**spec, "optimizer": {"grad_clip": None}})
    assert (batched.images - unclipped.images).abs().max() > 1e-3
    for row in batched.rows:
        alone = invert({**spec, "prompts": [spec["prompts"][row.prompt_index]], "seeds": [row.seed]})
        # clipping over the batch would move the bulk of the values by 1e-2 (measured), far over ROUNDING
        assert_equal_up_to_rounding(alone.images[0], batched.images[row.index], row)


# --------------------------------------------------------------------------- the engine's edges (mutation run)


def test_without_a_resize_augmentation_copies_are_resized_to_the_backbone_like_resize_would():
    spec = tiny_spec_dict(
        callbacks=[], steps=2, copies=2, resolution=[{"step": 0, "size": 16}], augmentations=[]
    )  # 16 px images, a 32 px backbone
    fallback = invert(spec)
    explicit = invert({**spec, "augmentations": [{"name": "resize", "options": {"mode": "bicubic"}}]})
    assert torch.equal(fallback.images, explicit.images)
    nearest = invert({**spec, "augmentations": [{"name": "resize", "options": {"mode": "nearest"}}]})
    assert not torch.equal(fallback.images, nearest.images)


def test_channels_last_and_optimizer_options_reach_the_loop():
    spec = tiny_spec_dict(callbacks=[], steps=3)
    base = invert(spec)
    # channels-last runs other convolution kernels: the same sums in another order
    assert_equal_up_to_rounding(invert({**spec, "performance": {"channels_last": True}}).images, base.images)
    for change in ({"betas": [0.5, 0.9]}, {"eps": 0.5}):
        other = invert({**spec, "optimizer": change})
        assert (other.images - base.images).abs().max() > 1e-3, change


def test_bf16_really_autocasts():
    spec = tiny_spec_dict(callbacks=[], steps=1)
    fp32 = invert(spec)
    bf16 = invert({**spec, "performance": {"precision": "bf16"}})
    assert fp32.metrics[0]["similarity"] != bf16.metrics[0]["similarity"]  # bf16 rounding shows


def test_result_image_lookup():
    result = invert(tiny_spec_dict(callbacks=[], steps=1))
    rows = {(r.prompt_index, r.seed): r.index for r in result.rows}
    assert torch.equal(result.image(), result.images[rows[(0, 0)]])
    assert torch.equal(result.image(1, seed=1), result.images[rows[(1, 1)]])
    assert torch.equal(result.image("a blue square"), result.images[rows[(1, 0)]])
    assert torch.equal(result.image("a red circle", seed=1), result.images[rows[(0, 1)]])
    with pytest.raises(KeyError, match="no image for prompt 'a cat', seed 3"):
        result.image("a cat", seed=3)
    with pytest.raises(KeyError):
        result.image(0, seed=7)


def test_invert_uses_its_registry_overrides_and_the_specs_output_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    registry = registry_with(DimOnlyHere)
    spec = tiny_spec_dict(callbacks=[], steps=1, regularizers=["dim_only_here"], output_dir="from_spec")
    result = invert(spec, registry=registry, overrides=["steps=2"])
    assert result.steps_done == 2 and "dim_only_here" in result.metrics[-1]["regularizers"]
    assert result.out_dir == Path("from_spec") and (tmp_path / "from_spec" / "run.json").exists()


def test_load_image_reads_bytes_as_fractions_and_resizes_with_antialiasing(tmp_path):
    from clipforge.images import read_image as load_image

    Image.fromarray(np.array([[[255, 0, 51]]], dtype=np.uint8)).resize((4, 4)).save(tmp_path / "flat.png")
    flat = load_image(str(tmp_path / "flat.png"), (2, 2))
    assert flat[:, 0, 0].tolist() == pytest.approx([1.0, 0.0, 0.2], abs=1e-6)
    board = (np.indices((16, 16)).sum(axis=0) % 2 * 255).astype(np.uint8)
    Image.fromarray(board).convert("RGB").save(tmp_path / "board.png")
    down = load_image(str(tmp_path / "board.png"), (4, 4))
    assert (down - 0.5).abs().max() < 0.1  # averaged, not sampled
    edge = np.zeros((2, 2, 3), dtype=np.uint8)
    edge[:, 1] = 255
    Image.fromarray(edge).save(tmp_path / "edge.png")
    up = load_image(str(tmp_path / "edge.png"), (16, 16))
    assert up.min() == 0.0 and up.max() == 1.0  # bicubic overshoot is clamped
    Image.fromarray(board).save(tmp_path / "gray.png")  # a one-channel file comes out as RGB
    assert load_image(str(tmp_path / "gray.png"), (4, 4)).shape == (3, 4, 4)


class Withhold(Callback):
    """A screen that withholds one row and brightens what it lets through, to see how screens compose."""

    name = "withhold"

    def __init__(self, row, seen=None):
        super().__init__(Options())
        self.row, self.seen = row, seen if seen is not None else []

    def screen(self, run, images, step, final):
        self.seen.append(images.clone())
        withheld = torch.zeros(images.shape[0], dtype=torch.bool)
        withheld[self.row] = True
        return clipforge.Screened((images + 0.25).clamp(0, 1), withheld)


def test_screens_compose_each_sees_the_last_ones_images_and_withheld_rows_are_zeroed():
    spec = tiny_spec_dict(callbacks=[], steps=1)
    raw = invert(spec).images
    first, second = Withhold(0), Withhold(2)
    result = invert(spec, callbacks=[first, second])
    assert result.withheld == [True, False, True, False]
    assert float(result.images[[0, 2]].abs().max()) == 0.0
    assert torch.allclose(result.images[[1, 3]], (raw[[1, 3]] + 0.5).clamp(0, 1))  # both brightened
    assert torch.equal(second.seen[-1], (first.seen[-1] + 0.25).clamp(0, 1))  # the second saw the first's
    assert result.withheld == [bool(w) for w in result.withheld] and result.images.dtype == torch.float32


def test_metrics_records_hold_loss_data_similarity_and_each_regularizer():
    regs = [
        {"name": "tv", "options": {"weight": 0.5}},
        {"name": "tv", "options": {"weight": 0.25, "p": 1.0}},
        {"name": "l1", "options": {"weight": 0.0}},
    ]
    result = invert(tiny_spec_dict(callbacks=[], steps=1, regularizers=regs))
    rec = result.metrics[0]
    assert set(rec["regularizers"]) == {"tv", "tv#2"}  # a zero weight is off, a second tv is numbered
    for i in range(4):
        expected = rec["data"][i] + 0.5 * rec["regularizers"]["tv"][i] + 0.25 * rec["regularizers"]["tv#2"][i]
        assert rec["loss"][i] == pytest.approx(expected, rel=1e-5)
        assert rec["similarity"][i] != rec["data"][i] and -1 <= rec["similarity"][i] <= 1
    assert rec["regularizers"]["tv"] != rec["regularizers"]["tv#2"] and rec["step"] == 1 and rec["size"] == 16


def test_the_first_resolution_is_the_size_the_image_starts_at():
    one = tiny_spec_dict(callbacks=[], steps=1, resolution=[{"step": 0, "size": 16}])
    later = tiny_spec_dict(callbacks=[], steps=1, resolution=[{"step": 0, "size": 16}, {"step": 1, "size": 32}])
    assert torch.equal(invert(one).images, invert(later).images)


def test_chunked_copies_without_regularizers_give_the_same_result():
    spec = tiny_spec_dict(callbacks=[], steps=3, copies=4, regularizers=[])
    whole = invert(spec)
    chunked = invert({**spec, "performance": {"chunk_copies": 3}})
    assert_equal_up_to_rounding(whole.images, chunked.images)


def test_pick_device():
    from clipforge.engine import pick_device

    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert pick_device("auto") == torch.device("cpu")
        with pytest.raises(RuntimeError, match="device 'cuda:0' was asked for, but CUDA is not available here"):
            pick_device("cuda:0")


class Watcher(Callback):
    """Records what the loop tells its callbacks."""

    name = "watcher"

    def __init__(self):
        super().__init__(Options())
        self.metric_batches, self.screens, self.runs = [], [], []

    def on_run_start(self, run):
        self.runs.append(run)

    def on_metrics(self, run, records):
        self.runs.append(run)
        self.metric_batches.append([r["step"] for r in records])

    def on_step_end(self, run, state):
        state.images()  # ask for the images, so that they are screened

    def screen(self, run, images, step, final):
        self.runs.append(run)
        self.screens.append((step, final))
        return None


def test_callbacks_get_metrics_every_log_every_steps_and_each_screen_its_step():
    watcher = Watcher()
    invert(tiny_spec_dict(callbacks=[], steps=5, log_every=2), callbacks=[watcher])
    assert watcher.metric_batches == [[1, 2], [3, 4], [5]]
    assert watcher.screens == [(1, False), (2, False), (3, False), (4, False), (5, False), (5, True)]
    run = watcher.runs[0]
    assert all(r is run for r in watcher.runs) and run.total_steps == 5
    assert run.extra["backbones"] and all(isinstance(b, str) for b in run.extra["backbones"])


class ContextSpy(clipforge.Augmentation):
    name = "context_spy"
    seen = []

    def __call__(self, copies, ctx):
        ContextSpy.seen.append((ctx.step, ctx.resize_count, tuple(ctx.model_size), copies.shape[-1]))
        return copies


def test_augmentations_see_the_step_the_resize_count_and_the_model_size():
    registry = registry_with(ContextSpy)
    ContextSpy.seen = []
    spec = tiny_spec_dict(
        callbacks=[],
        steps=6,
        augmentations=["context_spy", "resize"],
        resolution=[{"step": 0, "size": 16}, {"step": 2, "size": 24}, {"step": 4, "size": 32}],
    )
    invert(spec, registry=registry)
    assert ContextSpy.seen == [
        (0, 0, (32, 32), 16),
        (1, 0, (32, 32), 16),
        (2, 1, (32, 32), 24),
        (3, 1, (32, 32), 24),
        (4, 2, (32, 32), 32),
        (5, 2, (32, 32), 32),
    ]


def test_a_run_that_cannot_start_leaves_no_empty_folder_and_a_failing_one_says_so(tmp_path):
    bad = tiny_spec_dict(
        backbones=[{"name": "open_clip", "options": {"config": TINY_CONFIG, "pretrained": str(tmp_path)}}]
    )
    with pytest.raises(clipforge.SpecError, match="pretrained"):
        invert(bad, tmp_path / "never")
    assert not (tmp_path / "never").exists()
    with pytest.raises(RuntimeError):
        invert(tiny_spec_dict(steps=50), tmp_path / "boom", callbacks=[Boom(Options())])
    run = json.loads((tmp_path / "boom" / "run.json").read_text())
    assert run["status"] == "failed" and run["steps_done"] == 2
    assert "Boom 'boom' failed at the end of step 2: RuntimeError: callback bug" in run["error"]  # who failed
    assert not (tmp_path / "boom" / ".clipforge.lock").exists()  # the folder is released


def test_tf32_is_only_switched_on_for_cuda():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    watcher = Watcher()

    class Peek(Callback):
        name = "peek"
        during = None

        def on_step_end(self, run, state):
            Peek.during = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)

    invert(tiny_spec_dict(callbacks=[], steps=1, performance={"tf32": True}), callbacks=[watcher, Peek(Options())])
    assert Peek.during == before and (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_a_callback_failing_on_the_last_metrics_is_reported_and_the_images_are_kept(tmp_path):
    class BadMetrics(Callback):
        name = "bad_metrics"

        def on_metrics(self, run, records):
            raise ValueError("disk full")

    with pytest.warns(UserWarning, match="last metrics records were not delivered.*disk full"):
        result = invert(
            tiny_spec_dict(steps=50, log_every=10, checkpoint_every=100),  # no checkpoint flushes earlier
            tmp_path / "out",
            callbacks=[StopAt(Options()), BadMetrics(Options())],
        )
    assert result.interrupted and result.steps_done == 3
    assert len(list((tmp_path / "out" / "images").glob("*.png"))) == 4
