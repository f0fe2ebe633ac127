import importlib.metadata
import json
import re
import types

import pydantic
import pytest
from helpers import tiny_spec_dict

import clipforge
import clipforge.cli
from clipforge import Regularizer, build_registry, hookimpl, invert
from clipforge.cli import main
from clipforge.registry import DuplicateComponentError, PluginError

BUILTIN_PLUGINS = {"open_clip", "pixel", "paper_augmentations", "regularizers", "progress", "metrics_log", "snapshots"}


class Brightness(Regularizer):
    name = "brightness"

    def __call__(self, images):
        return images.mean(dim=(1, 2, 3))


def plugin_module(name="fake", **hooks):
    module = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(module, hook, hookimpl(fn))
    return module


def registers(*classes):
    def register_regularizers(register):
        for cls in classes:
            register(cls)

    return register_regularizers


def test_builtins_are_registered_with_their_distribution():
    registry = build_registry()
    assert BUILTIN_PLUGINS <= {p.name for p in registry.plugins} == set(clipforge.registry.BUILTIN_PLUGINS)
    tv = registry.get("regularizer", "tv")
    assert tv.plugin == "regularizers" and tv.distribution == "clipforge" and tv.version == clipforge.__version__
    assert registry.failures == []


def test_a_built_in_that_an_old_install_still_lists_as_an_entry_point_is_registered_once(monkeypatch):
    """Built-ins need no entry point; one left in an installed clipforge's metadata is passed over."""
    real = importlib.metadata.entry_points
    clipforge_dist = FakeDist()
    clipforge_dist.metadata = {"Name": "clipforge"}

    def entry_points(group):
        module = importlib.import_module("clipforge_plugins.regularizers")
        return [*real(group=group), FakeEntryPoint("regularizers", module, clipforge_dist)]

    monkeypatch.setattr("clipforge.registry.importlib.metadata.entry_points", entry_points)
    registry = build_registry()
    assert registry.failures == [] and [p.name for p in registry.plugins].count("regularizers") == 1


def test_a_plugin_can_be_blocked_by_name(monkeypatch):
    registry = build_registry(block=["regularizers"])
    assert registry.names("regularizer") == []
    with pytest.raises(PluginError, match="unknown regularizer 'tv'"):
        registry.get("regularizer", "tv")
    monkeypatch.setenv("CLIPFORGE_BLOCK_PLUGINS", "snapshots, progress")
    names = build_registry().names("callback")
    assert "metrics" in names and "snapshots" not in names and "progress" not in names


def test_only_and_no_autoload_leave_out_third_party_plugins_and_keep_the_built_ins(monkeypatch):
    """As pytest's ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``: the built-ins a default spec names stay."""
    real = importlib.metadata.entry_points

    def entry_points(group):
        bright = FakeEntryPoint("bright", plugin_module(register_regularizers=registers(Brightness)), FakeDist())
        return [*real(group=group), bright]

    monkeypatch.setattr("clipforge.registry.importlib.metadata.entry_points", entry_points)
    builtins = set(clipforge.registry.BUILTIN_PLUGINS)
    assert {p.name for p in build_registry().plugins} == builtins | {"bright"}
    assert {p.name for p in build_registry(autoload=False).plugins} == builtins
    assert {p.name for p in build_registry(only=["bright"]).plugins} == builtins | {"bright"}
    assert {p.name for p in build_registry(only=["pixel"]).plugins} == builtins
    assert build_registry(autoload=False).names("backbone") == ["open_clip"]
    assert {p.name for p in build_registry(autoload=False, block=["pixel"]).plugins} == builtins - {"pixel"}


def test_extra_plugin_components_are_usable_in_a_spec():
    registry = build_registry(extra_plugins=[("mine", plugin_module(register_regularizers=registers(Brightness)))])
    entry = registry.get("regularizer", "brightness")
    assert entry.plugin == "mine"
    spec = tiny_spec_dict(callbacks=[], steps=2, regularizers=[{"name": "brightness", "options": {"weight": 0.1}}])
    result = invert(spec, registry=registry)
    assert "brightness" in result.metrics[-1]["regularizers"]


class CopycatTV(Regularizer):
    """A third party's regularizer that reuses the built-in name 'tv'."""

    name = "tv"

    def __call__(self, images):
        return images.sum()


