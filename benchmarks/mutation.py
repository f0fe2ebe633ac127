"""Mutation testing of the core modules: which deliberately broken variants does the suite miss?

Each module is mutated by mutmut (an extra: ``pip install -e ".[mutation]"``) and tested against its
own fast test files (``MODULES``), in a throw-away copy of the repository, one module after another.
A mutant is *killed* when a test fails or times out, *survives* when every test passes, and has
*no tests* when no selected test runs its function (counted as surviving). The report gives the
kill rate per module and every survivor with its diff, for RESULTS.md. Not run in CI (it takes
hours on 2 CPU cores).

    python -m benchmarks.mutation --out benchmarks/results/mutation.json [--module clipforge/judge.py]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: module -> the test files that exercise it (mutmut runs, per mutant, only those covering its function)
MODULES: dict[str, list[str]] = {
    "clipforge/judge.py": ["tests/test_analyses.py"],
    "clipforge/analysis.py": ["tests/test_analyses.py"],
    "clipforge/spec.py": ["tests/test_spec.py", "tests/test_engine.py"],
    "clipforge/specparts.py": ["tests/test_spec.py", "tests/test_bad_input.py"],
    "clipforge/registry.py": ["tests/test_plugins.py", "tests/test_contracts.py", "tests/test_spec.py"],
    "clipforge/engine.py": ["tests/test_engine.py", "tests/test_parameterizations.py", "tests/test_paper_setup.py"],
}

#: mutmut's exit codes for a mutant's test run
SURVIVED, NO_TESTS = 0, 33

#: generated output (benchmark results, the example analyses' reports): no test reads it
OUTPUTS = ("benchmarks/results/", "examples/toyworld/reports/", "zoo/examples/reports/")


def work_copy(dest: Path) -> None:
    """The tracked files (the shipped toy models among them), without generated output."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if name.startswith(OUTPUTS) or name.endswith(".png"):
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)


def setup_cfg(module: str, tests: list[str]) -> str:
    lines = [
        "[mutmut]",
        "source_paths=clipforge/",
        f"only_mutate={module}",
        "pytest_add_cli_args_test_selection=",
        *[f"    {t}" for t in tests],
        "also_copy=",
        "    plugins/",
        "    tests/",
        "    benchmarks/",
        "    examples/",
        "timeout_multiplier=5.0",
        "timeout_constant=30.0",
    ]
    return "\n".join(lines) + "\n"


def mutate(module: str, tests: list[str], work: Path, children: int = 2, resume: bool = False) -> dict:
    """Run mutmut on one module in its own copy of the repository; return its tally and survivors."""
    folder = work / module.replace("/", "_").removesuffix(".py")
    if resume and (folder / "setup.cfg").exists():
        pass  # mutmut goes on where it stopped (the copy's tests are those of the first start)
    else:
        if folder.exists():
            shutil.rmtree(folder)
        work_copy(folder)
        (folder / "setup.cfg").write_text(setup_cfg(module, tests))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CLIPFORGE_TEST_THREADS": "1", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run(
        ["mutmut", "run", "--max-children", str(children)],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    meta = json.loads((folder / "mutants" / f"{module}.meta").read_text())
    codes = meta["exit_code_by_key"]
    survivors, untested = [], []
    for key, code in sorted(codes.items()):
        if code in (SURVIVED, NO_TESTS):
            diff = subprocess.run(["mutmut", "show", key], cwd=folder, env=env, capture_output=True, text=True).stdout
            (survivors if code == SURVIVED else untested).append({"mutant": key, "diff": diff.strip()})
    total = len(codes)
    killed = total - len(survivors) - len(untested)
    return {
        "module": module,
        "tests": tests,
        "mutants": total,
        "killed": killed,
        "survived": len(survivors),
        "no_tests": len(untested),
        "kill_rate": round(killed / total, 4) if total else None,
        "seconds": round(time.perf_counter() - start, 1),
        "survivors": survivors,
        "untested": untested,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--module", action="append", choices=sorted(MODULES), help="only these modules (repeatable)")
    p.add_argument("--work", type=Path, default=Path("/tmp/clipforge-mutation"), help="where the copies go")
    p.add_argument("--out", type=Path, help="write the JSON report here (default: stdout)")
    p.add_argument("--children", type=int, default=2, help="mutants tested at once (each test uses one thread)")
    p.add_argument("--resume", action="store_true", help="go on in an existing copy instead of starting afresh")
    args = p.parse_args()
    if shutil.which("mutmut") is None:
        sys.exit('mutmut is not installed: pip install -e ".[mutation]"')
    report = []
    for module in args.module or list(MODULES):
        result = mutate(module, MODULES[module], args.work, args.children, args.resume)
        print(
            f"{module}: {result['killed']}/{result['mutants']} killed ({result['kill_rate']:.1%}), "
            f"{result['survived']} survived, {result['no_tests']} without tests, {result['seconds']} s",
            file=sys.stderr,
        )
        report.append(result)
    text = json.dumps({"benchmark": "mutation", "modules": report}, indent=1, ensure_ascii=False)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)


if __name__ == "__main__":
    main()
