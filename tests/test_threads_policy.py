"""Point 1 of issue 24: the CPU threads clipforge's command line gives torch, from one pure policy
(``clipforge.threads.choose_threads``), and a library import that leaves torch's threads alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from helpers import tiny_spec_dict

from clipforge.cli import main
from clipforge.threads import ThreadChoice, available_cpus, choose_threads


@pytest.mark.parametrize(
    "env, cpus, requested, threads",
    [
        ({}, 8, None, 8),  # alone: every CPU the process may use
        ({}, 8, 3, 3),  # --threads wins over everything
        ({"CLIPFORGE_THREADS": "2", "OMP_NUM_THREADS": "5"}, 8, 3, 3),
        ({"CLIPFORGE_THREADS": "2", "OMP_NUM_THREADS": "5"}, 8, None, 2),
        ({"OMP_NUM_THREADS": "5", "LOCAL_WORLD_SIZE": "4"}, 8, None, 5),  # an explicit OMP_NUM_THREADS is kept
        ({"LOCAL_WORLD_SIZE": "4", "WORLD_SIZE": "8"}, 16, None, 4),  # torchrun: one share per rank of this node
        ({"WORLD_SIZE": "3"}, 8, None, 2),
        ({"WORLD_SIZE": "32"}, 8, None, 1),  # never below one
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}, 16, None, 4),
        ({"SLURM_PROCID": "1", "SLURM_NTASKS": "8", "SLURM_NTASKS_PER_NODE": "2"}, 16, None, 8),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_CPUS_PER_TASK": "6"}, 64, None, 6),
        ({"SLURM_CPUS_PER_TASK": "6"}, 4, None, 4),  # not more than the process may use
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_CPUS_ON_NODE": "16"}, 16, None, 4),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_CPUS_ON_NODE": "16"}, 4, None, 4),  # bound already
    ],
)
def test_the_policy_shares_the_cpus_among_ranks_and_respects_explicit_settings(env, cpus, requested, threads):
    assert choose_threads(env, cpus, requested).threads == threads


def test_the_policy_says_where_its_number_came_from_and_refuses_nonsense():
    assert choose_threads({"CLIPFORGE_THREADS": "2"}, 8) == ThreadChoice(2, "CLIPFORGE_THREADS")
    assert choose_threads({"OMP_NUM_THREADS": "3"}, 8).reason == "OMP_NUM_THREADS"
    for bad in ("0", "-1", "many"):
        with pytest.raises(ValueError, match="CLIPFORGE_THREADS"):
            choose_threads({"CLIPFORGE_THREADS": bad}, 8)
    assert 1 <= available_cpus()


def run_tiny(tmp_path, *flags: str) -> dict:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(tiny_spec_dict(seeds=[0], prompts=["a red circle"], steps=2)))
    assert main(["invert", str(spec), "--out", str(tmp_path / "out"), *flags]) == 0
    return json.loads((tmp_path / "out" / "run.json").read_text())


def test_the_command_line_applies_threads_from_its_flag_anywhere_on_the_line(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # --threads wins over it
    torch.set_num_threads(2)
    assert run_tiny(tmp_path, "--threads", "1")["threads"] == 1
    assert torch.get_num_threads() == 1


def test_the_command_line_applies_threads_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPFORGE_THREADS", "1")
    torch.set_num_threads(2)
    assert run_tiny(tmp_path)["threads"] == 1


def test_a_bad_thread_count_is_refused_in_one_line(capsys, monkeypatch):
    monkeypatch.setenv("CLIPFORGE_THREADS", "lots")
    assert main(["plugins"]) == 2
    assert "error: CLIPFORGE_THREADS must be a whole number" in capsys.readouterr().err
    monkeypatch.delenv("CLIPFORGE_THREADS")
    with pytest.raises(SystemExit) as exit_info:
        main(["plugins", "--threads", "0"])
    assert exit_info.value.code == 2


def test_importing_the_library_leaves_torchs_threads_alone():
    code = (
        "import torch; torch.set_num_threads(3)\n"
        "import clipforge, clipforge.engine, clipforge.sweep, clipforge.cli\n"
        "clipforge.build_registry()\n"
        "assert torch.get_num_threads() == 3, torch.get_num_threads()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
