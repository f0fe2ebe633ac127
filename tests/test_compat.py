"""clipforge/compat.py: every shim still does what the old code did, and says that it goes (a
DeprecationWarning naming the version, 0.3), so that nothing old is accepted in silence."""

from __future__ import annotations

import inspect
import json
import warnings

import pytest
import torch
from helpers import DimOnlyHere, registry_with, resolved, tiny_backbone, tiny_spec_dict

import clipforge
from clipforge import SpecError, compat
from clipforge.analysis import candidate_captions
from clipforge.engine import Engine

GOES = r"goes in 0\.3"
CPU = torch.device("cpu")


def small_spec(**overrides) -> dict:
    return tiny_spec_dict(**{"steps": 2, "callbacks": [], "device": "cpu", **overrides})


def test_the_shims_go_in_0_3():
    assert compat.GOES_IN == "0.3"


def test_engine_given_a_dict_warns_where_it_is_called_and_makes_the_same_images():
    spec = small_spec()
    with pytest.warns(DeprecationWarning, match=rf"Engine\(spec dict\) {GOES}") as caught:
        old = Engine(spec)
    assert [w.filename for w in caught if issubclass(w.category, DeprecationWarning)] == [__file__]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        new = Engine(resolved(spec))
    assert old.spec.hash() == new.spec.hash()
    assert torch.equal(old.run().images, new.run().images)


def test_engine_given_a_path_or_a_run_spec_warns_too(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(small_spec()))
    for spec in (path, clipforge.load_spec(path)):
        with pytest.warns(DeprecationWarning, match=GOES):
            engine = Engine(spec)
        assert engine.spec.hash() == resolved(path).spec.hash()


def test_engine_given_a_dict_and_a_registry_resolves_with_that_registry():
    spec = small_spec(regularizers=["dim_only_here"])
    with pytest.raises(SpecError, match="dim_only_here"):  # the default registry knows no such regularizer
        with pytest.warns(DeprecationWarning, match=GOES):
            Engine(spec)
    registry = registry_with(DimOnlyHere)
    with pytest.warns(DeprecationWarning, match=GOES):
        engine = Engine(spec, registry=registry)
    assert engine.resolved.spec.hash() == resolved(spec, registry).spec.hash()


def test_engine_given_a_resolved_spec_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        Engine(resolved(small_spec()))


def test_toyworld_captions_are_the_worlds_captions_and_warned_of():
    judge = clipforge.load_backbone({"name": "open_clip", "options": {"model": "toyworld-judge-rn"}}, CPU)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        world = candidate_captions("world", ["a red circle"], judge)
        assert candidate_captions(["a", "b"], ["b"], judge) == ["a", "b"]
        assert candidate_captions(None, ["b"], judge) == ["b"]
    with pytest.warns(DeprecationWarning, match=rf"captions: 'toyworld' {GOES}: write 'world'") as caught:
        assert candidate_captions("toyworld", ["a red circle"], judge) == world
    assert [w.filename for w in caught if issubclass(w.category, DeprecationWarning)] == [__file__]


def test_toyworld_captions_without_a_world_are_refused_under_the_new_name():
    with pytest.warns(DeprecationWarning, match=GOES):
        with pytest.raises(SpecError, match=r"'world' asks the judge for its world's captions"):
            candidate_captions("toyworld", ["a cat"], clipforge.load_backbone(tiny_backbone(), CPU))


def test_blends_toyworld_controls_are_the_readers_and_warned_of():
    from clipforge_plugins.analysis_blend import BlendSpec

    base = {"judge": tiny_backbone(1), "pairs": [("a red circle", "a blue square")]}
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        new = BlendSpec(**base, controls="reader")
        BlendSpec(**base, controls=["a green triangle"])
    with pytest.warns(DeprecationWarning, match=rf"controls: 'toyworld' {GOES}: write 'reader'") as caught:
        old = BlendSpec(**base, controls="toyworld")
    assert [w.filename for w in caught if issubclass(w.category, DeprecationWarning)] == [__file__]
    reader = clipforge.default_registry().build("reader", "toyworld", CPU)
    assert old.pair_controls(*base["pairs"][0], reader) == new.pair_controls(*base["pairs"][0], reader)


# --------------------------------------------------------------------------- every public function warns

CALLS = {
    "deprecated": lambda: compat.deprecated("an old thing", "use the new one"),
    "resolve_for_engine": lambda: compat.resolve_for_engine(small_spec()),
    "world_captions_name": lambda: compat.world_captions_name("toyworld"),
}


def public_functions() -> list[str]:
    return sorted(
        name
        for name, value in vars(compat).items()
        if inspect.isfunction(value) and value.__module__ == compat.__name__ and not name.startswith("_")
    )


def test_every_public_function_of_compat_is_checked_here():
    assert public_functions() == sorted(CALLS), "a new shim in clipforge/compat.py: add a call that warns to CALLS"


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_public_function_of_compat_warns_naming_the_version(name):
    with pytest.warns(DeprecationWarning, match=GOES):
        CALLS[name]()


def test_the_shims_are_listed_in_compats_docstring():
    for name in public_functions():
        if name != "deprecated":  # the tool that warns, not a shim
            assert f":func:`{name}`" in compat.__doc__, name


def test_what_the_shims_return():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert compat.world_captions_name("toyworld") == "world"
        assert compat.resolve_for_engine(small_spec()).spec.hash() == resolved(small_spec()).spec.hash()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for value in ("world", ["toyworld"], None):  # only the old name itself is old
            assert compat.world_captions_name(value) == value


def test_the_command_line_shows_a_deprecated_name_in_a_spec(tmp_path):
    """Python hides a DeprecationWarning raised outside __main__; the command shows clipforge's own, so
    a spec file using an old name says so (here blend's 'toyworld' controls)."""
    from pathlib import Path

    from helpers import start_cli

    spec = json.loads((Path(__file__).parents[1] / "examples" / "toyworld" / "blend.json").read_text())
    spec["controls"] = "toyworld"
    path = tmp_path / "old.json"
    path.write_text(json.dumps(spec))
    process = start_cli("blend", str(path), "--check")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "DeprecationWarning: blend's controls: 'toyworld' goes in 0.3: write 'reader'" in err
    spec["controls"] = "reader"
    path.write_text(json.dumps(spec))
    process = start_cli("blend", str(path), "--check")
    assert "DeprecationWarning" not in process.communicate(timeout=300)[1]
