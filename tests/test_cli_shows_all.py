"""Point 5 of issue 34: a command line that shows all it can do. ``clipforge --help`` lists every
analysis verb, built-in or installed, without importing torch; analysis verbs take ``--set`` on
their ``run`` block; ``clipforge schema --kind`` gives sweep and analysis specs too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

import clipforge.analysis
import clipforge.cli
from clipforge.cli import main
from clipforge.registry import BUILTIN_DISTRIBUTION, build_registry

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "examples" / "toyworld" / "probe_ball.json"
BUILT_IN = ("probe", "screen", "compare", "blend", "layer")
GROUP = "analyses (each writes report.md, report.json and its figures):"

HELP_WITHOUT_TORCH = (
    "import sys\n"
    "from clipforge.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit as exc:\n"
    "    assert exc.code == 0, exc.code\n"
    "assert 'torch' not in sys.modules\n"
    "assert 'clipforge_plugins' not in sys.modules\n"
)


def help_page(*argv: str, pythonpath: Path | None = None) -> str:
    """``clipforge ARGV --help``'s page, in a process of its own that must not import torch."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPFORGE_")}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", HELP_WITHOUT_TORCH, *argv, "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def analyses_group(page: str) -> dict[str, str]:
    """The verbs of the help page's analyses group, with their one-line help."""
    assert GROUP in page, page
    verbs: dict[str, str] = {}
    verb = ""
    for line in page.split(GROUP, 1)[1].splitlines()[1:]:
        if not line.startswith("  "):
            break
        if line.startswith("   "):  # a long line's continuation
            verbs[verb] += " " + line.strip()
            continue
        verb, _, text = line.strip().partition(" ")
        verbs[verb] = " ".join(text.split())
    return verbs


def test_help_lists_every_built_in_analysis_without_importing_torch():
    verbs = analyses_group(help_page())
    assert set(BUILT_IN) <= set(verbs)
    assert verbs["probe"].startswith("attribute (bias) probe")
    assert verbs["layer"].startswith("feature visualisation")
    # the flags of the listing: a blocked analysis is no verb, and is not listed
    assert "probe" not in analyses_group(help_page("--block", "probe"))


def test_the_help_table_of_built_in_analyses_is_the_registrys():
    """The table that --help reads (it imports no plugin) cannot drift from the analyses themselves."""
    registry = build_registry(autoload=False)
    built_in = {
        e.name: e.cls.description
        for e in registry.entries["analysis"].values()
        if e.distribution == BUILTIN_DISTRIBUTION
    }
    assert clipforge.cli.BUILTIN_ANALYSES == built_in
    # --block names a plugin: the listing takes a built-in analysis's plugin to have its name
    assert all(e.plugin == e.name for e in registry.entries["analysis"].values() if e.name in built_in)


def fake_distribution(site: Path) -> None:
    """An installed distribution ``fake-extras`` whose plugin ``glowing`` declares its analysis ``glow``
    (the module does not exist: listing the verb must not import it)."""
    info = site / "fake_extras-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-extras\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(
        "[clipforge]\nglowing = fake_glow_module\n\n[clipforge.analyses]\nglow = fake_glow_module\n"
    )


def test_help_lists_an_installed_third_party_analysis_from_its_metadata(tmp_path):
    fake_distribution(tmp_path)
    verbs = analyses_group(help_page(pythonpath=tmp_path))
    assert verbs["glow"] == "from fake-extras"
    assert set(BUILT_IN) <= set(verbs)
    assert "glow" not in analyses_group(help_page("--no-autoload", pythonpath=tmp_path))
    assert "glow" not in analyses_group(help_page("--block", "glowing", pythonpath=tmp_path))
    assert "glow" in analyses_group(help_page("--plugins", "glowing", pythonpath=tmp_path))
    # plugins that declare nothing are named by a sentence
    assert "'clipforge plugins' lists them" in help_page(pythonpath=tmp_path)


