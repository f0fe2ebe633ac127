"""What a gallery shows of an analysis report folder: ``report.md`` as sections of text, tables and
grids (:func:`report_items`), each image of a probe's or a blend's grid as its own card
(:func:`grid_cards`), and a layer report's channels as cards (:func:`layer_items`).

They are apart from :mod:`clipforge.gallery_items` (a run's and a sweep's items, read from their
records and metrics) because a report is read another way: from the markdown and JSON an analysis
wrote. :mod:`clipforge.gallery_items` re-exports every name here, so imports from it work as before.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from clipforge.gallery_common import attribution_beside, gallery_item, grid_boxes, inside, number, scalar_verdicts

#: the report section of the grids report.md does not show
OTHER = "other images"


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
                gallery_item(
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
        layout = grid_boxes(folder / src, rows * columns, columns) if rows and columns else None
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
        verdicts = scalar_verdicts({"judge": image.get("value"), "analytic": analytic})
        extra: dict[str, Any] = {}
        for name, values in (("score", image.get("scores")), ("share", image.get("analytic_share"))):
            for value, x in (values if isinstance(values, dict) else {}).items():
                if number(x) is not None:
                    extra[f"{name}.{value}"] = round(float(x), 4)
        seed = image.get("seed", "")
        cards.append(
            gallery_item(
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
                gallery_item(
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
            gallery_item(
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
