"""Bugs planted by hand that earlier tests let through (issue: test gaps), and a sweep whose prompts
were reordered or replaced under finished items, which ran them again as new items and made
``--status`` count below zero."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from browser import CHROMIUM, console, probe
from helpers import tiny_sweep_base
from PIL import Image

from clipforge.cli import main
from clipforge.gallery import PAGE, gallery_data, write_gallery
from clipforge.gallery_items import inside
from clipforge.sweep import read_index

SWEEP = {"base": tiny_sweep_base(), "prompts": ["a red circle", "a blue square"], "seeds": 1, "batch_size": 1}


def sweep(tmp_path: Path, data: dict, *extra: str) -> int:
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(data))
    return main(["sweep", str(path), "--out", str(tmp_path / "out"), *extra])


def status(tmp_path: Path, capsys) -> str:
    capsys.readouterr()
    assert main(["sweep", str(tmp_path / "out"), "--status"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "prompts, index, old, new",
    [
        (["a blue square", "a red circle"], 0, "a red circle", "a blue square"),  # reordered
        (["a red circle", "a green cross"], 1, "a blue square", "a green cross"),  # replaced
        (["a green cross"], 0, "a red circle", "a green cross"),  # the first removed: the others move up
        ([{"text": "a red circle", "label": "red"}, "a blue square"], 0, "a red circle", None),  # relabelled
    ],
)
def test_prompts_reordered_or_replaced_under_finished_items_are_refused(tmp_path, capsys, prompts, index, old, new):
    assert sweep(tmp_path, SWEEP) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    files = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert sweep(tmp_path, {**SWEEP, "prompts": prompts}) == 2
    err = capsys.readouterr().err
    assert "the sweep changed in a way that alters finished items" in err, err
    assert f"prompts[{index}]" in err and json.dumps(old) in err, err
    assert json.dumps(new if new is not None else prompts[index]) in err, err
    assert "use another --out, or undo the change" in err and "new prompts" in err and "at the end" in err
    # nothing ran and nothing was relabelled: the folder is as it was
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files
    assert "2 done, 0 failed, 0 left of 2 items" in status(tmp_path, capsys)


def test_prompts_added_at_the_end_or_dropped_from_it_are_fine(tmp_path, capsys):
    assert sweep(tmp_path, SWEEP) == 0
    before = {k: v["finished"] for k, v in read_index(tmp_path / "out").items()}
    assert sweep(tmp_path, {**SWEEP, "prompts": [*SWEEP["prompts"], "a green cross"]}) == 0
    after = read_index(tmp_path / "out")
    assert len(after) == 3 and all(after[k]["finished"] == t for k, t in before.items())
    assert "3 done, 0 failed, 0 left of 3 items" in status(tmp_path, capsys)
    # the last prompt dropped again: its image stays, but is no item of this sweep
    assert sweep(tmp_path, SWEEP) == 0
    assert "2 done, 0 failed, 0 left of 2 items" in capsys.readouterr().out
    assert "2 done, 0 failed, 0 left of 2 items" in status(tmp_path, capsys)


def test_status_counts_only_the_items_of_the_sweep_in_the_folder(tmp_path, capsys):
    """A folder whose index holds records of items the sweep no longer has (a prompt dropped from
    the end, other seeds, or records left by a version that ran reordered prompts as new items): the
    counts are of the sweep's own items, and none is below zero."""
    assert sweep(tmp_path, SWEEP) == 0
    # records of replaced prompts and of other seeds, as an older version left them (by hand here)
    index = tmp_path / "out" / "index.jsonl"
    records = [json.loads(line) for line in index.read_text().splitlines()]
    stale = []
    for record in records[:2]:
        stale.append({**record, "id": record["id"].replace("-a-", "-an-old-"), "prompt": "an old prompt"})
        stale.append({**record, "id": record["id"].replace("-s0", "-s7"), "seed": 7, "status": "failed"})
    index.write_text("".join(json.dumps(r) + "\n" for r in [*stale, *records]))
    text = status(tmp_path, capsys)
    assert "2 done, 0 failed, 0 left of 2 items" in text, text
    assert not re.search(r"-\d+ (done|failed|left)", text)


