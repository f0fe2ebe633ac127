"""benchmarks/cpu_table.py at its smallest size: its figures are consistent with one another, so
that the CPU table in RESULTS is computed as it says."""

from __future__ import annotations

import pytest

from benchmarks import cpu_table


def test_the_cpu_table_reports_consistent_figures(capsys):
    report = cpu_table.main(
        ["--models", "toyworld-rn", "--configs", "fp32,bf16", "--threads", "1", "--warmup", "1", "--steps", "1"]
        + ["--repeats", "1"]
    )
    assert report["matmul_peak_gflops"]["fp32"] > 0 and report["matmul_peak_gflops"]["bf16"] > 0
    fp32, bf16 = report["rows"]
    assert (fp32["config"], bf16["config"]) == ("fp32", "bf16")
    for row in report["rows"]:
        assert row["gflop_per_step"] == fp32["gflop_per_step"] > 0.1  # the same model's work in both
        assert row["seconds_per_inversion"] == pytest.approx(row["seconds_per_step"] * 200)
        assert row["gflops"] == pytest.approx(row["gflop_per_step"] / row["seconds_per_step"])
    peak = report["matmul_peak_gflops"]
    assert bf16["share_of_peak"] == pytest.approx(bf16["gflops"] / peak["bf16"])
    assert fp32["speedup_over_fp32"] == 1.0
    assert 0.0 <= fp32["augmentation_share"] < 1.0
    assert "| toyworld-rn | bf16 |" in capsys.readouterr().out


def test_an_unknown_configuration_is_refused():
    with pytest.raises(SystemExit):
        cpu_table.main(["--configs", "fp32,fp8"])


def eval_output(transfer: float, colour: float) -> dict:
    """A toyworld_eval output of 48 inversions with these two readings (the others 0.5)."""
    analytic = {"colour": colour, "shape": 0.5, "background": 0.5, "caption": 0.5}
    result = {
        "inversions": 48,
        "transfer_accuracy": transfer,
        "attribute_accuracy": {"colour": 0.5, "shape": 0.5, "background": 0.5},
        "analytic": analytic,
    }
    return {"results": [result]}


def test_a_reading_outside_fp32s_interval_is_marked():
    rows = cpu_table.quality(eval_output(0.5, 0.5), {"near": eval_output(0.55, 0.5), "far": eval_output(0.5, 0.9)})
    by = {r["reading"]: r for r in rows}
    transfer, colour = by["learned: transfer accuracy"], by["analytic: colour"]
    assert transfer["low"] < 0.5 < transfer["high"] and transfer["near inside"] and transfer["far inside"]
    assert colour["near inside"] and not colour["far inside"]  # 0.9 is outside 0.5's interval at n = 48
    assert "0.90 (outside)" in cpu_table.quality_table(rows, ["near", "far"])