def test_a_name_clash_disables_the_newcomer_with_a_warning_and_the_run_goes_on():
    copycat = plugin_module(register_regularizers=registers(CopycatTV, Brightness))
    with pytest.warns(clipforge.registry.PluginClashWarning) as caught:
        registry = build_registry(extra_plugins=[("copycat", copycat)])
    message = str(caught[0].message)
    assert "plugin 'copycat'" in message and "plugin 'regularizers' (clipforge" in message and "'tv'" in message
    entry = registry.get("regularizer", "tv")
    assert entry.plugin == "regularizers" and entry.cls is not CopycatTV  # the built-in keeps its name
    assert registry.get("regularizer", "brightness").plugin == "copycat"  # the rest of the newcomer works
    assert [(f.plugin, f.what) for f in registry.failures] == [("copycat", "lost a component")]
    result = invert(tiny_spec_dict(callbacks=[], steps=1), registry=registry)
    assert "tv" in result.metrics[-1]["regularizers"]
    with pytest.raises(DuplicateComponentError, match="copycat"):
        build_registry(extra_plugins=[("copycat", copycat)], strict=True)


def test_a_name_clash_between_two_third_parties_keeps_the_first_registered():
    class Other(Brightness):
        pass

    first = plugin_module(register_regularizers=registers(Brightness))
    second = plugin_module(register_regularizers=registers(Other))
    with pytest.warns(clipforge.registry.PluginClashWarning, match="plugin 'second'.*plugin 'first'"):
        registry = build_registry(extra_plugins=[("first", first), ("second", second)])
    assert registry.get("regularizer", "brightness").plugin == "first"


def test_cli_reports_a_name_clash_and_still_runs(tmp_path, monkeypatch, capsys):
    from clipforge import registry as registry_module

    real = registry_module.build_registry
    copycat = plugin_module(register_regularizers=registers(CopycatTV))
    monkeypatch.setattr(clipforge.cli, "build_registry", lambda **kw: real(**kw, extra_plugins=[("copycat", copycat)]))
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(tiny_spec_dict(callbacks=[], steps=1)))
    with pytest.warns(registry_module.PluginClashWarning):
        code = clipforge.cli.main(["invert", str(path), "--out", str(tmp_path / "out")])
    assert code == 0
    assert (
        "warning: plugin 'copycat' lost a component: its regularizer 'tv' is disabled"
        in capsys.readouterr().err.replace("\n", "")
    )


@pytest.mark.parametrize(
    "bad, words",
    [
        (type("NoName", (Regularizer,), {}), "has no 'name'"),
        (
            type("Loose", (Regularizer,), {"name": "loose", "Options": type("O", (pydantic.BaseModel,), {})}),
            "must reject unknown keys",
        ),
        (int, "not a subclass of clipforge.Regularizer"),
    ],
)
def test_invalid_components_are_reported_with_their_plugin(bad, words):
    registry = build_registry(extra_plugins=[("badplug", plugin_module(register_regularizers=registers(bad)))])
    assert len(registry.failures) == 1
    failure = registry.failures[0]
    assert failure.plugin == "badplug" and words in failure.error
    assert registry.get("regularizer", "tv")  # the rest still works
    with pytest.raises(PluginError, match="badplug"):
        build_registry(extra_plugins=[("badplug", plugin_module(register_regularizers=registers(bad)))], strict=True)


def test_misspelled_hook_is_reported():
    registry = build_registry(extra_plugins=[("typo", plugin_module(register_regularizer=registers(Brightness)))])
    assert "did you mean 'register_regularizers'" in registry.failures[0].error


class FakeEntryPoint:
    def __init__(self, name, target, dist):
        self.name, self.group, self._target, self.dist = name, "clipforge", target, dist

    def load(self):
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


class FakeDist:
    version = "9.9"
    metadata = {"Name": "clipforge-broken"}


