"""``clipforge sweep --plan`` on a large grid builds each distinct backbone once (it built one per
grid point: a 100 x 100 grid had not finished after 5 minutes)."""

from __future__ import annotations

import json

from helpers import tiny_backbone

from clipforge.cli import main

BASE = {"backbones": [tiny_backbone()], "steps": 2, "copies": 1, "resolution": [{"step": 0, "size": 16}]}


def test_the_plan_of_a_large_grid_builds_each_distinct_backbone_once(tmp_path, capsys, backbones_built):
    built = backbones_built
    grid = {
        "optimizer.lr": [0.01 * (i + 1) for i in range(20)],
        "copies": list(range(1, 11)),
        "backbones[0].options.init_seed": [0, 1],
    }
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"base": BASE, "prompts": ["a cat"], "seeds": 1, "grid": grid}))
    assert main(["sweep", str(path), "--plan"]) == 0
    out = capsys.readouterr().out
    assert "400 items, 400 blocks" in out and out.count("point ") == 400
    assert len(built) == 2 and len(set(built)) == 2  # one per distinct backbone
    # every point still has its estimate
    lines = [line for line in out.splitlines() if line.startswith("point 399 ")]
    assert "memory per block about" in lines[0]
