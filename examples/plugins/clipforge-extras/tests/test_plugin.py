"""The package as clipforge sees it once installed: found through its entry point, usable by name in
a spec, blockable, and written against the public API only."""

import json
import re
from pathlib import Path

from PIL import Image

import clipforge
from clipforge.cli import main

PACKAGE = Path(__file__).resolve().parent.parent
COMPONENTS = {
    ("augmentation", "gaussian_noise"),
    ("regularizer", "saturation"),
    ("objective", "activation_norm"),
    ("callback", "progress_gif"),
    ("analysis", "brightness"),
    ("reader", "clip_classifier"),
}


def test_found_through_the_entry_point_with_its_distribution():
    registry = clipforge.build_registry()
    assert registry.failures == []
    for kind, name in COMPONENTS:
        entry = registry.get(kind, name)
        assert (entry.plugin, entry.distribution) == ("extras", "clipforge-extras")


def test_listed_by_the_plugins_command(capsys):
    assert main(["plugins", "--json"]) == 0
    plugins = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}
    extras = plugins["extras"]
    assert extras["distribution"] == "clipforge-extras"
    assert {(c["kind"], c["name"]) for c in extras["components"]} == COMPONENTS
    assert sorted(extras["hooks"]) == [
        "register_analyses",
        "register_augmentations",
        "register_callbacks",
        "register_objectives",
        "register_readers",
        "register_regularizers",
    ]


def test_cli_invert_uses_the_components_by_name(tmp_path, make_spec, capsys):
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(make_spec()))
    out = tmp_path / "run"
    assert main(["invert", str(spec_file), "--out", str(out)]) == 0
    assert "wrote 4 image(s)" in capsys.readouterr().out
    with Image.open(out / "progress.gif") as picture:
        assert picture.n_frames == 3  # steps 2, 4, 6
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 6 and len(records[-1]["regularizers"]["saturation"]) == 4
    saved = json.loads((out / "spec.json").read_text())
    assert saved["augmentations"][2] == {"name": "gaussian_noise", "options": {"std": 0.05, "p": 1.0}}


def test_the_shipped_example_spec_is_valid(capsys):
    assert main(["validate", str(PACKAGE / "examples" / "extras.json")]) == 0
    assert "is valid" in capsys.readouterr().out


def test_blocked_by_its_plugin_name(make_spec, tmp_path, capsys):
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(make_spec()))
    assert main(["--block", "extras", "validate", str(spec_file)]) == 2
    err = capsys.readouterr().err
    assert "unknown augmentation 'gaussian_noise'" in err and "unknown callback 'progress_gif'" in err


def test_options_errors_name_the_place_and_the_plugin(make_spec, tmp_path, capsys):
    spec = make_spec(regularizers=[{"name": "saturation", "options": {"target": 3}}])
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    assert main(["validate", str(spec_file)]) == 2
    err = capsys.readouterr().err
    assert "regularizers[0].options.target" in err and "clipforge-extras" in err


def test_written_against_the_public_api_only():
    import clipforge_extras

    assert clipforge_extras.CLIPFORGE_API.split(".")[0] == clipforge.API_VERSION.split(".")[0]
    for path in (PACKAGE / "src" / "clipforge_extras").glob("*.py"):
        for line in path.read_text().splitlines():
            if re.match(r"\s*(from|import)\s+clipforge\b", line):
                assert re.match(r"\s*(from clipforge(\.analysis)? import |import clipforge$)", line), (path.name, line)
