"""What a gallery shows, read from a run, a sweep or an analysis report folder.

Everything the page needs is collected here, once, into plain JSON (the page has no server to ask):
every item with its image, status, numbers and snapshots, a run's curves from ``metrics.jsonl``, and
an analysis report's ``report.md`` as sections of text, tables and grids. Paths are relative to the
folder (so the page still works when the folder is moved) and only name files inside it.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image

from clipforge.sweep.index import count_records, read_index

#: most points a curve keeps (a long run's metrics are thinned evenly; the last step is always kept),
#: and most points of all a run's curves together (a run of many images gets shorter curves, down to 20
#: points each, so that the page stays a few megabytes)
CURVE_POINTS = 200
CURVE_BUDGET = 100_000
#: the white gap between a snapshot grid's images (``clipforge.images.image_grid``'s default)
GRID_PAD = 2
#: the report section of the grids report.md does not show
OTHER = "other images"
_STEP = re.compile(r"step_(\d+)\.png$")
#: how an image's transparency (attribution) map is named beside it
ATTRIBUTION = ".attribution.png"


def settings_text(settings: dict[str, Any]) -> str:
    """A grid point's settings as one line (``lr=0.1, parameterization.name="pixel"``), or ``base``."""
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in settings.items()) or "base"


def number(value: Any) -> float | None:
    """A finite number or None: NaN and infinities have no JSON spelling the page could read."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def inside(folder: Path, path: Any) -> str | None:
    """``path`` as a relative POSIX path when it names an existing file inside ``folder``, else None:
    the page only ever loads the folder's own files (no absolute path, no ``..``, no URL)."""
    if not isinstance(path, str) or not path:
        return None
    rel = PurePosixPath(path.replace("\\", "/"))
    if not rel.parts or rel.is_absolute() or ".." in rel.parts or ":" in rel.parts[0]:  # "." or "./": no file
        return None
    return rel.as_posix() if (folder / rel).is_file() else None


def attribution_beside(folder: Path, src: str | None) -> str | None:
    """The transparency (attribution) map saved beside an image (``images/<slug>.attribution.png``
    beside ``images/<slug>.png``), when the folder holds one; else None."""
    if not src or not src.endswith(".png") or src.endswith(ATTRIBUTION):
        return None
    return inside(folder, src[: -len(".png")] + ATTRIBUTION)


def _step(path: str, default: int) -> int:
    match = _STEP.search(path)
    return int(match.group(1)) if match else default


def _item(**fields: Any) -> dict[str, Any]:
    """One thing the page shows, every field present (the page's script reads them all)."""
    item: dict[str, Any] = {
        "id": "",
        "src": None,
        "title": "",
        "prompt": "",
        "label": "",
        "seed": "",
        "group": 0,
        "setting": "",
        "settings": {},
        "status": "done",
        "error": "",
        "similarity": None,
        "loss": None,
        "verdicts": {},
        "spec": "",
        "strip": [],
        "curve": None,
        "key": "",
        "extra": {},
        "box": None,
        "size": None,
        "attribution": None,
        "brief": None,
    }
    item.update(fields)
    return item


