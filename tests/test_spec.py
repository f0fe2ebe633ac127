import json

import pytest

from clipforge import RunSpec, SpecError, default_registry, load_spec, specfile
from clipforge.cli import main
from clipforge.commands import full_schema


def apply_overrides(data, overrides):
    """``--set`` overrides of a run spec (a key it lacks starts from the run spec's default)."""
    return specfile.apply_overrides(data, overrides, RunSpec)


def write(tmp_path, data, name="spec.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def validate(capsys, path, *extra):
    code = main(["validate", str(path), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_valid_spec_passes(tmp_path, capsys, tiny_spec):
    code, out, err = validate(capsys, write(tmp_path, tiny_spec))
    assert code == 0 and "is valid" in out and err == ""


@pytest.mark.parametrize(
    "change, where, words",
    [
        ({"steps": "many"}, "steps", "valid integer"),
        ({"stepz": 5}, "stepz", "unknown key"),
        (
            {"regularizers": [{"name": "tv"}, {"name": "l11", "options": {"weight": 1}}]},
            "regularizers[1].name",
            "did you mean 'l1'",
        ),
        (
            {"regularizers": [{"name": "tv"}, {"name": "l1", "options": {"weight": "abc"}}]},
            "regularizers[1].options.weight",
            "valid number",
        ),
        (
            {"augmentations": [{"name": "random_affine", "options": {"degree": 3}}]},
            "augmentations[0].options.degree",
            "unknown key",
        ),
        (
            {"backbones": [{"name": "open_clip", "options": {"model": "ViT-B-61"}}]},
            "backbones[0].options.model",
            "did you mean 'ViT-B-16'",
        ),
        (
            {"backbones": [{"name": "open_clip", "options": {"model": "ViT-B-16", "pretrained": "laion9"}}]},
            "backbones[0].options.pretrained",
            "openai",
        ),
        ({"prompts": [{"text": "a", "terms": [{"text": "b"}]}]}, "prompts[0]", "at most one of"),
        ({"resolution": [{"step": 5, "size": 64}]}, "resolution", "step 0"),
        ({"device": "gpu"}, "device", "'cuda'"),
    ],
)
def test_invalid_specs_name_the_place(tmp_path, capsys, tiny_spec, change, where, words):
    code, out, err = validate(capsys, write(tmp_path, {**tiny_spec, **change}))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {tmp_path / 'spec.json'}: {where}:"), lines[0]
    assert words in lines[0]
    assert "Traceback" not in err


def test_malformed_json_and_missing_file(tmp_path, capsys):
    code, _, err = validate(capsys, write(tmp_path, '{"prompts": ["x",]}'))
    assert code == 2 and "invalid JSON at line 1, column 18" in err and "Traceback" not in err
    code, _, err = validate(capsys, tmp_path / "nope.json")
    assert code == 2 and "nope.json: no such file" in err


def test_every_problem_is_reported(tmp_path, capsys, tiny_spec):
    code, _, err = validate(capsys, write(tmp_path, {**tiny_spec, "steps": -1, "copies": "x"}))
    assert code == 2 and "steps:" in err and "copies:" in err


def test_prompt_only_spec_is_the_paper_setup():
    spec = load_spec({"prompts": ["a dog"]})
    resolved = default_registry().resolve(spec).spec
    assert resolved.backbones[0].name == "open_clip"
    assert resolved.backbones[0].options["model"] == "ViT-B-16"
    assert resolved.backbones[0].options["pretrained"] == "openai"
    assert resolved.parameterization.name == "pixel"
    assert resolved.parameterization.options["init"] == "uniform"
    assert [a.name for a in resolved.augmentations] == ["random_affine", "resize", "color_shift"]
    affine = resolved.augmentations[0].options
    assert affine["degrees"] == 30 and affine["translate"] == 0.1 and tuple(affine["scale"]) == (0.7, 1.2)
    assert affine["p"] == 0.5 and affine["padding"] == "border"
    assert resolved.augmentations[1].options == {"size": None, "mode": "bicubic"}
    assert resolved.augmentations[2].options == {"mean": 0.0, "std": 0.0}
    assert resolved.copies == 13
    assert {r.name: r.options["weight"] for r in resolved.regularizers} == {"tv": 0.005, "l1": 0.0}
    assert resolved.data_term == "l2"
    opt = resolved.optimizer
    assert opt.name == "adam" and opt.lr == 0.1 and opt.betas == (0.9, 0.999) and opt.grad_clip == 1.0
    assert opt.reset_on_resize is True
    assert resolved.steps == 3400
    assert [(r.step, r.size) for r in resolved.resolution] == [(0, 64), (900, 128), (1800, 224)]
    assert resolved.seeds == [0]
    assert resolved.output.rescale == "minmax"
    snapshots = [c for c in resolved.callbacks if c.name == "snapshots"][0]
    assert snapshots.options["every"] == 100


def test_overrides():
    data = apply_overrides(
        {"prompts": ["x"]},
        ["steps=10", "optimizer.lr=0.05", "regularizers[0].options.weight=0", "prompts[0]=a cat", "device=cpu"],
    )
    assert data["steps"] == 10 and data["optimizer"]["lr"] == 0.05 and data["prompts"] == ["a cat"]
    assert data["regularizers"][0] == {"name": "tv", "options": {"weight": 0}}
    with pytest.raises(SpecError, match="prompts\\[3\\] does not exist"):
        apply_overrides({"prompts": ["x"]}, ["prompts[3]=y"])
    with pytest.raises(SpecError, match="KEY=VALUE"):
        apply_overrides({}, ["steps"])


def test_load_spec_does_not_mutate_the_callers_dict(tiny_spec):
    before = json.dumps(tiny_spec, sort_keys=True)
    load_spec(tiny_spec, ["steps=3"])
    assert json.dumps(tiny_spec, sort_keys=True) == before


def test_hash_ignores_where_results_go(tiny_spec):
    a = load_spec(tiny_spec)
    b = load_spec({**tiny_spec, "output_dir": "elsewhere", "device": "cpu"})
    c = load_spec({**tiny_spec, "steps": 7})
    assert a.hash() == b.hash() != c.hash()


def test_schema_has_every_plugins_options(capsys):
    schema = full_schema(default_registry())
    refs = schema["$defs"]["RegularizerRef"]["anyOf"]
    tv = [r for r in refs if r.get("properties", {}).get("name", {}).get("const") == "tv"][0]
    assert "weight" in tv["properties"]["options"]["properties"]
    assert schema["properties"]["regularizers"]["items"] == {"$ref": "#/$defs/RegularizerRef"}
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert "BackboneRef" in printed["$defs"]


def test_runspec_rejects_unknown_keys_in_parts():
    with pytest.raises(SpecError, match="optimizer.momentum: unknown key"):
        load_spec({"prompts": ["x"], "optimizer": {"momentum": 0.9}})
    assert isinstance(load_spec({"prompts": ["x"]}), RunSpec)


# --------------------------------------------------------------------------- exact messages and edges


def test_spec_error_format_with_and_without_a_source():
    assert str(SpecError([("a.b", "bad"), ("", "whole")], "s.json")) == "s.json: a.b: bad\ns.json: whole"
    assert str(SpecError([("a.b", "bad"), ("", "whole")])) == "a.b: bad\nwhole"


def test_problems_quote_a_bad_scalar_but_not_missing_fields_objects_or_value_errors():
    from clipforge.spec import parse_spec

    with pytest.raises(SpecError) as info:
        parse_spec({"prompts": ["a"], "steps": "many", "copies": {"n": 2}})
    lines = str(info.value).splitlines()
    assert "steps: Input should be a valid integer, unable to parse string as an integer (got 'many')" in lines
    assert any(line.startswith("copies: ") and "(got" not in line for line in lines)
    with pytest.raises(SpecError) as info:  # the paper's goal needs prompts: said when the spec is resolved
        default_registry().resolve(parse_spec({"steps": 3}))
    assert str(info.value).startswith("prompts: is missing: the objective 'prompt' (objectives[0]) needs prompts")
    with pytest.raises(SpecError) as info:
        parse_spec({"prompts": [{"text": "a", "terms": [{"text": "b"}]}]})
    assert "(got" not in str(info.value) and "give at most one of" in str(info.value)
    with pytest.raises(SpecError, match=r"^s\.json: a spec must be a JSON object, not an array$"):
        parse_spec([1], "s.json")


def test_spec_files_that_cannot_be_read(tmp_path):
    from clipforge.specfile import read_spec_file

    with pytest.raises(SpecError) as info:
        read_spec_file(tmp_path / "none.json")
    assert str(info.value) == f"{tmp_path / 'none.json'}: no such file"
    with pytest.raises(SpecError) as info:
        read_spec_file(tmp_path)
    assert str(info.value) == f"{tmp_path}: cannot read: Is a directory"
    bad = write(tmp_path, '{"prompts":\n    ["a",]}')
    with pytest.raises(SpecError) as info:
        read_spec_file(bad)
    assert str(info.value).startswith(f"{bad}: invalid JSON at line 2, column 10: ")
    assert read_spec_file(write(tmp_path, {"prompts": ["café"]}, "u.json")) == {"prompts": ["café"]}


def test_load_spec_sources_and_override_errors_name_the_file(tmp_path):
    spec = RunSpec(prompts=["a"])
    assert load_spec(spec) is spec
    assert load_spec(spec, ["steps=5"]).steps == 5 and spec.steps != 5
    path = write(tmp_path, {"prompts": ["a"]})
    with pytest.raises(SpecError) as info:
        load_spec(path, ["steps"])
    assert str(info.value) == f"{path}: --set: expected KEY=VALUE, got 'steps'"
    assert load_spec(path, ["output_dir=a=b"]).output_dir == "a=b"  # only the first '=' splits


@pytest.mark.parametrize(
    "override, message",
    [
        ("steps.x=1", "--set steps.x: steps is not an object"),
        ("augmentations[3].options.p=1", "--set augmentations[3].options.p: augmentations[3] does not exist"),
        ("resolution[1]=1", "--set resolution[1]: resolution[1] does not exist"),
        ("a..b=1", "--set: cannot parse key 'a..b'"),
        ("a[x]=1", "--set: cannot parse key 'a[x]'"),
        ("=1", "--set: cannot parse key ''"),
        ("newlist[0]=1", "--set newlist[0]: newlist is not set in the spec; set the whole list"),
    ],
)
def test_override_errors(override, message):
    data = {"prompts": ["a"], "resolution": [{"step": 0, "size": 16}]}
    with pytest.raises(SpecError) as info:
        apply_overrides(data, [override])
    assert str(info.value) == message


def test_overrides_create_nested_objects_and_start_lists_from_their_defaults():
    data = apply_overrides({"prompts": ["a"]}, ["performance.extra.deep=1", "regularizers[1].options.weight=0.5"])
    assert data["performance"]["extra"] == {"deep": 1} and data["performance"]["precision"] == "fp32"
    assert data["regularizers"] == [
        {"name": "tv", "options": {"weight": 0.005}},
        {"name": "l1", "options": {"weight": 0.5}},
    ]


def test_resolve_reports_every_problem_with_its_path():
    spec = RunSpec(
        prompts=["a"], parameterization="no_such", regularizers=["nope", {"name": "tv", "options": {"w": 1}}]
    )
    with pytest.raises(SpecError) as info:
        default_registry().resolve(spec)
    paths = [p for p, _ in info.value.problems]
    assert paths == ["parameterization.name", "regularizers[0].name", "regularizers[1].options.w"]


def test_resolved_options_are_plain_json():
    spec = RunSpec(prompts=["a"], augmentations=[{"name": "random_affine"}])
    resolved = default_registry().resolve(spec).spec
    options = resolved.augmentations[0].options
    assert isinstance(options["scale"], list) and json.loads(json.dumps(options)) == options


def test_hash_does_not_depend_on_the_order_of_option_keys():
    a = RunSpec(prompts=["a"], regularizers=[{"name": "tv", "options": {"weight": 1, "p": 2}}])
    b = RunSpec(prompts=["a"], regularizers=[{"name": "tv", "options": {"p": 2, "weight": 1}}])
    assert a.hash() == b.hash() and len(a.hash()) == 12
    for change in ({"callbacks": []}, {"log_every": 7}, {"device": "cpu"}, {"output_dir": "x"}):
        assert RunSpec(prompts=["a"], **change).hash() == RunSpec(prompts=["a"]).hash(), change


def test_size_at_switches_on_the_step_of_a_resolution_entry():
    spec = RunSpec(prompts=["a"], steps=6, resolution=[{"step": 0, "size": 16}, {"step": 3, "size": 32}])
    assert [spec.size_at(i) for i in range(6)] == [16, 16, 16, 32, 32, 32]


def test_prompt_weights_multiply_and_display(tmp_path):
    from clipforge import Prompt

    p = Prompt.model_validate(
        {"terms": [{"text": "a cat", "weight": 2}, {"text": "a dog", "weight": -1}], "weight": 0.5}
    )
    assert [(t.text, t.weight) for t in p.resolved_terms()] == [("a cat", 1.0), ("a dog", -0.5)]
    assert p.display() == "2*a cat + -1*a dog"
    single = Prompt.model_validate({"text": "a cat", "weight": 3})
    assert [(t.text, t.weight) for t in single.resolved_terms()] == [("a cat", 3.0)]


def test_image_paths_resolve_against_the_spec_folder_and_absolute_ones_stay(tmp_path):
    from PIL import Image

    (tmp_path / "sub").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "sub" / "cat.png")
    spec = load_spec(write(tmp_path / "sub", {"prompts": [{"image": "cat.png"}]}))
    assert spec.prompts[0].image == str((tmp_path / "sub" / "cat.png").resolve())
    assert spec.prompts[0].display() == "image:cat.png"
    absolute = load_spec(write(tmp_path, {"prompts": [{"image": str(tmp_path / "sub" / "cat.png")}]}))
    assert absolute.prompts[0].image == str((tmp_path / "sub" / "cat.png").resolve())
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, {"prompts": [{"image": "dog.png"}]}))
    assert repr(str(tmp_path / "dog.png")) in str(info.value)


