"""The fourier parameterisation's ``shared`` option (Lucent's ``channel_interpolate``): one
low-resolution grid common to the batch, added to every image's own spectrum. Off (0) it is
today's fourier bit for bit; on, it is one more batch-first parameter of which every image uses the
rows' mean, it survives resizes and checkpoints, and it brings an interpolation's frames closer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import StopAt, resolved, tiny_spec_dict
from safetensors.torch import load_file
from test_toolbox import edge_channels, edge_run

import clipforge
from clipforge_plugins.objectives import interpolation

CPU = torch.device("cpu")


def make(seeds=(0, 1, 2), size=(16, 16), **options):
    cls = clipforge.default_registry().get("parameterization", "fourier").cls
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return cls(cls.Options(**options), len(seeds), size, gens, CPU)


def test_shared_0_is_todays_fourier_bit_for_bit():
    today, off = make(), make(shared=0.0, shared_size=3)
    assert len(off.parameters()) == 1 and off.shared_grid is None
    assert torch.equal(today.spectrum, off.spectrum) and torch.equal(today.image(), off.image())
    today.resize((32, 32))
    off.resize((32, 32))
    assert len(off.parameters()) == 1 and torch.equal(today.image(), off.image())


def test_shared_adds_one_batch_first_grid_at_zero_so_the_start_images_are_todays():
    on, today = make(shared=0.5), make()
    spectrum, grid = on.parameters()
    assert torch.equal(spectrum, today.spectrum)  # the own spectra are drawn as before
    assert grid.is_leaf and grid.requires_grad and grid.shape == (3, 3, 4, 4)  # a quarter of 16 px
    assert not grid.any() and torch.equal(on.image(), today.image())
    assert make(shared=0.5, shared_size=6).shared_grid.shape == (3, 3, 6, 6)


def test_every_frame_changes_with_the_shared_part_alone_and_each_row_gets_the_same_gradient():
    p = make(shared=0.5)
    before = p.linear_image().detach()
    with torch.no_grad():
        p.shared_grid[1] = torch.randn((3, 4, 4), generator=torch.Generator().manual_seed(5))  # one row only
    after = p.linear_image().detach()
    want = 0.5 * F.interpolate(p.shared_grid.detach().mean(0, keepdim=True), size=(16, 16), mode="bilinear")
    torch.testing.assert_close(after - before, want.expand(3, -1, -1, -1), atol=1e-6, rtol=0)
    assert ((after - before).flatten(1).abs().amax(dim=1) > 0.01).all()  # every frame moved
    # a loss on image 0 alone reaches every row of the grid, equally (1/B of the mean's gradient)
    p.image()[0].sum().backward()
    grad = p.shared_grid.grad
    assert grad.abs().sum() > 0 and all(torch.equal(grad[0], grad[b]) for b in (1, 2))


def test_resize_keeps_the_grid_and_carries_its_optimiser_state_as_it_is():
    p = make(shared=0.5)
    with torch.no_grad():
        p.shared_grid.copy_(torch.randn((1, 3, 4, 4), generator=torch.Generator().manual_seed(2)).expand(3, -1, -1, -1))
    old_params = p.parameters()
    p.resize((32, 32))
    spectrum, grid = p.parameters()
    assert grid is not old_params[1] and grid.is_leaf and torch.equal(grid, old_params[1])
    assert spectrum.shape == (3, 3, 32, 17, 2) and p.image().shape == (3, 3, 32, 32)
    up = 0.5 * F.interpolate(grid.detach()[:1], size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(p.shared_image().detach(), up)
    moment = torch.rand_like(old_params[1])
    assert torch.equal(p.resize_state(moment, tuple(grid.shape)), moment)
    assert p.resize_state(torch.rand_like(old_params[0]), tuple(spectrum.shape)).shape == spectrum.shape
    p.image().sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in p.parameters())


SPEC = tiny_spec_dict(
    steps=12,
    seeds=[0, 1],
    resolution=[{"step": 0, "size": 16}, {"step": 6, "size": 32}],
    callbacks=[],
    parameterization={"name": "fourier", "options": {"shared": 0.5}},
    checkpoint_every=4,
)


@pytest.mark.parametrize("reset_on_resize", [True, False])
def test_a_shared_run_resumes_bit_for_bit_from_its_checkpoint(tmp_path, reset_on_resize):
    spec = {**SPEC, "optimizer": {"reset_on_resize": reset_on_resize}}
    whole = clipforge.invert(spec, tmp_path / "whole")
    assert whole.steps_done == 12 and torch.isfinite(whole.images).all()
    stopped = clipforge.Engine(resolved(spec), out_dir=tmp_path / "b", callbacks=[StopAt(7)]).run()
    assert stopped.interrupted
    saved = load_file(tmp_path / "b" / "checkpoint.safetensors")
    grid = (len(whole.images), 3, 4, 4)  # a row per image (prompts x seeds), a quarter of 16 px
    assert saved["param.1"].shape == grid and saved["param.1"].abs().max() > 0  # the grid, moved
    assert saved["adam.1.exp_avg"].shape == grid
    resumed = clipforge.Engine(resolved(spec), out_dir=tmp_path / "b", resume=True).run()
    assert resumed.steps_done == 12 and torch.equal(resumed.images, whole.images)


def test_shared_0_keeps_a_runs_images_and_checkpoint_layout(tmp_path):
    plain = {**SPEC, "parameterization": {"name": "fourier"}}
    off = {**SPEC, "parameterization": {"name": "fourier", "options": {"shared": 0.0}}}
    layouts = []
    for name, spec in (("plain", plain), ("off", off)):
        clipforge.Engine(resolved(spec), out_dir=tmp_path / name, callbacks=[StopAt(5)]).run()
        saved = load_file(tmp_path / name / "checkpoint.safetensors")
        layouts.append({k: tuple(v.shape) for k, v in saved.items()})
    assert layouts[0] == layouts[1] and "param.1" not in layouts[0]
    assert torch.equal(clipforge.invert(plain).images, clipforge.invert(off).images)


def test_a_shared_part_brings_an_interpolations_frames_closer_and_keeps_its_ends():
    """The known-filter network of test_toolbox.py (channel 0: vertical red edges, channel 1:
    horizontal ones), five frames, one seed, 40 steps at 16 px, fourier with and without a shared
    part (0.5, a 4 x 4 grid). Every frame starts from the same spectrum (one seed), so they are
    already alike and the shared part can only add a little: measured, the mean absolute pixel
    difference between neighbouring frames falls from 0.1447 to 0.1393 (4 %; 0.1188 at shared 4).
    We require 1 %. The end frames keep their channel: measured 101 % of its own visualisation's
    mean activation (fourier without the shared part); we require 80 %."""
    own = edge_run(
        [{"objectives": [{"name": "channel", "options": {"layer": "act", "channel": c}}]} for c in (0, 1)],
        parameterization={"name": "fourier"},
    )
    want = edge_channels(own)
    alone = torch.stack([want[0, 0], want[1, 1]])
    lucent = interpolation("act", 0, 1, frames=5)
    free = edge_run(**lucent, parameterization={"name": "fourier"})
    frames = edge_run(**lucent, parameterization={"name": "fourier", "options": {"shared": 0.5}})
    step = (frames[1:] - frames[:-1]).abs().mean()
    assert step < 0.99 * (free[1:] - free[:-1]).abs().mean()
    got = edge_channels(frames)
    assert (torch.stack([got[0, 0], got[-1, 1]]) >= 0.8 * alone).all(), (got, alone)
    assert got[0, 0] > got[-1, 0] and got[-1, 1] > got[0, 1]  # channel 0 fades out, channel 1 in
