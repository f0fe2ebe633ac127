"""The plugin documentation and the tests keep up with the code: every hook is documented with its
exact signature and has its own test, and every public name is documented for plugin authors."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import clipforge
from clipforge import hookspecs
from clipforge.registry import HOOK_KINDS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "plugins.md"


def hooks() -> dict[str, str]:
    """Every hook spec in clipforge.hookspecs, with its signature as written in the docs:
    ``register_regularizers(register)``."""
    found = {}
    for name, fn in vars(hookspecs).items():
        if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec"):
            params = ", ".join(inspect.signature(fn).parameters)
            found[name] = f"{name}({params})"
    return found


def test_the_hooks_are_the_ones_the_registry_knows():
    assert set(hooks()) == set(HOOK_KINDS)


def test_the_kinds_of_component_are_listed_once():
    """``components.KINDS`` is the list; the hooks and the run spec's component fields follow it."""
    from clipforge.components import KINDS
    from clipforge.spec import COMPONENT_FIELDS

    assert sorted(HOOK_KINDS.values()) == sorted(KINDS)
    # analyses and their readers are not part of a run
    assert set(COMPONENT_FIELDS.values()) == set(KINDS) - {"analysis", "reader"}


@pytest.mark.parametrize("hook", sorted(HOOK_KINDS))
def test_every_hook_is_documented_with_its_signature(hook):
    assert hooks()[hook] in DOCS.read_text(encoding="utf-8"), f"docs/plugins.md lacks {hooks()[hook]}"


def defined_test_functions() -> set[str]:
    """Names of the test functions defined at the top level of every test module."""
    names = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    return names


@pytest.mark.parametrize("hook", sorted(HOOK_KINDS))
def test_every_hook_has_its_own_test(hook):
    assert f"test_hook_{hook}" in defined_test_functions(), f"no test function named test_hook_{hook} in tests/"


@pytest.mark.parametrize("name", sorted(clipforge.__all__))
def test_every_public_name_is_documented(name):
    """In the plugin authors' page, or the notebook's (docs/python.md)."""
    text = DOCS.read_text(encoding="utf-8") + (DOCS.parent / "python.md").read_text(encoding="utf-8")
    assert re.search(rf"`(clipforge\.)?{re.escape(name)}\b", text), f"docs/plugins.md or python.md omit `{name}`"


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    "spec", sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.glob("*/*.json")) + ["quickstart.json"]
)
def test_example_specs_are_valid(spec: str, capsys) -> None:
    """Every shipped example spec validates (plugins' options and bundled model names included). One
    naming a model of clipforge-zoo needs the zoo, which the README's test command does not install:
    without it, the spec is skipped here (zoo/tests checks every research example with the zoo)."""
    from clipforge.cli import main
    from clipforge.toyworld import ZOO_MODELS, bundled_models

    text = (EXAMPLES / spec).read_text(encoding="utf-8")
    missing = sorted(m for m in ZOO_MODELS if f'"{m}"' in text and m not in bundled_models())
    if missing:
        pytest.skip(f"{spec} uses {', '.join(missing)} of clipforge-zoo, which is not installed (pip install ./zoo)")
    name = Path(spec).stem
    verb = next((v for v in clipforge.default_registry().names("analysis") if name.startswith(v)), None)
    if spec.startswith("sweeps/"):
        argv = ["sweep", str(EXAMPLES / spec), "--plan"]
    else:
        argv = [verb, str(EXAMPLES / spec), "--check"] if verb else ["validate", str(EXAMPLES / spec)]
    assert main(argv) == 0, capsys.readouterr().err


# --------------------------------------------------------------------------- built-ins as a third party


def clipforge_imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every ``from clipforge... import names`` and ``import clipforge...`` in a file (at any depth)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "clipforge":
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.split(".")[0] == "clipforge"]
    return found


BUILT_INS = sorted(p for p in (ROOT / "plugins").glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", BUILT_INS, ids=lambda p: p.name)
def test_built_in_plugins_use_only_public_names(path):
    """A built-in is written as a third party would write it: against ``clipforge``'s ``__all__``
    (and that of the analysis tools, ``clipforge.analysis``, and of the offline world,
    ``clipforge.toyworld``), never against internals."""
    import clipforge.analysis
    import clipforge.toyworld

    public = {
        "clipforge": set(clipforge.__all__),
        "clipforge.analysis": set(clipforge.analysis.__all__),
        "clipforge.toyworld": set(clipforge.toyworld.__all__),
    }
    for module, names in clipforge_imports(path):
        assert module in public, f"{path.name} imports the internal module {module}"
        assert set(names) <= public[module], f"{path.name} imports non-public {set(names) - public[module]}"


@pytest.mark.parametrize("path", BUILT_INS, ids=lambda p: p.name)
def test_built_in_plugins_declare_the_api_they_were_written_for(path):
    import importlib

    module = importlib.import_module(f"clipforge_plugins.{path.stem}")
    assert module.CLIPFORGE_API == clipforge.API_VERSION


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_circles_inside_clipforge():
    """Every import counts (top level, inside functions, under TYPE_CHECKING): a circle that only
    type checkers see today is one edit away from an ImportError."""
    modules = {module_name(p): p for p in (ROOT / "clipforge").rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for module, names in clipforge_imports(path):
            submodules = {f"{module}.{n}" for n in names if f"{module}.{n}" in modules}  # from pkg import mod
            targets |= submodules
            if not names or len(submodules) < len(names):  # it takes names from the module itself
                targets.add(module)
        graph[name] = {t for t in targets if t in modules and t != name}
    # a package's __init__ may import its own modules (that is what a package does); a module may
    # not import the package it belongs to, nor anything that leads back to itself
    circles = []

    def visit(node, trail):
        for nxt in sorted(graph[node]):
            if nxt in trail:
                circle = trail[trail.index(nxt) :] + [nxt]
                if not all(b.startswith(a + ".") for a, b in zip(circle, circle[1:])):
                    circles.append(" -> ".join(circle))
            elif len(trail) < 12:
                visit(nxt, trail + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert not circles, "import circles:\n" + "\n".join(sorted(set(circles))[:10])


def test_every_package_of_clipforge_is_installed():
    """pyproject.toml lists the packages by hand (the built-ins live in plugins/ under another name): a
    new subpackage missing there works in an editable install and is absent from a wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {module_name(p.parent / "__init__.py") for p in (ROOT / "clipforge").rglob("__init__.py")}
    assert found <= listed, f"add to pyproject.toml's packages: {sorted(found - listed)}"