def test_format_loc():
    from clipforge.errors import format_loc

    assert format_loc(("a", 0, "b")) == "a[0].b" and format_loc(("b",), "x") == "x.b"


# --------------------------------------------------------------------------- one check per command


@pytest.fixture
def checks(monkeypatch):
    """Every run spec parsed (``parse_spec``) and checked against the registry (``Registry.resolve``)
    from now on, as ("parse" | "resolve", JSON path of the run spec in its file)."""
    import clipforge.analysis_spec
    import clipforge.spec
    import clipforge.sweep.spec
    from clipforge.registry import Registry

    seen: list[tuple[str, str]] = []
    parse, resolve = clipforge.spec.parse_spec, Registry.resolve

    def parse_spy(data, source=None):
        seen.append(("parse", ""))
        return parse(data, source)

    def resolve_spy(self, spec, where="", **options):
        seen.append(("resolve", where))
        return resolve(self, spec, where, **options)

    monkeypatch.setattr(clipforge.spec, "parse_spec", parse_spy)
    monkeypatch.setattr(clipforge.analysis_spec, "parse_spec", parse_spy)
    monkeypatch.setattr(clipforge.sweep.spec, "parse_spec", parse_spy)
    monkeypatch.setattr(Registry, "resolve", resolve_spy)
    return seen


