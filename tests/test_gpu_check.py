"""The GPU check (benchmarks/gpu_check.py) at a tiny size on the CPU, so that it cannot rot before a
GPU runs it: every measurement it makes on a GPU is made here too, and its JSON and table hold them."""

from __future__ import annotations

import json

import torch

from benchmarks import gpu_check

TINY = ["--tiny", "--device", "cpu", "--batches", "1,2", "--largest-cap", "2", "--warmup", "1", "--steps", "1"]


def test_the_gpu_check_measures_every_row_at_a_tiny_size(tmp_path, monkeypatch):
    # inductor compiles for minutes on this CPU; the check's compiled rows are what is tested, not torch
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    out = tmp_path / "check.json"
    report = gpu_check.main([*TINY, "--fv-channels", "2", "--budget", "600", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    got = {(r["precision"], r["compile"], r["batch"]) for r in report["rows"]}
    assert got == {(p, c, b) for p in ("fp32", "bf16") for c in (False, True) for b in (1, 2)}
    for row in report["rows"]:
        assert row["seconds_per_step"] > 0
        assert row["seconds_per_prompt"] == row["seconds_per_step"] / row["batch"] * gpu_check.PAPER_STEPS
    fv = report["feature_visualisation"]
    assert fv["channels"] == 2 and fv["seconds_per_channel"] > 0
    assert report["skipped"] == []
    table = out.with_suffix(".md").read_text()
    assert "| bf16 | yes | 2 |" in table and "Feature visualisation, 2 channels" in table


def test_what_does_not_fit_the_budget_is_skipped_and_said(tmp_path):
    report = gpu_check.main([*TINY, "--budget", "0", "--out", str(tmp_path / "check.json")])
    assert report["rows"] == [] and report["feature_visualisation"] is None
    assert len(report["skipped"]) == 2 * 3 + 1 + 2 * 3  # eager batches, largest, fv, compiled
    assert all("left" in s for s in report["skipped"] if "feature" not in s)


def test_the_largest_batch_halves_on_running_out_of_memory():
    tried = []

    def run(batch):
        tried.append(batch)
        if batch > 5:
            raise torch.OutOfMemoryError("too big")
        return {"peak_memory_mib": 1.0}

    assert gpu_check.largest_batch(run, None, torch.device("cpu"), cap=24) == (3, {"peak_memory_mib": 1.0})
    assert tried == [24, 12, 6, 3]
