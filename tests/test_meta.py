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
    assert set(hooks()) == set(hookspecs.HOOK_KINDS)


@pytest.mark.parametrize("hook", sorted(hookspecs.HOOK_KINDS))
def test_every_hook_is_documented_with_its_signature(hook):
    assert hooks()[hook] in DOCS.read_text(encoding="utf-8"), f"docs/plugins.md lacks {hooks()[hook]}"


def defined_test_functions() -> set[str]:
    """Names of the test functions defined at the top level of every test module."""
    names = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    return names


@pytest.mark.parametrize("hook", sorted(hookspecs.HOOK_KINDS))
def test_every_hook_has_its_own_test(hook):
    assert f"test_hook_{hook}" in defined_test_functions(), f"no test function named test_hook_{hook} in tests/"


@pytest.mark.parametrize("name", sorted(clipforge.__all__))
def test_every_public_name_is_documented(name):
    text = DOCS.read_text(encoding="utf-8")
    assert re.search(rf"`(clipforge\.)?{re.escape(name)}\b", text), f"docs/plugins.md does not mention `{name}`"


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("spec", sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.glob("*/*.json"))
                         + ["quickstart.json"])
def test_example_specs_are_valid(spec: str, capsys) -> None:
    """Every shipped example spec validates (plugins' options and bundled model names included)."""
    from clipforge.cli import main

    name = Path(spec).stem
    verb = next((v for v in ("probe", "screen", "compare", "blend") if name.startswith(v)), None)
    argv = [verb, str(EXAMPLES / spec), "--check"] if verb else ["validate", str(EXAMPLES / spec)]
    assert main(argv) == 0, capsys.readouterr().err