def spy_on_plans(monkeypatch) -> list:
    seen = []
    plan = clipforge.analysis.plan_analysis

    def spy(analysis, registry):
        seen.append(analysis.options)
        return plan(analysis, registry)

    monkeypatch.setattr(clipforge.analysis, "plan_analysis", spy)
    return seen


def test_set_on_an_analysis_sets_its_run_block(monkeypatch, capsys):
    seen = spy_on_plans(monkeypatch)
    argv = ["probe", str(PROBE), "--set", "steps=7", "--set", "optimizer.lr=0.01", "--set", "device=cpu", "--check"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "is a valid probe spec" in capsys.readouterr().out
    (options,) = seen
    assert options.run["steps"] == 7
    assert options.run["optimizer"]["lr"] == 0.01  # a key the file lacks starts from the run spec's default
    assert options.run["resolution"] == json.loads(PROBE.read_text())["run"]["resolution"]  # the rest stays
    assert options.run_spec(["x"]).steps == 7


def test_an_analysis_help_page_tells_of_set(capsys):
    with pytest.raises(SystemExit):
        main(["probe", "--help"])
    page = capsys.readouterr().out
    assert "--set KEY=VALUE" in page and "'run'" in page


@pytest.mark.parametrize(
    "item, named",
    [
        ("steps=abc", ["--set steps", "run.steps", "'abc'"]),
        ("steps=0", ["--set steps", "run.steps"]),
        ("stpes=100", ["--set stpes", "unknown key"]),
        ('prompts=["a cat"]', ["--set prompts", "the analysis sets it"]),
        ("steps", ["--set", "KEY=VALUE", "'steps'"]),
        ("a[b=1", ["--set", "'a[b'"]),
        ("regularizers[99].options.weight=1", ["--set regularizers[99].options.weight", "does not exist"]),
    ],
)
def test_set_on_an_analysis_refuses_a_bad_key_or_value_naming_it(item, named, capsys):
    assert main(["probe", str(PROBE), "--set", item, "--check"]) == 2
    error = capsys.readouterr().err
    assert "probe_ball.json" in error
    for text in named:
        assert text in error, error


def schema_of(*argv: str, capsys) -> dict:
    assert main(["schema", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_schema_kind_run_is_the_default(capsys):
    assert schema_of("--kind", "run", capsys=capsys) == schema_of(capsys=capsys)


def test_schema_kind_sweep(capsys):
    schema = schema_of("--kind", "sweep", capsys=capsys)
    assert {"base", "prompts", "seeds", "grid", "batch_size"} <= set(schema["properties"])
    assert schema["required"] == ["prompts"]
    jsonschema.Draft202012Validator.check_schema(schema)
    sweep = json.loads((ROOT / "examples" / "sweeps" / "toyworld.json").read_text())
    jsonschema.validate(sweep, schema)
    # the base is a run spec without its prompts and seeds, with every plugin's options
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**sweep, "base": {"stpes": 3}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**sweep, "base": {"prompts": ["x"]}}, schema)


def test_schema_kind_analysis(capsys):
    schemas = schema_of("--kind", "analysis", capsys=capsys)
    assert set(BUILT_IN) <= set(schemas)
    for verb, schema in schemas.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert {"run", "seeds", "judge", "output_dir"} <= set(schema["properties"]), verb
    probe = schema_of("--kind", "analysis:probe", capsys=capsys)
    assert probe == schemas["probe"]
    assert {"prompts", "attribute", "values"} <= set(probe["properties"])
    spec = json.loads(PROBE.read_text())
    jsonschema.validate(spec, probe)
    with pytest.raises(jsonschema.ValidationError):  # its run block is a run spec's settings
        jsonschema.validate({**spec, "run": {**spec["run"], "stpes": 3}}, probe)


def test_schema_kind_names_an_unknown_kind(capsys):
    assert main(["schema", "--kind", "analysis:nope"]) == 2
    error = capsys.readouterr().err
    assert "--kind" in error and "'nope'" in error and "probe" in error
    with pytest.raises(SystemExit) as exit_info:
        main(["schema", "--kind", "runs"])
    assert exit_info.value.code == 2 and "--kind" in capsys.readouterr().err
