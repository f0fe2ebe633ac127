"""Point 3 of issue 24: a command line like the tools researchers know: --version, global flags
anywhere, a description and examples on every verb's help, --help without torch, ``invert
--prompt`` and ``clipforge models``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import tiny_backbone

import clipforge
from clipforge.catalog import list_models, weights_cached
from clipforge.cli import COMMANDS, main
from clipforge.toyworld import bundled_models


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"clipforge {clipforge.__version__}"


def test_help_and_version_import_neither_torch_nor_the_plugins():
    code = (
        "import sys\n"
        "from clipforge.cli import main\n"
        "for argv in (['--help'], ['--version'], ['invert', '--help'], ['sweep', '-h']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, (argv, exc.code)\n"
        "    assert 'torch' not in sys.modules, argv\n"
        "    assert 'clipforge_plugins' not in sys.modules, argv\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("verb", [*COMMANDS, "probe", "screen", "compare", "blend"])
def test_every_verb_has_a_description_and_an_example(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    page = capsys.readouterr().out
    assert "examples:" in page and f"clipforge {verb}" in page.split("examples:")[1]
    description = page.split("\n\n")[1]  # the paragraph after the usage
    assert not description.startswith(("positional", "options")) and len(description) > 40
    assert "--traceback" in page  # the global flags are named on every page


def test_global_flags_go_anywhere(tmp_path, capsys):
    assert main(["plugins", "--json", "--block", "probe"]) == 0
    names = {c["name"] for p in json.loads(capsys.readouterr().out)["plugins"] for c in p["components"]}
    assert "probe" not in names and "screen" in names
    # after the verb and its spec, as in "clipforge invert x.json --traceback"
    missing = str(tmp_path / "x.json")
    assert main(["validate", missing, "--traceback"]) == 2
    assert "x.json" in capsys.readouterr().err


def test_invert_from_prompts_on_the_command_line_saves_the_full_spec(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    backbones = json.dumps([tiny_backbone()])
    argv = ["invert", "--prompt", "a red circle", "--prompt", "a blue square", "--steps", "2", "--seeds", "0,3"]
    argv += ["--copies", "2", "--set", f"backbones={backbones}", "--set", 'resolution=[{"step": 0, "size": 16}]']
    argv += ["--set", 'callbacks=[{"name": "progress", "options": {"disable": true}}]', "--threads", "1"]
    assert main(argv) == 0
    folders = list((tmp_path / "runs").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("a-red-circle-")
    spec = json.loads((folders[0] / "spec.json").read_text())
    assert [p["text"] for p in spec["prompts"]] == ["a red circle", "a blue square"]
    assert spec["seeds"] == [0, 3] and spec["steps"] == 2 and spec["copies"] == 2
    assert spec["regularizers"] and spec["augmentations"] and spec["optimizer"]  # the defaults, written out
    assert len(list((folders[0] / "images").glob("*.png"))) == 4
    # --model makes the backbone (checked by validate's twin: a spec file with the flags over it)
    path = tmp_path / "base.json"
    path.write_text(json.dumps({"prompts": ["a red circle"], "steps": 5}))
    out = tmp_path / "m"
    assert main(["invert", str(path), "--model", "toyworld-rn", "--steps", "1", "--out", str(out), "--set",
                 "copies=1", "--set", 'resolution=[{"step": 0, "size": 16}]', "--threads", "1"]) == 0  # fmt: skip
    spec = json.loads((out / "spec.json").read_text())
    assert spec["backbones"] == [{"name": "open_clip", "options": spec["backbones"][0]["options"]}]
    assert spec["backbones"][0]["options"]["model"] == "toyworld-rn" and spec["steps"] == 1
    assert spec["prompts"][0]["text"] == "a red circle"


def test_invert_needs_a_spec_or_a_prompt_and_no_flags_with_resume(capsys):
    assert main(["invert"]) == 2
    assert "--prompt TEXT" in capsys.readouterr().err
    assert main(["invert", "--resume", "somewhere", "--prompt", "a cat"]) == 2
    assert "--prompt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["invert", "--prompt", "a cat", "--seeds", "one"])


def fake_hub_file(cache, repo: str, filename: str) -> None:
    """A file where huggingface_hub keeps a download of ``repo``'s main revision."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "snapshots" / commit / filename).write_bytes(b"weights")


def test_models_lists_bundled_and_open_clip_models_and_whether_their_weights_are_here(tmp_path, capsys):
    import open_clip

    cache = tmp_path / "hub"
    hub = open_clip.get_pretrained_cfg("ViT-B-32", "openai")["hf_hub"]
    fake_hub_file(cache, hub.rstrip("/"), "open_clip_model.safetensors")  # open_clip's safetensors twin
    assert weights_cached(open_clip.get_pretrained_cfg("ViT-B-32", "openai"), str(cache))
    assert not weights_cached(open_clip.get_pretrained_cfg("RN50", "openai"), str(cache))

    entries = list_models(cache_dir=str(cache))
    bundled = [e for e in entries if e.source == "bundled"]
    assert {e.model for e in bundled} == set(bundled_models()) and all(e.offline for e in bundled)
    pairs = {(e.model, e.tag): e.offline for e in entries if e.source == "open_clip"}
    assert set(pairs) == set(open_clip.list_pretrained())
    same_file = {pair for pair in pairs if open_clip.get_pretrained_cfg(*pair).get("hf_hub") == hub}
    assert ("ViT-B-32", "openai") in same_file  # with ViT-B-32-quickgelu's openai tag: one file
    assert {pair for pair, here in pairs.items() if here} == same_file

    assert main(["models", "--json", "--offline", "--cache-dir", str(cache)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {(e["model"], e["tag"]) for e in listed} == {
        *((name, None) for name in bundled_models()),
        *same_file,
    }
    assert main(["models", "--cache-dir", str(cache)]) == 0
    table = capsys.readouterr().out
    assert "toyworld-rn" in table and "laion2b" in table and "yes (cached)" in table