def test_a_broken_entry_point_plugin_leaves_the_rest_usable(monkeypatch, capsys):
    real = importlib.metadata.entry_points

    def entry_points(group):
        eps = list(real(group=group))
        eps.append(FakeEntryPoint("broken", ImportError("No module named 'kornia'"), FakeDist()))
        eps.append(FakeEntryPoint("bright", plugin_module(register_regularizers=registers(Brightness)), FakeDist()))
        return eps

    monkeypatch.setattr("clipforge.registry.importlib.metadata.entry_points", entry_points)
    registry = build_registry()
    assert [str(f) for f in registry.failures] == [
        "plugin 'broken' from clipforge-broken failed to load: ImportError: No module named 'kornia'"
    ]
    assert registry.get("regularizer", "brightness").distribution == "clipforge-broken"
    assert registry.get("regularizer", "tv")
    assert main(["plugins"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("plugin 'broken'") == 1 and "brightness" in captured.out
    assert main(["--strict-plugins", "plugins"]) == 2


def test_plugins_command_lists_components(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for name in ("open_clip", "pixel", "random_affine", "tv", "snapshots"):
        assert name in out
    assert main(["plugins", "--json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    regs = [p for p in data["plugins"] if p["name"] == "regularizers"][0]
    assert {"kind": "regularizer", "name": "tv"} in regs["components"]
    assert regs["distribution"] == "clipforge" and regs["hooks"] == ["register_regularizers"]


BUILTIN_OBJECTIVES = {"prompt", "channel", "neuron", "direction", "image", "diversity"}


def test_objectives_are_listed_under_their_kind_and_their_options_are_in_the_schema(capsys):
    """The seventh kind is listed and described like the others: one plugin, one hook, every option."""
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    objectives = {
        c["name"]: (p["name"], p["distribution"], p["hooks"])
        for p in data["plugins"]
        for c in p["components"]
        if c["kind"] == "objective"
    }
    assert BUILTIN_OBJECTIVES <= set(objectives)
    for name in BUILTIN_OBJECTIVES:
        assert objectives[name] == ("objectives", "clipforge", ["register_objectives"])
    assert main(["plugins"]) == 0
    rows = {
        tuple(cell.strip() for cell in re.split("[│|]", line)[1:3]) for line in capsys.readouterr().out.splitlines()
    }
    assert {("objective", name) for name in BUILTIN_OBJECTIVES} <= rows

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    variants = {
        v["properties"]["name"]["const"]: v["properties"]["options"]
        for v in schema["$defs"]["ObjectiveRef"]["anyOf"]
        if "properties" in v
    }
    assert BUILTIN_OBJECTIVES <= set(variants)
    assert {"weight", "layer", "backbone", "channel"} <= set(variants["channel"]["properties"])
    assert "layer" in variants["channel"]["required"] and "position" in variants["neuron"]["properties"]
    assert {"vector", "text", "minus"} <= set(variants["direction"]["properties"])
    assert "image" in variants["image"]["properties"] and "layer" in variants["diversity"]["properties"]
    assert "weight" in variants["prompt"]["properties"]
    by_name = next(v for v in schema["$defs"]["ObjectiveRef"]["anyOf"] if v.get("type") == "string")
    assert BUILTIN_OBJECTIVES <= set(by_name["enum"])
    # the spec's objectives and a prompt's own are both checked against them
    assert schema["properties"]["objectives"]["items"] == {"$ref": "#/$defs/ObjectiveRef"}
    own = schema["$defs"]["Prompt"]["properties"]["objectives"]["anyOf"]
    assert {"$ref": "#/$defs/ObjectiveRef"} in [v.get("items") for v in own]


BUILTIN_ANALYSES = {"probe", "screen", "compare", "blend"}


def test_analyses_are_plugins_listed_as_verbs(capsys):
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    analyses = {
        c["name"]: (p["name"], p["distribution"], p["hooks"])
        for p in data["plugins"]
        for c in p["components"]
        if c["kind"] == "analysis"
    }
    assert BUILTIN_ANALYSES <= set(analyses)
    for name in BUILTIN_ANALYSES:
        assert analyses[name] == (name, "clipforge", ["register_analyses"])
    assert main(["plugins"]) == 0 and "analysis" in capsys.readouterr().out
    # "clipforge --help" loads no plugins (it stays fast) and says where the analyses' verbs are listed
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "'clipforge plugins' lists them" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # an analysis's own help page loads them
        main(["probe", "--help"])
    assert "attribute (bias) probe" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # and a misspelt verb lists them all
        main(["prob", "x.json"])
    usage = capsys.readouterr().err
    assert all(verb in usage for verb in BUILTIN_ANALYSES)
    # blocked, an analysis is no verb at all
    with pytest.raises(SystemExit) as exit_info:
        main(["--block", "probe", "probe", "x.json", "--check"])
    assert exit_info.value.code == 2 and "invalid choice: 'probe'" in capsys.readouterr().err


def test_an_analysis_cannot_take_the_name_of_a_command(monkeypatch, capsys, tmp_path):
    from helpers import registry_with

    class Shadow(clipforge.Analysis):
        name = "validate"

    monkeypatch.setattr(clipforge.cli, "build_registry", lambda **_: registry_with(Shadow))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(tiny_spec_dict()))
    assert main(["validate", str(spec)]) == 0  # clipforge's own command, not the analysis
    captured = capsys.readouterr()
    assert "is valid" in captured.out
    assert "analysis 'validate' from plugin 'extra' is not available: 'validate' is a clipforge command" in captured.err


@pytest.mark.parametrize(
    "declared, ok", [("1.0", True), ("1.99", False), ("2.0", False), ("0.9", False), ("one", False), (None, True)]
)
def test_plugins_declaring_an_incompatible_api_are_refused(declared, ok):
    module = plugin_module(register_regularizers=registers(Brightness))
    if declared is not None:
        module.CLIPFORGE_API = declared
    registry = build_registry(extra_plugins=[("versioned", module)])
    assert ("brightness" in registry.names("regularizer")) == ok
    if not ok:
        assert registry.failures[0].plugin == "versioned"
        assert "API" in registry.failures[0].error


def test_a_built_in_keeps_its_name_even_when_the_third_party_registers_first(monkeypatch):
    real = importlib.metadata.entry_points

    def entry_points(group):
        copycat = FakeEntryPoint("copycat", plugin_module(register_regularizers=registers(CopycatTV)), FakeDist())
        return [copycat, *real(group=group)]

    monkeypatch.setattr("clipforge.registry.importlib.metadata.entry_points", entry_points)
    with pytest.warns(clipforge.registry.PluginClashWarning, match="plugin 'copycat' from clipforge-broken"):
        registry = build_registry()
    assert registry.get("regularizer", "tv").plugin == "regularizers"
    assert registry.get("regularizer", "tv").distribution == "clipforge"


# --------------------------------------------------------------------------- the registry's edges


def test_unknown_component_messages_suggest_close_names_and_list_the_rest():
    from clipforge.registry import Registry, UnknownComponentError

    known = ["tv", "tv_l1", "tv_l2", "tv_l3", "tv_l4", "brightness"]
    message = str(UnknownComponentError("regularizer", "tv_l", known))
    hint = message.split("; did you mean ")[1].split("?")[0]
    assert len(hint.split(", ")) == 3 and all(h.startswith("'tv_l") for h in hint.split(", "))  # at most three
    assert message.endswith("(available: brightness, tv, tv_l1, tv_l2, tv_l3, tv_l4)")
    assert str(UnknownComponentError("regularizer", "zzz", ["tv"])) == "unknown regularizer 'zzz' (available: tv)"
    # 'colour' is 0.55 similar to 'color_shift': within the 0.5 cutoff, outside difflib's default 0.6
    assert "did you mean 'color_shift'" in str(UnknownComponentError("augmentation", "colour", ["color_shift"]))
    empty = Registry({}, [], [])
    with pytest.raises(UnknownComponentError, match=r"^unknown callback 'x' \(available: none installed\)$"):
        empty.get("callback", "x")
    assert empty.names("callback") == [] and empty.all() == []


def test_plugin_environment_variables(monkeypatch):
    monkeypatch.setenv("CLIPFORGE_PLUGINS", "regularizers,pixel")  # names of built-ins: nothing left out
    assert {p.name for p in build_registry().plugins} == set(clipforge.registry.BUILTIN_PLUGINS)
    monkeypatch.delenv("CLIPFORGE_PLUGINS")
    monkeypatch.setenv("CLIPFORGE_BLOCK_PLUGINS", "regularizers,pixel")
    builtins = set(clipforge.registry.BUILTIN_PLUGINS)
    assert {p.name for p in build_registry().plugins} == builtins - {"regularizers", "pixel"}
    monkeypatch.delenv("CLIPFORGE_BLOCK_PLUGINS")
    monkeypatch.setenv("CLIPFORGE_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert {p.name for p in build_registry().plugins} >= BUILTIN_PLUGINS
    monkeypatch.setenv("CLIPFORGE_DISABLE_PLUGIN_AUTOLOAD", "")
    assert {p.name for p in build_registry().plugins} >= BUILTIN_PLUGINS


def test_entry_point_plugins_record_distribution_version_and_hooks(monkeypatch):
    real = importlib.metadata.entry_points
    bright = plugin_module(register_regularizers=registers(Brightness))
    monkeypatch.setattr(
        "clipforge.registry.importlib.metadata.entry_points",
        lambda group: [*real(group=group), FakeEntryPoint("bright", bright, FakeDist())],
    )
    registry = build_registry()
    entry = registry.get("regularizer", "brightness")
    assert (entry.plugin, entry.distribution, entry.version) == ("bright", "clipforge-broken", "9.9")
    assert entry.provider == "plugin 'bright' (clipforge-broken 9.9)"
    info = next(p for p in registry.plugins if p.name == "bright")
    assert (info.distribution, info.version, info.hooks) == ("clipforge-broken", "9.9", ["register_regularizers"])


def test_a_failing_hook_is_reported_and_other_plugins_of_that_hook_still_register():
    def explode(register):
        raise TypeError("no luck")

    registry = build_registry(
        extra_plugins=[
            ("broken", plugin_module(register_regularizers=explode)),
            ("bright", plugin_module(register_regularizers=registers(Brightness))),
        ]
    )
    assert [(f.plugin, f.error) for f in registry.failures] == [("broken", "TypeError: no luck")]
    assert registry.get("regularizer", "brightness").plugin == "bright"
    with pytest.raises(PluginError, match="plugin 'broken' failed to load: TypeError: no luck") as info:
        build_registry(extra_plugins=[("broken", plugin_module(register_regularizers=explode))], strict=True)
    assert isinstance(info.value.__cause__, TypeError)


def test_a_second_plugin_of_the_same_name_is_refused_and_later_ones_load():
    class Other(Brightness):
        name = "other"

    class Third(Brightness):
        name = "third"

    registry = build_registry(
        extra_plugins=[
            ("bright", plugin_module(register_regularizers=registers(Brightness))),
            ("bright", plugin_module(register_regularizers=registers(Other))),
            ("third", plugin_module(register_regularizers=registers(Third))),
        ]
    )
    assert [(f.plugin, f.error) for f in registry.failures] == [
        ("bright", "a plugin named 'bright' is already registered")
    ]
    assert registry.get("regularizer", "third").plugin == "third"
    assert "other" not in registry.names("regularizer")


def test_hook_name_checks_flag_only_hook_implementations():
    module = plugin_module(register_regularizers=registers(Brightness))
    module.register_helper = lambda: None  # a plain function with a hook-like name is not a hook
    registry = build_registry(extra_plugins=[("helper", module)])
    assert registry.failures == [] and registry.get("regularizer", "brightness")
    odd = build_registry(extra_plugins=[("odd", plugin_module(register_zzzzzzzzzz=registers(Brightness)))])
    assert odd.failures[0].error == "PluginError: unknown hook 'register_zzzzzzzzzz'"


@pytest.mark.parametrize(
    "attrs, words",
    [
        ({"name": ""}, "has no 'name'"),
        ({"name": "opts", "Options": 3}, "'opts' has no pydantic 'Options' model"),
        ({"name": "opts", "Options": dict}, "'opts' has no pydantic 'Options' model"),
    ],
)
def test_component_class_checks(attrs, words):
    bad = type("Bad", (Regularizer,), attrs)
    registry = build_registry(extra_plugins=[("badplug", plugin_module(register_regularizers=registers(bad)))])
    assert words in registry.failures[0].error


def test_default_registry_is_built_once_until_reset():
    from clipforge.registry import default_registry, reset_default_registry

    first = default_registry()
    assert default_registry() is first and first.get("regularizer", "tv")
    reset_default_registry()
    second = default_registry()
    assert second is not first and second.names("regularizer") == first.names("regularizer")


class JudgedOptions(clipforge.Options):
    judge: dict | None = clipforge.component_option("backbone", description="Another backbone, by reference.")


class Judged(clipforge.Callback):
    name = "judged"
    Options = JudgedOptions


def test_a_component_named_in_an_option_is_checked_when_the_spec_is(capsys, tmp_path):
    """A nested reference (a screen's judge) gets what the spec's own components get: its name and
    its options checked before anything runs, each problem with its JSON path."""
    registry = build_registry(
        extra_plugins=[("judged", plugin_module(register_callbacks=lambda register: register(Judged)))]
    )
    good = {"name": "judged", "options": {"judge": {"name": "open_clip", "options": {"model": "toyworld-rn"}}}}
    registry.resolve(clipforge.load_spec(tiny_spec_dict(callbacks=[good])))
    registry.resolve(clipforge.load_spec(tiny_spec_dict(callbacks=[{"name": "judged"}])))  # none named: fine
    typo = {"name": "judged", "options": {"judge": {"name": "open_clp"}}}
    with pytest.raises(clipforge.SpecError, match=r"callbacks\[0\]\.options\.judge\.name: unknown backbone 'open_clp'"):
        registry.resolve(clipforge.load_spec(tiny_spec_dict(callbacks=[typo])))
    bad = {"name": "judged", "options": {"judge": {"name": "open_clip", "options": {"modle": "x"}}}}
    with pytest.raises(clipforge.SpecError, match=r"callbacks\[0\]\.options\.judge\.options\.modle: unknown key"):
        registry.resolve(clipforge.load_spec(tiny_spec_dict(callbacks=[bad])))