def _analysis_specs():
    from helpers import tiny_backbone

    run = {
        "backbones": [tiny_backbone(0)],
        "steps": 2,
        "copies": 2,
        "resolution": [{"step": 0, "size": 32}],
        "callbacks": [],
    }
    judge = tiny_backbone(1)
    return {
        "probe": {"run": run, "seeds": 1, "judge": judge, "prompts": ["a cat"]},
        "compare": {
            "run": run,
            "seeds": 1,
            "judge": judge,
            "prompts": ["a cat"],
            "backbones": {"small": tiny_backbone(2), "other": tiny_backbone(3)},
        },
    }


@pytest.mark.parametrize("command", ["validate", "invert", "probe --check", "probe", "compare --check", "compare"])
def test_a_spec_is_checked_exactly_once_per_command(command, checks, tmp_path, tiny_spec, capsys):
    verb, *flags = command.split()
    if verb in ("validate", "invert"):
        path = write(tmp_path, {**tiny_spec, "steps": 2, "callbacks": []})
        expected = [("parse", ""), ("resolve", "")]
    else:
        path = write(tmp_path, _analysis_specs()[verb])
        wheres = ["run"] if verb == "probe" else ["backbones.small", "backbones.other"]
        expected = [("parse", "")] * len(wheres) + [("resolve", w) for w in wheres]
    if verb == "invert" or (verb != "validate" and not flags):
        flags.append(f"--out={tmp_path / 'out'}")
    assert main([verb, str(path), *flags]) == 0, capsys.readouterr().err
    assert checks == expected


@pytest.mark.parametrize("flags", [["--plan"], []])
def test_a_sweep_checks_each_grid_point_once_whatever_its_blocks(flags, checks, tmp_path, capsys):
    """Each grid point is resolved once and carried with its resolved spec: not again for every
    block, nor for the plan."""
    from helpers import tiny_sweep_base

    sweep = {
        "base": tiny_sweep_base(),
        "prompts": ["a", "b", "c"],
        "seeds": 2,
        "batch_size": 2,  # three blocks per grid point
        "grid": {"optimizer.lr": [0.1, 0.2]},
    }
    path = write(tmp_path, sweep, "sweep.json")
    assert main(["sweep", str(path), f"--out={tmp_path / 'out'}", *flags]) == 0, capsys.readouterr().err
    assert checks == [("parse", ""), ("resolve", "")] * 2