def _verdicts(value: Any) -> dict[str, Any]:
    """A record's ``verdicts`` (judge name to verdict), scalars only."""
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str | bool) or number(v) is not None}


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
            _item(
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
                verdicts=_verdicts(record.get("verdicts")),
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


def _grid_boxes(path: Path, count: int, columns: int) -> tuple[list[list[int]], list[int]] | None:
    """Where each of ``count`` images sits in a snapshot grid of ``columns`` columns (as the snapshots
    callback tiles them), or None when the grid's size does not fit that layout."""
    with Image.open(path) as image:
        width, height = image.size
    rows = math.ceil(count / columns)
    cell_w, rest_w = divmod(width - GRID_PAD * (columns + 1), columns)
    cell_h, rest_h = divmod(height - GRID_PAD * (rows + 1), rows)
    if rest_w or rest_h or cell_w <= 0 or cell_h <= 0:
        return None
    boxes = []
    for i in range(count):
        r, c = divmod(i, columns)
        boxes.append([GRID_PAD + c * (cell_w + GRID_PAD), GRID_PAD + r * (cell_h + GRID_PAD), cell_w, cell_h])
    return boxes, [width, height]


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
            layout = _grid_boxes(snapshots / name, len(rows), columns)
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
            _item(
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
                verdicts=_verdicts(row.get("verdicts")),
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


# --------------------------------------------------------------------------- analysis reports


def markdown_blocks(text: str, folder: Path) -> list[dict[str, Any]]:
    """``report.md`` as blocks: headings, paragraphs, tables (header and rows) and images (only the
    folder's own files; any other image reference stays text). Just the markdown reports use."""
    blocks: list[dict[str, Any]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
            continue
        heading = re.fullmatch(r"(#{1,6})\s+(.*)", line)
        image = re.fullmatch(r"!\[([^\]]*)\]\(([^)\s]+)\)", line)
        if heading:
            blocks.append({"type": "heading", "level": len(heading.group(1)), "text": heading.group(2)})
            i += 1
        elif image and inside(folder, image.group(2)):
            blocks.append({"type": "image", "alt": image.group(1), "src": inside(folder, image.group(2))})
            i += 1
        elif line.startswith("|"):
            table = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                    table.append(cells)
                i += 1
            blocks.append({"type": "table", "header": table[0] if table else [], "rows": table[1:]})
        else:
            paragraph = []
            while i < len(lines) and lines[i].strip() and not re.match(r"#{1,6}\s|\||!\[", lines[i].strip()):
                paragraph.append(lines[i].strip())
                i += 1
            if not paragraph:  # an image reference that names no file of the folder
                paragraph, i = [line], i + 1
            blocks.append({"type": "text", "text": " ".join(paragraph)})
    return blocks


def _numbers(report: dict[str, Any]) -> list[list[str]]:
    """report.json's top-level scalars as table rows: what a report without ``report.md`` can show."""
    return [[str(k), json.dumps(v)] for k, v in report.items() if isinstance(v, str | int | float | bool) or v is None]


def report_items(folder: Path) -> dict[str, Any]:
    """An analysis report as sections (a heading, its text and tables, its grids), the grids as items
    named by their captions. Without ``report.md``, report.json's numbers and every grid."""
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    report = report if isinstance(report, dict) else {}
    analysis = str(report.get("analysis", "analysis"))
    md = folder / "report.md"
    blocks = markdown_blocks(md.read_text(encoding="utf-8", errors="replace"), folder) if md.is_file() else []
    if not blocks:
        blocks = [{"type": "heading", "level": 1, "text": f"{analysis} report"}]
        blocks.append({"type": "table", "header": ["report.json", "value"], "rows": _numbers(report)})
    listed = {b["src"] for b in blocks if b["type"] == "image"}
    others = [p.name for p in sorted(folder.glob("*.png")) if p.name not in listed and inside(folder, p.name)]
    if others:
        blocks.append({"type": "heading", "level": 2, "text": OTHER})
        blocks += [{"type": "image", "alt": Path(n).stem, "src": n} for n in others]
    sections: list[dict[str, Any]] = []
    for block in blocks:  # every heading starts a section; text before the first one has none
        if block["type"] == "heading" or not sections:
            sections.append({"heading": block["text"] if block["type"] == "heading" else "", "blocks": []})
        if block["type"] != "heading":
            sections[-1]["blocks"].append(block)
    items = []
    for index, section in enumerate(sections):
        images = [b for b in section["blocks"] if b["type"] == "image"]
        caption = " ".join(b["text"] for b in section["blocks"] if b["type"] == "text")
        for block in images:
            # a section's one grid is named by its heading ("a red circle + a blue square", not "pair")
            named = len(images) == 1 and section["heading"] not in ("", OTHER)
            title = section["heading"] if named else block["alt"]
            block["item"] = len(items)
            items.append(
                _item(
                    id=block["src"],
                    src=block["src"],
                    title=title or Path(block["src"]).stem,
                    prompt=title,
                    label=block["alt"],
                    section=index,
                    setting=section["heading"],
                    key=block["src"],
                    caption=caption,
                )
            )
    for index, section in enumerate(sections):  # a probe's or a blend's grid: each image its own card
        for block in [b for b in section["blocks"] if b["type"] == "image"]:
            cards = grid_cards(folder, report, block["src"])
            if cards:
                first = len(items)
                items += [{**card, "section": index, "setting": section["heading"]} for card in cards]
                section["blocks"].append(
                    {"type": "cards", "grid": block["item"], "items": list(range(first, len(items)))}
                )
    return {"items": items, "groups": [f"{analysis} report"], "notes": [], "report": sections}


# --------------------------------------------------------------------------- cards cut from a report's grids


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _cut(folder: Path, src: str, rows: int, columns: int) -> list[dict[str, Any]] | None:
    """Each image's place in a grid of ``rows`` x ``columns`` (``image_grid``'s layout, row by row),
    or None when the file does not have that layout (the grid stays whole, without cards)."""
    try:
        layout = _grid_boxes(folder / src, rows * columns, columns) if rows and columns else None
    except OSError:
        return None
    if layout is None:
        return None
    boxes, size = layout
    return [{"src": src, "box": box, "size": size} for box in boxes]


def _probe_cards(folder: Path, report: dict[str, Any], src: str, p: int) -> list[dict[str, Any]]:
    """``grid_NN.png`` of a probe: prompt NN's images, one row in seed order, each with the judge's
    verdict, the analytic judge's colour and each value's score and colour share."""
    prompts = list(report["prompts"]) if isinstance(report.get("prompts"), dict) else []
    if not 0 <= p < len(prompts):
        return []
    prompt = prompts[p]
    images = [i for i in _list(report.get("images")) if isinstance(i, dict) and i.get("prompt") == prompt]
    places = _cut(folder, src, 1, len(images))
    if places is None:
        return []
    cards = []
    for k, (image, place) in enumerate(zip(images, places, strict=True)):
        analytic = image.get("analytic_colour") or "none of these" if "analytic_colour" in image else None
        verdicts = _verdicts({"judge": image.get("value"), "analytic": analytic})
        extra: dict[str, Any] = {}
        for name, values in (("score", image.get("scores")), ("share", image.get("analytic_share"))):
            for value, x in (values if isinstance(values, dict) else {}).items():
                if number(x) is not None:
                    extra[f"{name}.{value}"] = round(float(x), 4)
        seed = image.get("seed", "")
        cards.append(
            _item(
                id=f"{src}#{k}",
                title=str(prompt),
                prompt=str(prompt),
                label=str(prompt),
                seed=seed if isinstance(seed, int | str) else "",
                verdicts=verdicts,
                extra=extra,
                brief=[],
                key=f"{src}#{k}",
                **place,
            )
        )
    return cards


def _blend_cards(folder: Path, report: dict[str, Any], src: str, p: int) -> list[dict[str, Any]]:
    """``pair_NN.png`` of a blend: rows A alone, B alone and the blend, a column per seed. The report
    records presence per row, not per image: each card shows its row's counts."""
    pairs = _list(report.get("pairs"))
    seeds = _list(report.get("seeds"))
    if not 0 <= p < len(pairs) or not isinstance(pairs[p], dict):
        return []
    entry = pairs[p]
    concepts = [str(c) for c in _list(entry.get("concepts"))][:2]
    a, b = (concepts + ["A", "B"][len(concepts) :])[:2]
    places = _cut(folder, src, 3, len(seeds))
    if places is None:
        return []
    cards = []
    for r, (role, title) in enumerate((("a", a), ("b", b), ("blend", f"{a} + {b}"))):
        row = entry.get(role) if isinstance(entry.get(role), dict) else {}
        note = ""
        if number(row.get("a_present")) is not None and number(row.get("b_present")) is not None:
            note = f"its row: A {row['a_present']:.2f}, B {row['b_present']:.2f}"
            note += f", both {row.get('both_present')}/{row.get('images')}"
        for k, seed in enumerate(seeds):
            cards.append(
                _item(
                    id=f"{src}#{r * len(seeds) + k}",
                    title=title,
                    prompt=title,
                    label=title,
                    seed=seed if isinstance(seed, int | str) else "",
                    extra={"role": role},
                    brief=[],
                    note=note,
                    key=f"{src}#{r * len(seeds) + k}",
                    **places[r * len(seeds) + k],
                )
            )
    return cards


def grid_cards(folder: Path, report: dict[str, Any], src: str) -> list[dict[str, Any]]:
    """The cards of one of a probe's or a blend's grids (each image cut from it, with what the report
    says of it), or none for any other grid."""
    analysis = report.get("analysis")
    match = re.fullmatch(r"(grid|pair)_(\d+)\.png", src)
    if not match:
        return []
    if analysis == "probe" and match.group(1) == "grid":
        return _probe_cards(folder, report, src, int(match.group(2)))
    if analysis == "blend" and match.group(1) == "pair":
        return _blend_cards(folder, report, src, int(match.group(2)))
    return []


# --------------------------------------------------------------------------- a layer's channels


#: the sorts a layer report's cards add to the page's own: (field, label, 1 lowest first or -1 highest)
LAYER_SORTS = [
    ["activation", "activation (highest first)", -1],
    ["channel", "channel", 1],
    ["gray", "gray (highest first)", -1],
]


def is_layer_report(report: Any) -> bool:
    return isinstance(report, dict) and report.get("analysis") == "layer" and isinstance(report.get("channels"), list)


def layer_items(folder: Path) -> dict[str, Any]:
    """A layer report (``clipforge layer``) as one card per channel with its ``channel``,
    ``activation``, ``gray`` (and ``flat``, when the run said whether each image collapsed) as fields,
    its transparency map when one was saved, and above the cards report.md's opening and contact
    sheet (its table and per-channel sections are what the cards show)."""
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    entries = [e for e in report["channels"] if isinstance(e, dict)]
    items = []
    for entry in entries:
        channel = entry.get("channel")
        channel = channel if isinstance(channel, int) and not isinstance(channel, bool) else None
        src = inside(folder, entry.get("image"))
        extra: dict[str, Any] = {"channel": channel, "activation": number(entry.get("activation"))}
        extra["gray"] = number(entry.get("gray"))
        if isinstance(entry.get("flat"), bool):
            extra["flat"] = entry["flat"]
        seeds = [s for s in _list(entry.get("seeds")) if isinstance(s, dict)]
        per_seed = ", ".join(
            f"seed {s.get('seed')}: {s['activation']:.3f}" + (" (flat)" if s.get("flat") is True else "")
            for s in seeds
            if number(s.get("activation")) is not None
        )
        title = f"channel {channel}" if channel is not None else "channel ?"
        items.append(
            _item(
                id=f"channel-{channel}",
                src=src,
                title=title,
                prompt=title,
                label=title,
                status="done" if src else "missing",
                extra=extra,
                caption=per_seed if len(seeds) > 1 else "",
                attribution=inside(folder, entry.get("attribution")) or attribution_beside(folder, src),
                key=title,
                wide=len(seeds) > 1,
            )
        )
    view = report_items(folder)
    shown = {i["src"] for i in items if i["src"]}
    header, header_items = [], []
    for section in view["report"]:
        images = [b for b in section["blocks"] if b["type"] == "image"]
        if section["heading"] == "Channels" or (images and all(b["src"] in shown for b in images)):
            continue  # the table and the channels' own sections: the cards show them
        blocks = []
        for block in section["blocks"]:
            if block["type"] == "image":
                header_items.append({**view["items"][block["item"]], "id": block["src"]})
                block = {**block, "item": len(header_items) - 1}
            blocks.append(block)
        header.append({**section, "blocks": blocks})
    flat = [str(i["extra"]["channel"]) for i in items if i["extra"].get("flat") is True]
    notes = [f"layer {report.get('layer', '?')} of {report.get('model', '?')}: {len(items)} channel(s)"]
    if "flat" in (items[0]["extra"] if items else {}):
        notes.append("flat (collapsed): " + (", ".join(flat) if flat else "none"))
    groups = [f"layer {report.get('layer', '?')}"]
    return {
        "items": items,
        "groups": groups,
        "notes": notes,
        "header": header,
        "header_items": header_items,
        "sorts": LAYER_SORTS,
    }
