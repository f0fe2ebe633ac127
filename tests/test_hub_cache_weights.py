"""Real weights through open_clip's own loading path: a pretrained tag whose weights are in the
Hugging Face hub cache (the usual set-up on cluster nodes without a network), run offline, and the
message when the cache is empty and downloads are off.

open_clip's smallest model with weights on the hub has 62 M parameters (250 MB of random weights to
write): too slow for a test. So each run registers a tiny architecture with open_clip and a
pretrained tag for it hosted on the hub (``clipforge-test/tiny-clip``), exactly as open_clip
registers its own (``_PRETRAINED``, with ``hf_hub``), and then runs ``clipforge invert`` in that
process: the tag's validation, open_clip's download code, huggingface_hub's offline cache lookup and
clipforge's loading are all the real ones; only the size differs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from helpers import TINY_CONFIG

MODEL, TAG, REPO = "clipforge-tiny-test", "hubtag", "clipforge-test/tiny-clip"

#: run in the child: register the tiny model and its tag with open_clip, then clipforge's command line
BOOTSTRAP = f"""
import sys
import open_clip
from open_clip.pretrained import _PRETRAINED, _pcfg
open_clip.add_model_config(sys.argv[1])
_PRETRAINED[{MODEL!r}] = {{{TAG!r}: _pcfg(hf_hub={REPO + "/"!r}, quick_gelu=True)}}
from clipforge.cli import main
sys.exit(main(sys.argv[2:]))
"""


def write_model_config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{MODEL}.json").write_text(json.dumps(TINY_CONFIG))
    return folder


def fill_hub_cache(cache: Path, config_dir: Path) -> Path:
    """Random weights of the tiny model where huggingface_hub keeps a download of REPO's main
    revision: ``models--ORG--NAME/refs/main`` names a commit, ``snapshots/<commit>/`` holds the file."""
    import open_clip
    from safetensors.torch import save_file

    open_clip.add_model_config(config_dir)
    torch.manual_seed(3)
    model = open_clip.create_model(MODEL, pretrained=None)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / f"models--{REPO.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    weights = snapshot / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return weights


def run_offline(tmp_path: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    spec = {
        "prompts": ["a red circle"],
        "seeds": [0],
        "backbones": [{"name": "open_clip", "options": {"model": MODEL, "pretrained": TAG}}],
        "steps": 2,
        "copies": 2,
        "resolution": [{"step": 0, "size": 16}],
        "callbacks": [{"name": "progress", "options": {"disable": True}}],
        "device": "cpu",
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("HUGGINGFACE_HUB_CACHE", None)
    command = [sys.executable, "-c", BOOTSTRAP, str(tmp_path / "configs"), "invert", str(path), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_a_pretrained_tag_loads_offline_from_a_filled_hub_cache(tmp_path):
    configs = write_model_config(tmp_path / "configs")
    home = tmp_path / "hf"
    weights = fill_hub_cache(home / "hub", configs)
    done = run_offline(tmp_path, home, "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "wrote 1 image(s)" in done.stdout
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["status"] == "finished"
    assert run["backbones"] == [f"open_clip:{MODEL}/{TAG}"]
    assert (tmp_path / "out" / "images").is_dir()

    # the weights came from the cache: other weights there give another run
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(weights))
    save_file({k: torch.zeros_like(v) if "proj" in k else v for k, v in tensors.items()}, str(weights))
    again = run_offline(tmp_path, home, "--out", str(tmp_path / "out2"))
    assert again.returncode == 0, again.stderr
    first = json.loads((tmp_path / "out" / "run.json").read_text())["final"]["similarity"]
    second = json.loads((tmp_path / "out2" / "run.json").read_text())["final"]["similarity"]
    assert first != second


def test_an_empty_cache_with_downloads_off_says_how_to_provide_the_weights(tmp_path):
    write_model_config(tmp_path / "configs")
    home = tmp_path / "hf"
    done = run_offline(tmp_path, home, "--out", str(tmp_path / "out"))
    assert done.returncode != 0
    message = " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
    assert f"{MODEL!r}" in message and f"{TAG!r}" in message, message
    assert "HF_HUB_OFFLINE" in message, message  # why nothing was downloaded (at once, no retries)
    assert str(home / "hub") in message, message  # where it looked
    assert REPO in message, message  # what the cache should hold
    assert "checkpoint file" in message, message  # the three ways to provide the weights
    assert "pre-filled" in message and "HF_HUB_CACHE" in message, message
    assert "network" in message, message
    assert not (tmp_path / "out").exists()  # a failed start leaves nothing