def test_the_gallery_counts_only_the_sweeps_own_items(tmp_path, capsys):
    """The gallery's count of a sweep's items, like --status, leaves out the records of items the
    sweep no longer has (it counted 3 done of 2 items); their images are still shown."""
    assert sweep(tmp_path, {**SWEEP, "prompts": [*SWEEP["prompts"], "a green cross"]}) == 0
    assert sweep(tmp_path, SWEEP) == 0
    data = gallery_data(tmp_path / "out")
    assert data["notes"] == ["2 items: 2 done, 0 failed, 0 not run yet", "1 more of an earlier version of the sweep"]
    assert len(data["items"]) == 3


# --------------------------------------------------------------------------- paths out of the folder


def png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 40, 40)).save(path)


#: paths that name a file outside the folder (or none at all), each of which exists where it points
OUT = ["../outside.png", "items/../../outside.png", "items\\..\\..\\outside.png", "./../outside.png"]
#: paths with ``..`` that stay in the folder: refused all the same (the page names no path with ``..``)
ROUNDABOUT = ["items/../items/p000/ok.png"]


def _paths(value, key=""):
    """Every path the page would load: the values of ``src`` and ``attribution`` keys, anywhere."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _paths(v, key)
    elif key in ("src", "attribution") and isinstance(value, str):
        yield value


def _no_way_out(folder: Path) -> dict:
    data = gallery_data(folder)
    paths = list(_paths(data))
    assert paths, data  # the folder's own files are shown
    assert not [p for p in paths if ".." in p.replace("\\", "/").split("/") or p.startswith("/")], paths
    write_gallery(folder)  # and the page is written
    return data


def test_a_sweeps_paths_with_dotdot_are_refused(tmp_path):
    folder = tmp_path / "sweep"
    png(tmp_path / "outside.png")
    png(tmp_path / "outside.attribution.png")
    png(folder / "items/p000/ok.png")
    png(folder / "items/p000/ok_step_000001.png")
    (folder / "sweep.json").write_text(json.dumps({"spec": {}, "points": [{"settings": {}}], "items": 9}))
    records = [
        {"id": f"p000-{k:06d}-bad-s0", "point": 0, "prompt": "x", "seed": 0, "status": "done", "png": path}
        for k, path in enumerate([*OUT, *ROUNDABOUT, ".", "./", str(tmp_path / "outside.png")])
    ]
    snapshots = [*OUT, "items/p000/ok_step_000001.png"]
    records.append({**records[0], "id": "p000-000099-ok-s0", "png": "items/p000/ok.png", "snapshots": snapshots})
    (folder / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    data = _no_way_out(folder)
    assert {i["id"]: i["src"] for i in data["items"]} == {r["id"]: None for r in records[:-1]} | {
        "p000-000099-ok-s0": "items/p000/ok.png"
    }
    assert [s["src"] for s in data["items"][-1]["strip"]] == ["items/p000/ok_step_000001.png"]


def test_a_runs_paths_with_dotdot_are_refused(tmp_path):
    png(tmp_path / "outside.png")
    run = tmp_path / "run"
    png(run / "images/ok.png")
    rows = [{"slug": slug, "index": k, "seed": 0} for k, slug in enumerate(["../../outside", "ok", "../images/ok"])]
    (run / "run.json").write_text(json.dumps({"rows": rows, "status": "finished", "final": {}}))
    data = _no_way_out(run)
    assert [i["src"] for i in data["items"]] == [None, "images/ok.png", None]


def test_a_reports_paths_with_dotdot_are_refused(tmp_path):
    png(tmp_path / "outside.png")
    report = tmp_path / "report"
    png(report / "grid.png")
    (report / "report.json").write_text(json.dumps({"analysis": "compare"}))
    lines = [f"![out {k}]({path})" for k, path in enumerate(OUT[:2] + OUT[3:])]
    (report / "report.md").write_text("# grids\n\n![ok](grid.png)\n\n" + "\n\n".join(lines) + "\n")
    data = _no_way_out(report)
    assert [i["src"] for i in data["items"]] == ["grid.png"]
    texts = [b["text"] for b in data["report"][0]["blocks"] if b["type"] == "text"]
    assert texts == lines  # named as text, never loaded


def test_a_layer_reports_paths_with_dotdot_are_refused(tmp_path):
    png(tmp_path / "outside.png")
    layer = tmp_path / "layer"
    png(layer / "channels/channel_0000.png")
    channels = [{"channel": 0, "image": "channels/channel_0000.png", "attribution": "../outside.png"}]
    channels.append({"channel": 1, "image": "../outside.png", "attribution": "../outside.png"})
    (layer / "report.json").write_text(json.dumps({"analysis": "layer", "layer": "x", "channels": channels}))
    data = _no_way_out(layer)
    assert [(i["src"], i["attribution"]) for i in data["items"]] == [("channels/channel_0000.png", None), (None, None)]


@pytest.mark.parametrize("path", [*OUT, *ROUNDABOUT, ".", "./", "", "/etc/passwd", "C:\\x.png", "https://x/y.png"])
def test_inside_names_no_path_out_of_the_folder(tmp_path, path):
    png(tmp_path / "outside.png")
    png(tmp_path / "run/items/p000/ok.png")
    assert inside(tmp_path / "run", path) is None
    assert inside(tmp_path / "run", "items/p000/ok.png") == "items/p000/ok.png"


# --------------------------------------------------------------------------- a report's text and tables


HOSTILE_MD = """# Heading <i>h</i> `<b>c</b>`

