"""Sweeps: a whole study (grid points x prompts x seeds) that resumes after a crash and splits over
processes.

A sweep spec names a base run spec, prompts (inline or a file), seeds and a grid of overrides in the
``--set`` syntax (:mod:`.spec`). It expands to *items*, one image each, grouped in *blocks*: one grid
point, up to ``batch_size`` items, optimised together in one engine run (:mod:`.runner`). The sweep
folder holds ``sweep.json`` (the sweep as resolved: every grid point's run spec), the images
(``items/<point>/<item>.png``), snapshots when asked for, and the index (:mod:`.index`).
"""

from clipforge.sweep.index import read_index, status_counts, sweep_status
from clipforge.sweep.plan import estimate_memory, plan_lines
from clipforge.sweep.runner import parse_shard, process_group, run_sweep, shard_from_environment
from clipforge.sweep.spec import GridPoint, SweepSpec, load_sweep, read_prompts

__all__ = [
    "GridPoint",
    "SweepSpec",
    "estimate_memory",
    "load_sweep",
    "parse_shard",
    "plan_lines",
    "process_group",
    "read_index",
    "read_prompts",
    "run_sweep",
    "shard_from_environment",
    "status_counts",
    "sweep_status",
]
