import json

import pytest

from clipforge import RunSpec, SpecError, default_registry, load_spec
from clipforge.cli import full_schema, main
from clipforge.spec import apply_overrides, check_components, resolved_spec


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
        ({"regularizers": [{"name": "tv"}, {"name": "l11", "options": {"weight": 1}}]}, "regularizers[1].name",
         "did you mean 'l1'"),
        ({"regularizers": [{"name": "tv"}, {"name": "l1", "options": {"weight": "abc"}}]},
         "regularizers[1].options.weight", "valid number"),
        ({"augmentations": [{"name": "random_affine", "options": {"degree": 3}}]},
         "augmentations[0].options.degree", "unknown key"),
        ({"backbones": [{"name": "open_clip", "options": {"model": "ViT-B-61"}}]}, "backbones[0].options.model",
         "did you mean 'ViT-B-16'"),
        ({"backbones": [{"name": "open_clip", "options": {"model": "ViT-B-16", "pretrained": "laion9"}}]},
         "backbones[0].options.pretrained", "openai"),
        ({"prompts": [{"text": "a", "terms": [{"text": "b"}]}]}, "prompts[0]", "exactly one of"),
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
    resolved = resolved_spec(spec, check_components(spec, default_registry()))
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
    data = apply_overrides({"prompts": ["x"]}, ["steps=10", "optimizer.lr=0.05", "regularizers[0].options.weight=0",
                                                  "prompts[0]=a cat", "device=cpu"])
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
