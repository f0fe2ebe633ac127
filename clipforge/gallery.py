"""``clipforge gallery DIR``: one static page to look at a run, a sweep or an analysis report.

The page (``DIR/index.html``) works from the file system: no server, nothing from the internet, the
data inside the page (collected by :mod:`clipforge.gallery_items`). It shows every item by grid
point with its prompt, seed, setting, similarity and loss, a similarity and loss curve (a run's
``metrics.jsonl``) and every snapshot; failed items as failed, with their error; an analysis report's
text and tables beside its grids, at their own size. A filter takes free words and ``field:value``
terms (``seed:1``, ``prompt:red``, ``lr:0.1``, ``similarity:>0.5``), all of which must match; items
sort by similarity, loss, seed, prompt, status or judge verdict; two grid points go side by side; a
click enlarges an image with its details. The URL's hash holds the view (``#q=seed:1&sort=loss&
compare=0,1&open=ID``), so a link reopens it as it was.

A layer report (``clipforge layer``) is shown as its contact sheet on top and one card per channel
with ``channel``, ``activation`` and ``gray`` (and ``flat``, where the run said) as fields to sort by
and filter on (``channel:5``, ``activation:>5``); a probe's and a blend's grids are cut into cards,
each image with what the report says of it. An image with a transparency (attribution) map saved
beside it (``images/<slug>.attribution.png`` beside ``images/<slug>.png``) gets a toggle that shows it.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from clipforge.files import atomic_path
from clipforge.gallery_items import is_layer_report, layer_items, report_items, run_items, settings_text, sweep_items
from clipforge.runrecord import RUN_JSON
from clipforge.spec import SpecError

__all__ = [
    "PAGE",
    "fill_page",
    "gallery_data",
    "layer_items",
    "report_items",
    "run_items",
    "script_json",
    "settings_text",
    "shown_count",
    "sweep_items",
    "write_gallery",
]


def gallery_data(folder: Path) -> dict[str, Any]:
    """What the page shows, from whichever kind of folder ``folder`` is: all of it goes into the page,
    which has no server to ask for more."""
    if (folder / "sweep.json").exists():
        kind, view = "sweep", sweep_items(folder)
    elif (folder / RUN_JSON).exists():
        kind, view = "run", run_items(folder)
    elif (folder / "report.json").exists():
        layer = is_layer_report(json.loads((folder / "report.json").read_text(encoding="utf-8")))
        kind, view = "report", layer_items(folder) if layer else report_items(folder)
    else:
        raise SpecError(
            [("", "no run, sweep or analysis report here (no run.json, sweep.json or report.json)")], str(folder)
        )
    return {"kind": kind, "title": folder.resolve().name, "report": None, "header": None, "sorts": [], **view}


#: the page, with __TITLE__, __KIND__ and __DATA__ to fill in (a file beside this one: HTML, CSS and
#: JavaScript, no outside resources)
PAGE = Path(__file__).with_name("gallery.html")


def script_json(data: Any) -> str:
    """``data`` as JSON that is safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` written as
    ``\\u003c`` and so on (JSON reads them back as they were), so that nothing a prompt, a label or a
    folder name holds (``</script>``, ``<!--<script>``) can end the element early or change how the
    browser reads it. Non-ASCII characters are escaped too (the line separators U+2028 and U+2029
    among them, and a file name's undecodable bytes)."""
    text = json.dumps(data, allow_nan=False)
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
