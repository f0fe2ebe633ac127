"""Readers: what analyses read of images (colours, objects, a marker, a caption's parts) comes from a
component of kind ``reader``, chosen by the analysis spec's ``reader`` (left out: the toy world's,
``toyworld``). A reader a spec names is used; one that cannot answer what the analysis needs is
refused when the spec is checked, naming both; the built-in analyses import nothing of the toy world.
Every installed reader keeps the reader contract (the options contracts of every kind are in
test_contracts.py, which covers readers too)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import registry_with, tiny_backbone

import clipforge
from clipforge import CaptionReading, ColourReading, MarkerReading, Reader, SpecError
from clipforge.analysis import plan_analysis, run_analysis
from clipforge.components import KINDS
from clipforge.registry import HOOK_KINDS
from clipforge_plugins.analysis_blend import Blend, BlendSpec
from clipforge_plugins.analysis_compare import Compare, CompareSpec
from clipforge_plugins.analysis_probe import Probe, ProbeSpec
from clipforge_plugins.analysis_screen import Screen, ScreenSpec

ROOT = Path(__file__).resolve().parent.parent
RUN = {"backbones": [tiny_backbone(0)], "steps": 2, "copies": 1, "resolution": [{"step": 0, "size": 16}]}
JUDGE = tiny_backbone(1)
REGISTRY = clipforge.default_registry()


class Everything(Reader):
    """A fake reader that answers every question the same way: every image is all 'teal', shows every
    concept, matches its prompt, and carries the marker 'a watermark' (score 0.75)."""

    name = "fake_everything"
    label = "the fake reader"

    def colour_names(self):
        return ["teal", "mauve"]

    def read_colours(self, images):
        return [ColourReading("teal", {"teal": 1.0}) for _ in images]

    def reads_concept(self, concept):
        return True

    def concepts_present(self, images, concepts):
        return {c: [True] * len(images) for c in concepts}

    def control_captions(self, *concepts):
        return ["a fake control"]

    def reads_caption(self, caption):
        return True

    def read_captions(self, images, prompts):
        n = len(prompts)
        return CaptionReading([True] * n, {"colour": [False] * n}, {"colour": 0.0, "caption": 1.0})

    def marker_names(self):
        return ["a watermark"]

    def read_markers(self, images, concept, grating_periods=None):
        return [MarkerReading(0.75, True) for _ in images]


class Nothing(Reader):
    """A fake reader that answers nothing: every question is left to the base class."""

    name = "fake_nothing"


@pytest.fixture(scope="module")
def registry():
    return registry_with(Everything, Nothing, plugin="fake_readers")


# --------------------------------------------------------------------------- the kind


def test_the_reader_kind_is_declared_like_the_others():
    assert KINDS["reader"] is Reader and HOOK_KINDS["register_readers"] == "reader"
    assert (Reader.kind, Reader.hook) == ("reader", "register_readers")
    entry = REGISTRY.get("reader", "toyworld")  # the default reader is a built-in plugin, found by name
    assert (entry.plugin, entry.distribution) == ("toyworld_reader", "clipforge")
    assert clipforge.DEFAULT_READER == "toyworld"


def test_hook_register_readers(registry, tmp_path):
    """A fake reader registered through its hook is found, and an analysis spec naming it reads with it."""
    assert registry.get("reader", "fake_everything").cls is Everything
    spec = ProbeSpec(
        run=RUN, seeds=2, judge=JUDGE, prompts=["a ball"], values={"teal": "a teal ball", "mauve": "a mauve ball"},
        reader="fake_everything",
    )  # fmt: skip
    report = run_analysis(Probe(spec), tmp_path / "probe", registry, show_progress=False)
    assert report["reader"] == {"name": "fake_everything", "options": {}}
    assert [image["analytic_colour"] for image in report["images"]] == ["teal", "teal"]
    assert report["prompts"]["a ball"]["analytic"]["counts"] == {"teal": 2, "mauve": 0, "none of these": 0}
    assert report["prompts"]["a ball"]["analytic_share"]["shares"]["teal"]["mean"] == 1.0
    assert "The fake reader (each image's dominant colour)" in (tmp_path / "probe" / "report.md").read_text()
    assert json.loads((tmp_path / "probe" / "report.json").read_text()) == report


READERS = [pytest.param(e.name, id=f"reader:{e.name}") for e in REGISTRY.all() if e.kind == "reader"]


@pytest.mark.parametrize("name", READERS)
def test_every_reader_answers_what_it_says_it_reads(name):
    """The reader contract, for every installed reader: built on the CPU without a judge (as a spec
    check builds it) it says what it reads; what it says it reads of images it answers, one per image."""
    entry = REGISTRY.get("reader", name)
    reader = entry.cls(entry.cls.Options(), torch.device("cpu"), REGISTRY, clipforge.load_backbone(JUDGE))
    assert isinstance(reader.describe(), str) and reader.describe()
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    colours = list(reader.colour_names())
    if colours:
        read = reader.read_colours(images)
        assert len(read) == 3 and all(isinstance(r, ColourReading) for r in read)
        assert all(r.colour is None or r.colour in colours for r in read)
        assert all(set(r.shares) <= set(colours) for r in read)
        assert all(sum(r.shares.values()) == 0 or abs(sum(r.shares.values()) - 1) < 1e-3 for r in read)
    for marker in reader.marker_names():
        read = reader.read_markers(images, marker)
        assert len(read) == 3 and all(isinstance(r, MarkerReading) and 0 <= r.score <= 1 for r in read)


# --------------------------------------------------------------------------- choosing a reader


def test_a_reader_named_by_the_spec_changes_every_analysis_reading(registry):
    """The same inversions read by the fake reader: the screen's marker, the compare's captions and the
    blend's concepts all come from it, where the toy world's reader reads nothing of these specs."""
    screen = ScreenSpec(
        run=RUN, seeds=2, judge=JUDGE, prompts=["a cat"], concepts=["a watermark"], action="flag",
        reader="fake_everything",
    )  # fmt: skip
    report = run_analysis(Screen(screen), None, registry, show_progress=False)
    assert report["analytic_marker"]["a cat"]["marker_scores"] == [0.75, 0.75]
    assert "analytic_grating" not in report  # it measures no grating
    assert "analytic_marker" not in run_analysis(
        Screen(screen.model_copy(update={"reader": None})), None, registry, show_progress=False
    )
    compare = CompareSpec(
        run=RUN, seeds=1, judge=JUDGE, prompts=["a cat"], backbones={"a": tiny_backbone(2), "b": tiny_backbone(3)},
        rank_by="analytic_accuracy", reader="fake_everything",
    )  # fmt: skip
    report = run_analysis(Compare(compare), None, registry, show_progress=False)
    assert report["results"]["a"]["analytic"] == {"colour": 0.0, "caption": 1.0}
    assert report["paired"][0]["analytic"]["colour_only_higher_right"] == 0
    blend = BlendSpec(
        run=RUN, seeds=1, judge=JUDGE, pairs=[("a cat", "a dog")], controls="reader", reader="fake_everything"
    )
    report = run_analysis(Blend(blend), None, registry, show_progress=False)
    assert report["pairs"][0]["controls"] == ["a fake control"]
    assert report["analytic_summary"]["blend"]["both_present"] == 1


@pytest.mark.parametrize(
    "analysis, spec, message",
    [
        (Probe, ProbeSpec(judge=JUDGE, prompts=["a ball"], values={"teal": "a", "red": "b"}), "reads the colours"),
        (Screen, ScreenSpec(judge=JUDGE, prompts=["a cat"], concepts=["a dog"]), "reads one of the concepts as a"),
        (Compare, CompareSpec(judge=JUDGE, prompts=["a cat"], backbones={"a": JUDGE, "b": JUDGE}), "reads every"),
        (Blend, BlendSpec(judge=JUDGE, pairs=[("a cat", "a dog")]), "reads every concept, 'a cat' too"),
    ],
    ids=["probe", "screen", "compare", "blend"],
)
def test_a_reader_that_cannot_answer_is_refused_at_check_time_naming_both(registry, analysis, spec, message):
    spec = spec.model_copy(update={"reader": clipforge.ComponentRef(name="fake_nothing")})
    with pytest.raises(SpecError) as caught:
        plan_analysis(analysis(spec), registry)
    ((where, text),) = caught.value.problems
    assert where == "reader" and message in text
    assert text.startswith(f"{analysis.name} needs a reader that") and "reader 'fake_nothing'" in text
    assert "plugin 'fake_readers'" in text


def test_the_default_reader_reads_only_where_it_can_and_a_named_one_must(registry):
    """Left out, the toy world's reader reads toy-world values and stays silent on others (as before
    readers); named, it must read them; an unknown reader is an unknown component, at reader.name."""
    gender = ProbeSpec(judge=JUDGE, run=RUN, prompts=["a person"])
    assert plan_analysis(Probe(gender), registry) is not None
    named = gender.model_copy(update={"reader": clipforge.ComponentRef(name="toyworld")})
    with pytest.raises(SpecError, match=r"probe needs a reader that reads the colours 'man', 'woman'.*analytic judge"):
        plan_analysis(Probe(named), registry)
    unknown = gender.model_copy(update={"reader": clipforge.ComponentRef(name="no_such_reader")})
    with pytest.raises(SpecError) as caught:
        plan_analysis(Probe(unknown), registry)
    assert caught.value.problems[0][0] == "reader.name" and "no_such_reader" in caught.value.problems[0][1]
    # the toy world's reader blocked: the default reads nothing, and 'reader' controls need one
    blocked = clipforge.build_registry(block=["toyworld_reader"])
    colours = ProbeSpec(judge=JUDGE, run=RUN, prompts=["a ball"], values={"red": "a red ball", "blue": "a blue ball"})
    report = run_analysis(Probe(colours), None, blocked, show_progress=False)
    assert "analytic" not in report["prompts"]["a ball"]
    world = BlendSpec(judge=JUDGE, run=RUN, pairs=[("a red circle", "a blue square")], controls="reader")
    with pytest.raises(SpecError, match="blend needs a reader, and the default 'toyworld' is not installed"):
        plan_analysis(Blend(world), blocked)


def test_a_readers_own_options_are_checked_with_the_spec(registry):
    spec = ProbeSpec(
        judge=JUDGE,
        prompts=["a ball"],
        values={"red": "a", "blue": "b"},
        reader={"name": "toyworld", "options": {"x": 1}},
    )
    with pytest.raises(SpecError) as caught:
        plan_analysis(Probe(spec), registry)
    assert caught.value.problems[0][0] == "reader.options.x"


# --------------------------------------------------------------------------- no toy world in the analyses

ANALYSES = sorted((ROOT / "plugins").glob("analysis_*.py"))


@pytest.mark.parametrize("path", ANALYSES, ids=lambda p: p.name)
def test_the_built_in_analyses_import_nothing_of_the_toy_world(path):
    """By their source: no import of clipforge.toyworld (or of clipforge.judge, which might lead there)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        modules = (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in getattr(node, "names", [])]
        )
        if isinstance(node, ast.Import | ast.ImportFrom):
            assert not any(m.startswith(("clipforge.toyworld", "clipforge.judge")) for m in modules), (
                path.name,
                modules,
            )


def test_importing_and_registering_the_built_in_analyses_loads_no_toy_world():
    """In a process of its own: the analyses' modules, imported and registered (every other built-in
    blocked: the toy world's reader is what imports the toy world), leave clipforge.toyworld unimported."""
    code = (
        "import sys, clipforge\n"
        "from clipforge.registry import BUILTIN_PLUGINS\n"
        "analyses = {n for n, m in BUILTIN_PLUGINS.items() if m.split('.')[-1].startswith('analysis_')}\n"
        "registry = clipforge.build_registry(block=set(BUILTIN_PLUGINS) - analyses, autoload=False)\n"
        "assert set(registry.names('analysis')) == {'probe', 'screen', 'compare', 'blend', 'layer'}\n"
        "print(sorted(m for m in sys.modules if m.startswith('clipforge.toyworld')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
