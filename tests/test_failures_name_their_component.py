"""A plugin's component that fails, or returns the wrong shape, inside the loop is reported with its
place in the spec, its name and its plugin; a callback failing at the end leaves no lock and no run
marked finished; a run that cannot start leaves no folder (nor the parents it made), also when
SIGTERM stops it during its start."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import registry_with, resolved, tiny_spec_dict

import clipforge
from clipforge import outputs
from clipforge.engine import ComponentFailedError
from clipforge.resolved import ComponentStartError


class Broken(clipforge.Augmentation):
    name = "broken_aug"

    def __call__(self, copies, ctx):
        raise ValueError("a bug in the plugin")


class HalfCopies(clipforge.Augmentation):
    name = "half_copies"

    def __call__(self, copies, ctx):
        return copies[: copies.shape[0] // 2]


class ScalarRegularizer(clipforge.Regularizer):
    name = "scalar_reg"

    def __call__(self, images):
        return images.mean()  # one value for the batch, not one per image: would broadcast silently


class FailingRegularizer(clipforge.Regularizer):
    name = "failing_reg"

    def __call__(self, images):
        raise KeyError("no such thing")


class FailsAtTheEnd(clipforge.Callback):
    name = "fails_at_the_end"

    def on_run_end(self, run, result):
        raise OSError("disk full")


class FailsAtStep(clipforge.Callback):
    name = "fails_at_step"

    def on_step_end(self, run, state):
        if state.step == 2:
            raise RuntimeError("callback bug")


REGISTRY = registry_with(Broken, HalfCopies, ScalarRegularizer, FailingRegularizer, FailsAtTheEnd, FailsAtStep)
PLUGIN = "from plugin 'extra'"


def run(tmp_path: Path, **overrides):
    spec = tiny_spec_dict(**{"callbacks": [], **overrides})
    return clipforge.Engine(resolved(spec, REGISTRY), out_dir=tmp_path / "out").run()


@pytest.mark.parametrize(
    "overrides, named, why",
    [
        (
            {"augmentations": ["random_affine", "broken_aug"]},
            f"augmentations[1]: augmentation 'broken_aug' {PLUGIN}",
            "failed at step 1: ValueError: a bug in the plugin",
        ),
        (
            {"augmentations": ["half_copies"]},
            f"augmentations[0]: augmentation 'half_copies' {PLUGIN}",
            "returned shape (6, 3, 16, 16) at step 1; expected copies of shape (12, 3, *, *)",
        ),
        (
            {"regularizers": [{"name": "tv", "options": {"weight": 0.1}}, "scalar_reg"]},
            f"regularizers[1]: regularizer 'scalar_reg' {PLUGIN}",
            "returned shape () at step 1; expected one value per image of shape (4)",
        ),
        (
            {"regularizers": ["failing_reg"]},
            f"regularizers[0]: regularizer 'failing_reg' {PLUGIN}",
            "failed at step 1: KeyError",
        ),
        (
            {"callbacks": ["fails_at_step"]},
            f"callbacks[0]: callback 'fails_at_step' {PLUGIN}",
            "failed at the end of step 2: RuntimeError: callback bug",
        ),
    ],
)
def test_a_component_failing_in_the_loop_is_named_with_its_plugin(tmp_path, overrides, named, why):
    spec = tiny_spec_dict(callbacks=[])
    spec.update(overrides)
    with pytest.raises(ComponentFailedError) as caught:
        clipforge.Engine(resolved(spec, REGISTRY), out_dir=tmp_path / "out").run()
    assert named in str(caught.value) and why in str(caught.value), str(caught.value)
    out = tmp_path / "out"
    if out.exists():  # failed after its first step: run.json says who failed
        run_json = json.loads((out / "run.json").read_text())
        assert run_json["status"] == "failed" and named in run_json["error"]
        assert not (out / outputs.LOCK).exists()


class WrongWidth(clipforge.Backbone):
    """A backbone whose image embeddings are not as wide as its text embeddings."""

    name = "wrong_width"
    input_size = (16, 16)

    def __init__(self, options, device):
        super().__init__(options, device)

    def encode_text(self, texts):
        return torch.ones(len(texts), 8)

    def encode_image(self, pixels):
        return pixels.flatten(1)[:, :5]


def test_a_backbone_returning_the_wrong_shape_is_named(tmp_path):
    registry = registry_with(WrongWidth)
    spec = tiny_spec_dict(callbacks=[], backbones=["wrong_width"])
    with pytest.raises(ComponentFailedError, match=r"objective 'prompt'.*backbone 'wrong_width' embeds images in"):
        clipforge.Engine(resolved(spec, registry), out_dir=tmp_path / "out").run()


def test_a_callback_failing_at_the_end_leaves_no_lock_and_no_finished_run(tmp_path):
    with pytest.raises(ComponentFailedError, match="callback 'fails_at_the_end' from plugin 'extra'.*disk full"):
        run(tmp_path, callbacks=["fails_at_the_end"])
    out = tmp_path / "out"
    assert not (out / outputs.LOCK).exists()
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["status"] == "failed" and "fails_at_the_end" in run_json["error"]
    assert len(list((out / "images").glob("*.png"))) == 4  # the images themselves are whole


def test_a_failed_start_leaves_no_empty_parent_folders(tmp_path):
    bad = tiny_spec_dict(callbacks=[], augmentations=["broken_aug"], steps=1)
    bad["backbones"][0]["options"]["pretrained"] = "random"
    bad["backbones"][0]["options"]["config"]["vision_cfg"]["layers"] = "many"  # cannot be built
    with pytest.raises(ComponentStartError):
        clipforge.Engine(resolved(bad, REGISTRY), out_dir=tmp_path / "a" / "b" / "c").run()
    assert not (tmp_path / "a").exists()
    (tmp_path / "kept").mkdir()  # a parent that was there stays
    with pytest.raises(ComponentStartError):
        clipforge.Engine(resolved(bad, REGISTRY), out_dir=tmp_path / "kept" / "b" / "c").run()
    assert (tmp_path / "kept").is_dir() and not (tmp_path / "kept" / "b").exists()


SLOW_START = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
import clipforge
from helpers import resolved, tiny_spec_dict

class SlowStart(clipforge.Callback):
    name = "slow_start"
    def on_run_start(self, run):
        Path(sys.argv[2]).write_text("started")
        time.sleep(60)

spec = tiny_spec_dict(callbacks=[], steps=2)
result = clipforge.Engine(resolved(spec), out_dir=sys.argv[1], callbacks=[SlowStart(clipforge.Options())]).run()
"""


def test_sigterm_during_the_start_leaves_no_folder_that_blocks_a_rerun(tmp_path):
    out, ready = tmp_path / "nested" / "out", tmp_path / "ready"
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_START, str(out), str(ready), str(Path(__file__).parent)],
        stderr=subprocess.PIPE,
        text=True,
        restore_signals=True,
    )
    try:
        for _ in range(1200):
            if ready.exists() or child.poll() is not None:
                break
            time.sleep(0.05)
        assert ready.exists(), child.stderr.read() if child.poll() is not None else "no start"
        assert (out / "run.json").exists()  # mid start: the folder is claimed
        child.send_signal(signal.SIGTERM)
        err = child.communicate(timeout=60)[1]
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode != 0 and "Terminated" in err
    assert not out.exists() and not (tmp_path / "nested").exists()
    # and the same command runs
    assert clipforge.invert(tiny_spec_dict(callbacks=[], steps=2), out).steps_done == 2