Text <b>x</b> with <img src=x onerror="window.pwned=1"> and `<img src=y onerror="window.pwned=2">` end.

| <b>head</b> | `<i>code</i>` |
|---|---|
| <img src=z onerror="window.pwned=3"> | <script>window.pwned=4</script> |

![grid](grid.png)
"""


def hostile_report(folder: Path) -> Path:
    png(folder / "grid.png")
    (folder / "report.json").write_text(json.dumps({"analysis": "compare"}))
    (folder / "report.md").write_text(HOSTILE_MD)
    return write_gallery(folder)


def test_a_reports_page_puts_no_text_into_the_page_as_html(tmp_path):
    """Without a browser: the page's script writes no HTML from strings (``textContent``,
    ``createTextNode`` only), and the report's text reaches the page's data as it was written."""
    script = PAGE.read_text(encoding="utf-8").split("<script>", 1)[1]
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "createContextualFragment",
                 "DOMParser", "srcdoc", "setHTML", "parseHTMLUnsafe"):  # fmt: skip
        assert sink not in script, sink
    data = gallery_data(hostile_report(tmp_path / "report").parent)
    (section,) = data["report"]
    assert section["heading"] == "Heading <i>h</i> `<b>c</b>`"
    text, table = section["blocks"][:2]
    assert text["text"].startswith("Text <b>x</b> with <img src=x")
    assert table["header"] == ["<b>head</b>", "`<i>code</i>`"]


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (.ci/run installs Debian's)")
def test_a_reports_text_and_tables_show_as_text_in_a_real_browser(tmp_path):
    page = hostile_report(tmp_path / "report")
    script = """const s = document.querySelector("section.section"), t = s.querySelector(".text");
      return {heading: s.querySelector("h2").textContent, text: t.querySelector("p").textContent,
        cells: [...t.querySelectorAll("th, td")].map(c => c.textContent),
        tags: [...new Set([...document.querySelectorAll("section h2 *, section .text *")].map(e => e.tagName))].sort(),
        pwned: window.pwned || 0, shown: document.body.dataset.shown};"""
    found, dom, log = probe(page, script)
    assert found == {
        "heading": "Heading <i>h</i> `<b>c</b>`",
        "text": 'Text <b>x</b> with <img src=x onerror="window.pwned=1"> and <img src=y onerror="window.pwned=2"> end.',
        "cells": [
            "<b>head</b>",
            "<i>code</i>",
            '<img src=z onerror="window.pwned=3">',
            "<script>window.pwned=4</script>",
        ],
        "tags": ["CODE", "P", "TABLE", "TD", "TH", "TR"],
        "pwned": 0,
        "shown": "1",
    }, console(log)
