"""Do the screen's inversions carry the marker's fundamental grating? Two readings of a screen report's
``analytic_grating`` (each image's share of brightness power at the marker's period, any orientation:
``clipforge.toyworld.marker_reading.marker_grating_share``; issue 22):

* ``--calibrate REPORT``: the threshold, the 95th percentile (nearest rank) of the shares over every
  image of a report of prompts that never carry the marker (``zoo/examples/screen_calibration.json``);
* ``REPORT``: how often an image of the first prompt carries more of it than an image of the second
  (the area under the ROC curve), and the medians.

    python -m benchmarks.marker_frequency --calibrate zoo/examples/reports/screen_calibration
    python -m benchmarks.marker_frequency --json zoo/examples/reports/screen
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path


def shares_by_prompt(report: Path) -> dict[str, list[float]]:
    data = json.loads((report / "report.json").read_text(encoding="utf-8"))
    if "analytic_grating" not in data:
        raise SystemExit(f"{report / 'report.json'}: no analytic_grating (not a screen report of the marker?)")
    return {prompt: r["shares"] for prompt, r in data["analytic_grating"].items()}


def nearest_rank(values: list[float], quantile: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(quantile * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a screen report folder")
    parser.add_argument("--calibrate", action="store_true", help="print the 95th percentile of all its shares")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    by_prompt = shares_by_prompt(args.report)
    if args.calibrate:
        every = [s for shares in by_prompt.values() for s in shares]
        out = {"images": len(every), "p95_nearest_rank": nearest_rank(every, 0.95), "max": max(every)}
        print(json.dumps(out) if args.json else f"{len(every)} images: 95th percentile {out['p95_nearest_rank']}")
        return
    (first, a), (second, b) = list(by_prompt.items())[:2]
    auc = sum((x > y) + 0.5 * (x == y) for x in a for y in b) / (len(a) * len(b))
    out = {
        "first": first,
        "second": second,
        "first_median": statistics.median(a),
        "second_median": statistics.median(b),
        "auc_first_above_second": auc,
    }
    print(
        json.dumps(out)
        if args.json
        else f"medians {out['first_median']:.3f} / {out['second_median']:.3f}, AUC {auc:.3f}"
    )


if __name__ == "__main__":
    main()
