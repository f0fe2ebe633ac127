"""What a gallery shows, read from a run, a sweep or an analysis report folder.

Everything the page needs is collected here, once, into plain JSON (the page has no server to ask):
every item with its image, status, numbers and snapshots, a run's curves from ``metrics.jsonl``, and
an analysis report's ``report.md`` as sections of text, tables and grids. Paths are relative to the
folder (so the page still works when the folder is moved) and only name files inside it.

Here are a run's and a sweep's items; an analysis report's are in :mod:`clipforge.gallery_reports`,
the helpers both use in :mod:`clipforge.gallery_common`; every one of their names is importable from
here as well.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from clipforge.gallery_common import (  # noqa: F401  (re-exported, those unused here: they lived here)
    ATTRIBUTION,
    GRID_PAD,
    attribution_beside,
    gallery_item,
    grid_boxes,
    inside,
    number,
    scalar_verdicts,
    settings_text,
)
from clipforge.gallery_common import gallery_item as _item  # noqa: F401  (the names they had here)
from clipforge.gallery_common import grid_boxes as _grid_boxes  # noqa: F401
from clipforge.gallery_common import scalar_verdicts as _verdicts  # noqa: F401
from clipforge.gallery_reports import (  # noqa: F401  (re-exported: a report's items lived here)
    LAYER_SORTS,
    OTHER,
    _blend_cards,
    _cut,
    _list,
    _numbers,
    _probe_cards,
    grid_cards,
    is_layer_report,
    layer_items,
    markdown_blocks,
    report_items,
)
from clipforge.sweep.index import count_records, read_index

#: most points a curve keeps (a long run's metrics are thinned evenly; the last step is always kept),
#: and most points of all a run's curves together (a run of many images gets shorter curves, down to 20
#: points each, so that the page stays a few megabytes)
CURVE_POINTS = 200
CURVE_BUDGET = 100_000
_STEP = re.compile(r"step_(\d+)\.png$")


def _step(path: str, default: int) -> int:
    match = _STEP.search(path)
    return int(match.group(1)) if match else default


def _prompt_parts(prompt: Any) -> tuple[str, str]:
    """(text, label) of a prompt given as a string or as ``{"text": ..., "label": ...}``."""
    if isinstance(prompt, dict):
        text = prompt.get("text") if isinstance(prompt.get("text"), str) else ""
        label = prompt.get("label") if isinstance(prompt.get("label"), str) else ""
        return text, label or text
    return (prompt, prompt) if isinstance(prompt, str) else ("", "")


# --------------------------------------------------------------------------- sweeps


def _natural(record: dict[str, Any]) -> str:
    """A record's id with its numbers zero-filled: seed 2 before seed 10, as in the grid."""
    return re.sub(r"\d+", lambda m: m.group().zfill(20), str(record["id"]))


def sweep_items(folder: Path) -> dict[str, Any]:
    """A sweep's items by grid point: done ones with their image, failed ones with their error, and a
    count of those not run yet (the index has no record of them). A record's ``snapshots`` (paths in
    step order, written when the sweep asked for snapshots) become its strip."""
    info = json.loads((folder / "sweep.json").read_text(encoding="utf-8"))
    points = info.get("points") or []
    groups = [settings_text(p.get("settings") or {}) for p in points]
    items = []
    for record in sorted(read_index(folder).values(), key=_natural):
        point = record.get("point")
        if not isinstance(point, int) or isinstance(point, bool) or not 0 <= point < len(points):
            if len(groups) == len(points):
                groups.append("records of no grid point in sweep.json")
            point = len(points)
        settings = record.get("settings") or (points[point].get("settings") if point < len(points) else {})
        settings = settings if isinstance(settings, dict) else {}
        text, label = _prompt_parts(record.get("prompt"))
        label = record.get("label") if isinstance(record.get("label"), str) else label
        status = str(record.get("status") or "unknown")
        snapshots = record.get("snapshots") if isinstance(record.get("snapshots"), list) else []
        strip = [{"src": s, "step": _step(s, i)} for i, s in enumerate(inside(folder, p) for p in snapshots) if s]
        seed = record.get("seed", "")
        items.append(
            gallery_item(
                id=str(record["id"]),
                src=inside(folder, record.get("png")) if status == "done" else None,
                title=label or text,
                prompt=text,
                label=label,
                seed=seed,
                group=point,
                setting=settings_text(settings),
                settings={str(k): v for k, v in settings.items()},
                status=status,
                error=str(record.get("error") or ""),
                similarity=number(record.get("similarity")),
                loss=number(record.get("loss")),
                verdicts=scalar_verdicts(record.get("verdicts")),
                spec=f"sweep.json, points[{point}].run",
                strip=strip,
                attribution=attribution_beside(folder, inside(folder, record.get("png"))) if status == "done" else None,
                key=f"{label}|{text}|{seed}",
            )
        )
    total = info.get("items") if isinstance(info.get("items"), int) else len(items)
    # the counts are of the sweep's own items, as --status gives them: not of records of items it no
    # longer has (a prompt, seed or grid value since dropped from its end), which are still shown
    done, failed = (len(r) for r in count_records(folder, info))
    notes = [f"{total} items: {done} done, {failed} failed, {max(total - done - failed, 0)} not run yet"]
    others = sum(i["status"] in ("done", "failed") for i in items) - done - failed
    if others > 0:
        notes.append(f"{others} more of an earlier version of the sweep")
    return {"items": items, "groups": groups, "notes": notes}


# --------------------------------------------------------------------------- runs


