"""progress_gif, driven by hand through the Callback methods on a fake run."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from clipforge_extras import ProgressGif
from PIL import Image
from pydantic import ValidationError

from clipforge import Row, RunInfo, StepState, load_spec


def run_info(out_dir, make_spec, seeds=(0, 1)):
    spec = load_spec(make_spec(prompts=["a red circle"], seeds=list(seeds)))
    rows = [
        Row(index=i, prompt_index=0, seed=s, label="a red circle", slug=f"00-a-red-circle-seed{s}")
        for i, s in enumerate(seeds)
    ]
    return RunInfo(spec=spec, rows=rows, device=torch.device("cpu"), out_dir=out_dir, spec_hash="0" * 12, total_steps=6)


def drive(callback, run, steps=6, stop_at=None):
    """Call the callback as the engine would; images grow from 8 to 16 pixels at step 4.
    Returns how often ``state.images()`` was asked for."""
    asked = []

    def images_at(step, size):
        def images():
            asked.append(step)
            return torch.rand((len(run.rows), 3, size, size), generator=torch.Generator().manual_seed(step))

        return images

    callback.on_run_start(run)
    done = 0
    for step in range(1, (stop_at or steps) + 1):
        size = 8 if step < 4 else 16
        callback.on_step_end(run, StepState(step=step, size=(size, size), _images=images_at(step, size)))
        done = step
    callback.on_run_end(run, SimpleNamespace(images=torch.rand(len(run.rows), 3, 16, 16), steps_done=done))
    return asked


def gif(every=2, **options):
    return ProgressGif(ProgressGif.Options(every=every, **options))


def test_frames_every_n_steps_at_the_final_size(tmp_path, make_spec):
    asked = drive(gif(), run_info(tmp_path, make_spec))
    assert asked == [2, 4, 6]  # images only asked for every N steps
    with Image.open(tmp_path / "progress.gif") as picture:
        assert picture.n_frames == 3  # the last step was a frame step: no extra final frame
        # two 16-pixel images side by side (one column per seed) with 2-pixel gaps
        assert picture.size == (2 * 16 + 3 * 2, 16 + 2 * 2)


def test_an_interrupted_run_ends_on_its_final_images(tmp_path, make_spec):
    drive(gif(filename="run.gif"), run_info(tmp_path, make_spec), stop_at=5)
    with Image.open(tmp_path / "run.gif") as picture:
        assert picture.n_frames == 3  # steps 2 and 4, then the final images


def test_nothing_happens_without_an_output_directory(tmp_path, make_spec, monkeypatch):
    monkeypatch.chdir(tmp_path)
    callback = gif()
    assert drive(callback, run_info(None, make_spec)) == []
    assert list(Path(tmp_path).iterdir()) == []
    assert callback.frames == []


def test_a_run_with_no_frame_step_still_gets_its_final_images(tmp_path, make_spec):
    drive(gif(every=100), run_info(tmp_path, make_spec, seeds=(0,)))
    with Image.open(tmp_path / "progress.gif") as picture:
        assert picture.n_frames == 1 and picture.size == (20, 20)


@pytest.mark.parametrize(
    "bad", [{"filename": "../x.gif"}, {"filename": "x.png"}, {"every": 0}, {"frame_ms": 1}, {"fps": 10}]
)
def test_bad_options_are_rejected(bad):
    with pytest.raises(ValidationError):
        ProgressGif.Options(**bad)
