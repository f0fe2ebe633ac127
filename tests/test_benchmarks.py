"""The benchmark scripts' own arithmetic: a wrong ratio there would be a wrong figure in RESULTS.md."""

import importlib.util
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speed_methods_take_turns_and_keep_medians():
    speed = load_script("speed")
    calls = []

    def method(name, seconds):
        def run():
            calls.append(name)
            return [seconds.pop(0) * 10] * 3  # three phases of 10 steps
        return run

    results = speed.measure({"a": method("a", [1.0, 3.0, 2.0]), "b": method("b", [5.0, 4.0, 6.0])},
                            torch.device("cpu"), repeats=3, steps_per_phase=10)
    assert calls == ["a", "b"] * 3  # alternating, so drift of the machine hits both alike
    assert results["a"]["seconds_per_step"] == pytest.approx(2.0)
    assert results["b"]["seconds_per_step"] == pytest.approx(5.0)
    assert results["a"]["runs"] == pytest.approx([1.0, 3.0, 2.0])


def test_speed_weights_phases_by_the_paper_schedule():
    speed = load_script("speed")
    # 10 steps per phase at 1, 2 and 4 s/step, weighted 900/900/1600 of 3400
    expected = (1 * 900 + 2 * 900 + 4 * 1600) / 3400
    assert speed.weighted_seconds_per_step([10.0, 20.0, 40.0], 10) == pytest.approx(expected)
