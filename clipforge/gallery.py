"""``clipforge gallery DIR``: one static page to look at a run, a sweep or an analysis report.

The page (``DIR/index.html``) works from the file system: no server, nothing from the internet, the
data inside the page. It shows thumbnails by grid point with prompt, seed, settings, similarity and
status; a text filter; two grid points side by side (the same prompts and seeds in one row); and,
for a run with per-image snapshots, the snapshots of one image as a strip. The URL's hash sets the
filter and the comparison (``index.html#q=red`` or ``#compare=0,1``), so a page can be opened as
it was shared.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from clipforge.outputs import atomic_path
from clipforge.spec import SpecError


def _settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in settings.items()) or "base"


def sweep_items(folder: Path) -> tuple[list[dict[str, Any]], list[str]]:
    from clipforge.sweep import read_index

    info = json.loads((folder / "sweep.json").read_text(encoding="utf-8"))
    points = [_settings_text(p["settings"]) for p in info["points"]]
    items = []
    for record in sorted(read_index(folder).values(), key=lambda r: r["id"]):
        if record.get("status") != "done":
            continue
        prompt = record["prompt"] if isinstance(record["prompt"], str) else record["prompt"].get("text", "")
        items.append(
            {
                "src": record["png"],
                "title": record.get("label") or prompt,
                "prompt": prompt,
                "seed": record["seed"],
                "group": record["point"],
                "similarity": record.get("similarity"),
                "key": f"{prompt}|{record['seed']}",
                "strip": [],
            }
        )
    return items, points


def run_items(folder: Path) -> tuple[list[dict[str, Any]], list[str]]:
    run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    final = (run.get("final") or {}).get("similarity") or []
    backbones = ", ".join(run.get("backbones", [])) or "run"
    items = []
    for row in run["rows"]:
        png = folder / "images" / f"{row['slug']}.png"
        if not png.exists():
            continue
        strip = sorted(
            p.relative_to(folder).as_posix() for p in (folder / "snapshots").glob(f"{row['slug']}_step_*.png")
        )
        items.append(
            {
                "src": png.relative_to(folder).as_posix(),
                "title": row["label"],
                "prompt": row["label"],
                "seed": row["seed"],
                "group": 0,
                "similarity": final[row["index"]] if row["index"] < len(final) else None,
                "key": f"{row['label']}|{row['seed']}",
                "strip": strip,
            }
        )
    return items, [f"{backbones} ({run.get('status', '?')}, {run.get('steps_done', '?')} steps)"]


def report_items(folder: Path) -> tuple[list[dict[str, Any]], list[str]]:
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    items = [
        {
            "src": p.name,
            "title": p.stem,
            "prompt": p.stem,
            "seed": "",
            "group": 0,
            "similarity": None,
            "key": p.stem,
            "strip": [],
        }
        for p in sorted(folder.glob("*.png"))
    ]
    return items, [f"{report.get('analysis', 'analysis')} report"]


def gallery_data(folder: Path) -> dict[str, Any]:
    """What the page shows, from whichever kind of folder ``folder`` is."""
    if (folder / "sweep.json").exists():
        kind, (items, groups) = "sweep", sweep_items(folder)
    elif (folder / "run.json").exists():
        kind, (items, groups) = "run", run_items(folder)
    elif (folder / "report.json").exists():
        kind, (items, groups) = "report", report_items(folder)
    else:
        raise SpecError(
            [("", "no run, sweep or analysis report here (no run.json, sweep.json or report.json)")], str(folder)
        )
    return {"kind": kind, "title": folder.resolve().name, "groups": groups, "items": items}


#: the page, with __TITLE__, __KIND__ and __DATA__ to fill in (a file beside this one: HTML, CSS and
#: JavaScript, no outside resources)
PAGE = Path(__file__).with_name("gallery.html")


def script_json(data: Any) -> str:
    """``data`` as JSON that is safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` written as
    ``\\u003c`` and so on (JSON reads them back as they were), so that nothing a prompt, a label or a
    folder name holds (``</script>``, ``<!--<script>``) can end the element early or change how the
    browser reads it. Non-ASCII characters are escaped too (the line separators U+2028 and U+2029
    among them, and a file name's undecodable bytes)."""
    text = json.dumps(data)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text


def fill_page(template: str, data: dict[str, Any]) -> str:
    """The page: every ``__TITLE__``, ``__KIND__`` and ``__DATA__`` of ``template`` filled in one pass,
    so that what one holds (a folder named ``x__DATA__``) is never filled in again."""
    values = {"TITLE": html.escape(data["title"]), "KIND": html.escape(data["kind"]), "DATA": script_json(data)}
    return re.sub(r"__(TITLE|KIND|DATA)__", lambda m: values[m.group(1)], template)


def write_gallery(folder: str | Path) -> Path:
    """Write ``index.html`` into a run, sweep or analysis report folder; return its path."""
    folder = Path(folder)
    page = fill_page(PAGE.read_text(encoding="utf-8"), gallery_data(folder))
    path = folder / "index.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def shown_count(dom: str) -> int:
    """How many images a page's DOM (as a headless browser dumps it) shows: for tests."""
    match = re.search(r'data-shown="(\d+)"', dom)
    return int(match.group(1)) if match else -1
