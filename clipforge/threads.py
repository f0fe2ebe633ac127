"""How many CPU threads torch uses: one small policy, a pure function, applied once by the CLI.

On a shared machine torch's default (one thread per core of the machine, whatever else runs there)
can make a run several times slower than one thread would; under torchrun or Slurm, each rank
takes every core, so that N ranks fight over them. :func:`choose_threads` says what to use instead;
the library itself never changes torch's threads (a notebook or a program keeps its own setting).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

#: the environment variable that sets clipforge's threads (``--threads`` wins over it)
ENV = "CLIPFORGE_THREADS"


class ThreadChoice(NamedTuple):
    """The threads to use and where that number came from (for messages and ``run.json``)."""

    threads: int
    reason: str


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a Slurm or ``taskset`` allocation),
    else the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _count(value: str | None, name: str) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        number = int(value.strip())
    except ValueError:
        raise ValueError(f"{name} must be a whole number of threads (1 or more), not {value!r}") from None
    if number < 1:
        raise ValueError(f"{name} must be a whole number of threads (1 or more), not {value!r}")
    return number


def _positive(value: str | None) -> int | None:
    """A count from the environment that clipforge only reads (a scheduler's): None when unusable."""
    try:
        number = int((value or "").split(",")[0].split("(")[0])
    except ValueError:
        return None
    return number if number >= 1 else None


def choose_threads(env: Mapping[str, str], cpus: int, requested: int | None = None) -> ThreadChoice:
    """The CPU threads one clipforge process should use, from ``env`` (an environment, e.g.
    ``os.environ``) and ``cpus`` (the CPUs the process may use, :func:`available_cpus`); pure.

    In order: ``requested`` (``--threads N``); ``CLIPFORGE_THREADS``; an explicit ``OMP_NUM_THREADS``
    (respected as it is); else the CPUs shared among the ranks on this node: ``SLURM_CPUS_PER_TASK``
    where Slurm gives it, else ``cpus`` divided by the processes per node (``LOCAL_WORLD_SIZE`` or
    ``WORLD_SIZE`` under torchrun, ``SLURM_NTASKS_PER_NODE`` or ``SLURM_NTASKS`` under Slurm, unless
    Slurm bound the task to fewer CPUs than ``SLURM_CPUS_ON_NODE`` already), at least one. Raises
    ``ValueError`` for a ``requested`` or ``CLIPFORGE_THREADS`` below 1 or not a number."""
    cpus = max(1, int(cpus))
    if requested is not None:
        return ThreadChoice(_count(str(requested), "--threads") or 1, "--threads")
    chosen = _count(env.get(ENV), ENV)
    if chosen is not None:
        return ThreadChoice(chosen, ENV)
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if omp:
        return ThreadChoice(_positive(omp) or cpus, "OMP_NUM_THREADS")
    if "LOCAL_WORLD_SIZE" in env or "WORLD_SIZE" in env:  # torchrun
        ranks = _positive(env.get("LOCAL_WORLD_SIZE")) or _positive(env.get("WORLD_SIZE")) or 1
        return ThreadChoice(max(1, cpus // ranks), f"{cpus} CPUs / {ranks} torchrun rank(s)")
    if "SLURM_PROCID" in env or "SLURM_NTASKS" in env or "SLURM_CPUS_PER_TASK" in env:
        per_task = _positive(env.get("SLURM_CPUS_PER_TASK"))
        if per_task is not None:
            return ThreadChoice(min(per_task, cpus), "SLURM_CPUS_PER_TASK")
        node = _positive(env.get("SLURM_CPUS_ON_NODE"))
        if node is not None and cpus < node:  # Slurm bound this task to its own CPUs already
            return ThreadChoice(cpus, f"{cpus} CPUs Slurm bound this task to")
        tasks = _positive(env.get("SLURM_NTASKS_PER_NODE")) or _positive(env.get("SLURM_NTASKS")) or 1
        return ThreadChoice(max(1, cpus // tasks), f"{cpus} CPUs / {tasks} Slurm task(s)")
    return ThreadChoice(cpus, f"{cpus} CPUs this process may use")


def apply_threads(choice: ThreadChoice) -> None:
    """Make torch use ``choice.threads`` (``torch.set_num_threads``); an explicit ``OMP_NUM_THREADS``
    is left to torch, which reads it itself. For a program's start, before any heavy work (the CLI
    calls it once), never at a library's import: it changes the whole process."""
    if choice.reason == "OMP_NUM_THREADS":
        return
    import torch

    torch.set_num_threads(choice.threads)