def run_curves(path: Path, rows: int) -> list[dict[str, list[float | None]] | None]:
    """Each image's similarity and loss by step, from a run's ``metrics.jsonl`` (a resumed run's
    repeated steps keep their last line; a torn line is skipped), thinned to ``CURVE_POINTS``."""
    if not path.is_file():
        return [None] * rows
    by_step: dict[int, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            by_step[record["step"]] = record
    steps = sorted(by_step)
    points = max(20, min(CURVE_POINTS, CURVE_BUDGET // max(rows, 1)))
    stride = max(1, math.ceil(len(steps) / points))
    kept = steps[::stride] + ([steps[-1]] if steps and (len(steps) - 1) % stride else [])
    curves: list[dict[str, list[float | None]] | None] = []
    for row in range(rows):
        curve: dict[str, list[float | None]] = {"step": [], "similarity": [], "loss": []}
        for step in kept:
            curve["step"].append(step)
            for name in ("similarity", "loss"):
                values = by_step[step].get(name)
                value = values[row] if isinstance(values, list) and row < len(values) else None
                curve[name].append(None if number(value) is None else round(value, 5))
        curves.append(curve if kept else None)
    return curves


def run_strips(folder: Path, rows: list[dict[str, Any]], seeds: int) -> list[list[dict[str, Any]]]:
    """Each image's snapshots in step order: its own files (``per_image``), or else its place cut
    from each step's grid (the page shows that part of the grid, nothing is written)."""
    snapshots = folder / "snapshots"
    strips: list[list[dict[str, Any]]] = [[] for _ in rows]
    if not snapshots.is_dir():
        return strips
    names = sorted((p.name for p in snapshots.iterdir() if _STEP.search(p.name)), key=lambda n: _step(n, 0))
    for k, row in enumerate(rows):
        slug = str(row.get("slug"))
        own = [n for n in names if n.startswith(slug + "_") and _STEP.fullmatch(n[len(slug) + 1 :])]
        strips[k] = [{"src": f"snapshots/{n}", "step": _step(n, 0)} for n in own]
    if any(strips) or not rows:
        return strips
    columns = seeds if len(rows) > 1 else 1
    columns = columns if columns > 1 else math.ceil(math.sqrt(len(rows)))
    for name in (n for n in names if _STEP.fullmatch(n)):
        try:
            layout = grid_boxes(snapshots / name, len(rows), columns)
        except OSError:
            continue
        if layout is None:
            continue
        boxes, size = layout
        for k, row in enumerate(rows):
            index = row.get("index", k)
            if isinstance(index, int) and 0 <= index < len(boxes):
                strips[k].append(
                    {"src": f"snapshots/{name}", "step": _step(name, 0), "box": boxes[index], "size": size}
                )
    return strips


def run_items(folder: Path) -> dict[str, Any]:
    """A run's images with their prompts, seeds, final similarity and loss, curves and snapshots; an
    image a screen withheld, or one not written yet, is shown as such, without a picture."""
    run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    try:
        spec = json.loads((folder / "spec.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        spec = {}
    spec = spec if isinstance(spec, dict) else {}
    prompts = spec.get("prompts") if isinstance(spec.get("prompts"), list) else []
    seeds = spec.get("seeds") if isinstance(spec.get("seeds"), list) else []
    rows = [r for r in run.get("rows", []) if isinstance(r, dict)]
    final = run.get("final") or {}
    withheld = set(run.get("withheld") or [])
    flat = {f for f in run["flat"] if isinstance(f, str)} if isinstance(run.get("flat"), list) else None
    status = str(run.get("status", "?"))
    indices = [r.get("index") for r in rows if isinstance(r.get("index"), int) and r["index"] >= 0]
    curves = run_curves(folder / "metrics.jsonl", max(indices, default=-1) + 1)
    strips = run_strips(folder, rows, len(seeds) or len({r.get("seed") for r in rows}))
    items = []
    for k, row in enumerate(rows):
        index = row.get("index", k)
        slug = str(row.get("slug", ""))
        pi = row.get("prompt_index")
        text, label = _prompt_parts(prompts[pi] if isinstance(pi, int) and 0 <= pi < len(prompts) else "")
        label = str(row.get("label") or label)
        src = inside(folder, f"images/{slug}.png")
        state = "done" if src else "withheld" if slug in withheld else status if status != "finished" else "missing"

        def final_value(name: str, index: Any = index) -> float | None:
            values = final.get(name)
            ok = isinstance(values, list) and isinstance(index, int) and 0 <= index < len(values)
            return number(values[index]) if ok else None

        items.append(
            gallery_item(
                id=slug,
                src=src,
                title=label or text,
                prompt=text or label,
                label=label,
                seed=row.get("seed", ""),
                status=state,
                error=str(run.get("error") or "") if state == "failed" else "",
                similarity=final_value("similarity"),
                loss=final_value("loss"),
                verdicts=scalar_verdicts(row.get("verdicts")),
                spec="spec.json" if (folder / "spec.json").is_file() else "",
                strip=strips[k] if state != "withheld" else [],
                attribution=attribution_beside(folder, src),
                extra={"flat": slug in flat} if flat is not None and state == "done" else {},
                curve=curves[index] if index in indices else None,
                key=f"{label}|{text}|{row.get('seed')}",
            )
        )
    backbones = ", ".join(str(b) for b in run.get("backbones", [])) or "run"
    notes = [f"{status}, {run.get('steps_done', '?')} steps, {len(rows)} images"]
    return {"items": items, "groups": [backbones], "notes": notes}
