"""``clipforge gallery``: the page works from the file system, in a real (headless) browser when one
is installed (``.ci/run`` installs Debian's Chromium): it loads without a console error, shows one
image per item, the filter narrows them, two grid points go side by side, and a screenshot is taken.
The browser helpers (``browse``, ``probe``) are in ``browser.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from browser import CHROMIUM, browse
from helpers import SWEEP, tiny_spec_dict, write

import clipforge
from clipforge.cli import main
from clipforge.gallery import gallery_data, shown_count, write_gallery


@pytest.fixture(scope="module")
def sweep_folder(tmp_path_factory) -> Path:
    from clipforge.sweep import load_sweep, run_sweep

    tmp = tmp_path_factory.mktemp("gallery")
    run_sweep(load_sweep(write(tmp, SWEEP)), tmp / "sweep", show_progress=False)
    write_gallery(tmp / "sweep")
    return tmp / "sweep"


def test_the_page_holds_every_item_and_nothing_from_outside(sweep_folder):
    data = gallery_data(sweep_folder)
    assert data["kind"] == "sweep" and len(data["items"]) == 12 and len(data["groups"]) == 2
    page = (sweep_folder / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # works offline, from the file system
    assert all((sweep_folder / item["src"]).exists() for item in data["items"])


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (.ci/run installs Debian's)")
def test_the_page_in_a_real_browser(sweep_folder, tmp_path):
    page = sweep_folder / "index.html"
    dom, log = browse(page)
    assert shown_count(dom) == 12 and dom.count('<figure class="item"') == 12
    console = [line for line in log.splitlines() if "CONSOLE" in line]
    assert not console, console  # no script error, no warning
    dom, _ = browse(page, "#q=red")
    assert shown_count(dom) == 4  # "a red circle" x 2 seeds x 2 grid points
    dom, _ = browse(page, "#q=red%20seed%201")
    assert shown_count(dom) == 2
    dom, _ = browse(page, "#q=prompt:red%20seed:1")
    assert shown_count(dom) == 2
    dom, _ = browse(page, "#compare=0,1")
    assert shown_count(dom) == 12 and dom.count('class="pair"') == 6  # a row per prompt and seed
    shot = tmp_path / "gallery.png"
    browse(page, screenshot=shot)
    assert shot.stat().st_size > 10_000


def test_a_run_folder_shows_its_snapshot_strips(tmp_path, capsys):
    spec = tiny_spec_dict(steps=4, callbacks=[{"name": "snapshots", "options": {"every": 2, "per_image": True}}])
    clipforge.invert(spec, tmp_path / "run")
    assert main(["gallery", str(tmp_path / "run")]) == 0
    data = gallery_data(tmp_path / "run")
    assert data["kind"] == "run" and len(data["items"]) == 4
    assert [len(item["strip"]) for item in data["items"]] == [2, 2, 2, 2]
    assert all(item["curve"] is None for item in data["items"])  # no metrics callback, no curves
    assert "index.html" in capsys.readouterr().out


def test_a_report_folder_and_a_folder_that_is_neither(tmp_path, capsys):
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.json").write_text(json.dumps({"analysis": "probe"}))
    (tmp_path / "report" / "grid_00.png").write_bytes(b"")
    assert gallery_data(tmp_path / "report")["groups"] == ["probe report"]
    assert main(["gallery", str(tmp_path)]) == 2
    assert "no run, sweep or analysis report here" in capsys.readouterr().err
