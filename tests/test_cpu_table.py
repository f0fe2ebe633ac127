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
