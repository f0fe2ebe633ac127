"""The gallery worth opening (issue 24, point 4), each point in a real (headless) browser: strips show
every snapshot at their size, a sweep's snapshots come from its index, analysis reports show their
tables and captions beside grids at their own size, filter terms match fields, the view is written to
the URL and read back, failed items show as failed, a click enlarges an image with its details,
items sort, and a run's curves come from ``metrics.jsonl``. The hand-made sweep folder is named with
``__DATA__`` and HTML, and one of its prompts holds ``<!--<script>`` (issue 23's hostile names)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from browser import CHROMIUM, Tags, browse, console, probe
from helpers import tiny_spec_dict
from PIL import Image

import clipforge
from clipforge.gallery import PAGE, gallery_data, shown_count, write_gallery
from clipforge.gallery_items import CURVE_POINTS, run_curves

browser = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (.ci/run installs Debian's)")
REPORTS = Path(__file__).resolve().parents[1] / "examples" / "toyworld" / "reports"
ZOO_REPORTS = Path(__file__).resolve().parents[1] / "zoo" / "examples" / "reports"  # the comparisons' and screens'
PROMPTS = ["a red circle", {"text": "a blue square", "label": "blue"}, "<!--<script> a & b"]
SEEDS = range(12)
POINTS = [{"optimizer.lr": 0.1}, {"optimizer.lr": 0.05}]
ERROR = "RuntimeError: out of memory </script><b>x</b>"


def similarity(point: int, prompt: int, seed: int) -> float:
    return round(0.5 - 0.03 * seed + 0.1 * prompt + 0.01 * point, 4)


def loss(seed: int) -> float:
    return 1 + (seed * 7 % 12) / 100  # another order than similarity's


def png(path: Path, colour: tuple[int, int, int], size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A sweep folder as the sweep writes it, by hand: 2 grid points x 3 prompts x 12 seeds, two items
    failed, four not run yet, judge verdicts on every done item, and snapshots (the index's
    ``snapshots`` key) for the first prompt of the first point."""
    folder = tmp_path_factory.mktemp("views") / "sweep <i>__DATA__<b> __TITLE__"
    folder.mkdir()
    info = {"spec": {}, "points": [{"settings": s, "run": {}} for s in POINTS], "items": 2 * 3 * 12 + 4, "blocks": 1}
    (folder / "sweep.json").write_text(json.dumps(info))
    lines = []
    for p in range(len(POINTS)):
        for k, prompt in enumerate(PROMPTS):
            for seed in SEEDS:
                item = f"p{p:03d}-{k:06d}-s{seed}"
                record = {"id": item, "point": p, "settings": POINTS[p], "prompt": prompt, "seed": seed}
                if p == 1 and k == 1 and seed < 2:
                    lines.append({**record, "status": "failed", "error": ERROR})
                    continue
                png(folder / f"items/p{p:03d}/{item}.png", (40 * k, 20 * seed, 120 * p))
                record |= {"status": "done", "png": f"items/p{p:03d}/{item}.png", "label": None}
                record |= {"similarity": similarity(p, k, seed), "loss": loss(seed)}
                record |= {"verdicts": {"judge": "right" if seed % 3 == 0 else "wrong"}}
                if p == 0 and k == 0:
                    record["snapshots"] = [f"items/p000/snapshots/{item}_step_{s:06d}.png" for s in (10, 20, 30)]
                    for step, path in zip((10, 20, 30), record["snapshots"], strict=True):
                        png(folder / path, (step * 8, 0, 0))
                record["label"] = prompt if isinstance(prompt, str) else prompt["label"]
                lines.append(record)
    text = "\n".join(json.dumps(r) for r in lines) + '\n{"id": "torn'
    (folder / "index.jsonl").write_text(text)
    write_gallery(folder)
    return folder / "index.html"


def ids_in_order(dom: str) -> list[str]:
    return re.findall(r'<figure class="item[^"]*" data-id="([^"]+)"', dom)


# --------------------------------------------------------------------------- what is collected


def test_a_sweep_is_collected_with_its_failures_verdicts_and_snapshots(sweep):
    data = gallery_data(sweep.parent)
    assert len(data["items"]) == 72 and data["groups"] == ["optimizer.lr=0.1", "optimizer.lr=0.05"]
    assert data["notes"] == ["76 items: 70 done, 2 failed, 4 not run yet"]
    failed = [i for i in data["items"] if i["status"] == "failed"]
    assert len(failed) == 2 and all(i["src"] is None and i["error"] == ERROR for i in failed)
    strips = {i["id"]: [s["step"] for s in i["strip"]] for i in data["items"] if i["strip"]}
    assert len(strips) == 12 and set(map(tuple, strips.values())) == {(10, 20, 30)}
    first = data["items"][0]
    assert first["verdicts"] == {"judge": "right"} and first["spec"] == "sweep.json, points[0].run"
    # the hostile folder name and prompt, the error's </script>: the page's own elements and no other
    text = sweep.read_text(encoding="utf-8")
    (content,) = re.findall(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    assert "<" not in content and json.loads(content) == data
    template, parsed = Tags(), Tags()
    template.feed(PAGE.read_text(encoding="utf-8"))
    parsed.feed(text)
    assert parsed.tags == template.tags and text.count("&lt;i&gt;__DATA__&lt;b&gt; __TITLE__") == 2


def test_curves_are_read_from_metrics_and_thinned(tmp_path):
    lines = [{"step": s, "similarity": [s / 1000, -s / 1000], "loss": [1 - s / 1000, 1.0]} for s in range(1, 1001)]
    text = "\n".join(json.dumps(r) for r in lines)
    (tmp_path / "metrics.jsonl").write_text(text + '\n{"step": 1001, "simil')  # a torn last line
    first, second = run_curves(tmp_path / "metrics.jsonl", 2)
    assert len(first["step"]) <= CURVE_POINTS + 1 and first["step"][0] == 1 and first["step"][-1] == 1000
    assert first["similarity"][-1] == 1.0 and second["similarity"][-1] == -1.0 and second["loss"][0] == 1.0
    assert run_curves(tmp_path / "none.jsonl", 2) == [None, None]


# --------------------------------------------------------------------------- in the browser


@browser
def test_field_terms_match_fields_and_free_words_match_text(sweep):
    dom, log = browse(sweep)
    assert shown_count(dom) == 72 and not console(log)
    for query, shown in [
        ("seed:1", 6),  # seed 1 of 3 prompts at 2 points; not 10 or 11
        ("circle", 24),  # free words match text
        ("prompt:red seed:1", 2),
        ("lr:0.05 prompt:red", 12),
        ("optimizer.lr:0.1", 36),
        ("prompt:red similarity:>0.4", 8),  # seeds 0 to 3 at both points
        ("status:failed", 2),
        ("judge:right point:0", 12),
        ('label:"blue" seed:0', 2),  # at both points; the failed one's label is its prompt's
        ("prompt:re", 0),  # a field's whole words, never part of one
    ]:
        dom, _ = browse(sweep, "#q=" + query.replace(" ", "%20").replace('"', "%22"))
        assert shown_count(dom) == shown, query


@browser
def test_the_view_is_written_to_the_url_and_a_link_reopens_it(sweep):
    script = """
      const q = document.getElementById("q"); q.value = "prompt:red seed:1"; q.dispatchEvent(new Event("input"));
      const sort = document.getElementById("sort"); sort.value = "loss"; sort.dispatchEvent(new Event("change"));
      document.getElementById("both").click();
      document.querySelector("figure.item:not([hidden]) img.main").click();
      return location.hash;"""
    found, _, log = probe(sweep, script)
    assert found == "#q=prompt%3Ared+seed%3A1&sort=loss&compare=0%2C1&open=p000-000000-s1", log[-2000:]
    dom, log = browse(sweep, found)
    assert not console(log)
    assert shown_count(dom) == 2 and dom.count('class="pair">') == 1  # the same filter and comparison
    visible = "return [...document.querySelectorAll('.pair, figure.item')].filter(e => e.offsetHeight).length;"
    assert probe(sweep, visible, found)[0] == 3  # the hidden ones take no room: one row of two
    assert '<dialog id="big" open=""' in dom
    script = 'return ["q", "sort", "a", "b"].map(id => document.getElementById(id).value).concat([big.open]);'
    found, _, _ = probe(sweep, script, found)
    assert found == ["prompt:red seed:1", "loss", "0", "1", True]


@browser
def test_failed_items_are_shown_as_failed_with_their_error(sweep):
    dom, _ = browse(sweep, "#q=status:failed")
    failed = re.findall(r'<figure class="item failed" data-id="[^"]+" data-status="failed">(.*?)</figure>', dom, re.S)
    assert len(failed) == 2 and all("<img" not in f for f in failed)
    assert all("RuntimeError: out of memory &lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in f for f in failed)
    assert "76 items: 70 done, 2 failed, 4 not run yet" in dom


@browser
def test_a_click_enlarges_an_image_with_its_details(sweep):
    script = """
      document.querySelector('figure.item[data-id="p001-000002-s4"] img.main').click();
      const big = document.getElementById("bigview");
      return {open: document.getElementById("big").open, hash: location.hash,
        rows: [...big.querySelectorAll("tr")].map(r => [r.cells[0].textContent, r.cells[1].textContent]),
        image: big.querySelector("img.bigimg").getBoundingClientRect().width,
        tags: big.querySelectorAll("script").length};"""
    found, _, log = probe(sweep, script)
    assert found["open"] and found["hash"] == "#open=p001-000002-s4", log[-2000:]
    rows = dict(found["rows"])
    assert rows["prompt"] == "<!--<script> a & b" and found["tags"] == 0  # text, not markup
    assert rows["seed"] == "4" and rows["setting"] == "optimizer.lr=0.05" and rows["judge: judge"] == "wrong"
    assert rows["similarity"] == f"{similarity(1, 2, 4):.4f}" and rows["loss"] == f"{loss(4):.4f}"
    assert rows["spec"] == f"{sweep.parent / 'sweep.json'}, points[1].run"  # where it is on this disk
    assert rows["image"] == str(sweep.parent / "items/p001/p001-000002-s4.png") and found["image"] > 300


@browser
def test_items_sort_by_similarity_loss_seed_prompt_and_verdict(sweep):
    data = [i for i in gallery_data(sweep.parent)["items"] if i["group"] == 0]
    expected = {
        "similarity": sorted(data, key=lambda i: -i["similarity"]),
        "loss": sorted(data, key=lambda i: i["loss"]),
        "seed": sorted(data, key=lambda i: i["seed"]),
        "verdict": sorted(data, key=lambda i: i["verdicts"]["judge"]),
        "prompt": sorted(data, key=lambda i: i["prompt"]),
    }
    for sort, items in expected.items():
        dom, _ = browse(sweep, "#sort=" + sort)
        assert ids_in_order(dom)[:36] == [i["id"] for i in items], sort


@browser
def test_a_sweep_shows_the_snapshots_its_index_names(sweep):
    script = """
      return [...document.querySelectorAll("figure.item")].filter(f => f.querySelector(".strip")).map(f => {
        const card = f.getBoundingClientRect();
        return [f.dataset.id, [...f.querySelectorAll(".snap")].map(s => { const r = s.getBoundingClientRect();
          return [s.title, r.width, r.height, r.left >= card.left && r.right <= card.right]; })]; });"""
    found, _, _ = probe(sweep, script)
    assert [f[0] for f in found] == [f"p000-000000-s{s}" for s in SEEDS]
    assert all(snaps == [[f"step {s}", 48, 48, True] for s in (10, 20, 30)] for _, snaps in found)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two real runs with 4 snapshots each: one saving each image's own, one only the grids."""
    tmp = tmp_path_factory.mktemp("runs")
    pages = {}
    for name, per_image in [("own", True), ("grids", False)]:
        snapshots = {"name": "snapshots", "options": {"every": 1, "per_image": per_image}}
        clipforge.invert(tiny_spec_dict(steps=4, seeds=[0, 1, 2], callbacks=["metrics", snapshots]), tmp / name)
        pages[name] = write_gallery(tmp / name)
    return pages


@browser
@pytest.mark.parametrize("name", ["own", "grids"])
def test_strips_show_every_snapshot_and_curves_are_drawn(runs, name):
    """Each snapshot 48 px and inside its card (today's page made them 150 px, one at a time), and
    a cut from a grid shows its own image only; two curves of 4 steps per item."""
    script = """
      return [...document.querySelectorAll("figure.item")].map(f => {
        const card = f.getBoundingClientRect();
        return {snaps: [...f.querySelectorAll(".snap")].map(s => { const r = s.getBoundingClientRect(),
            i = s.querySelector("img").getBoundingClientRect();
          return [r.width, r.height, r.left >= card.left && r.right <= card.right, i.width >= 48]; }),
          lines: [...f.querySelectorAll("svg.curve polyline")].map(p => [p.getAttribute("class"),
            p.getAttribute("points").split(" ").length])}; });"""
    found, _, log = probe(runs[name], script)
    assert len(found) == 6 and not console(log)
    for item in found:
        assert item["snaps"] == [[48, 48, True, True]] * 4
        assert item["lines"] == [["similarity", 4], ["loss", 4]]
    data = gallery_data(runs[name].parent)
    if name == "grids":  # the place of image k in each step's grid (2 prompts x 3 seeds: 3 columns)
        boxes = [item["strip"][-1]["box"] for item in data["items"]]
        assert boxes[:4] == [[2, 2, 32, 32], [36, 2, 32, 32], [70, 2, 32, 32], [2, 36, 32, 32]]
    else:
        assert all("box" not in s for item in data["items"] for s in item["strip"])


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("reports")
    for folder in (REPORTS / "probe_ball", REPORTS / "blend", ZOO_REPORTS / "compare_training_followup"):
        name = folder.name
        shutil.copytree(folder, tmp / name, ignore=shutil.ignore_patterns("index.html"))
        write_gallery(tmp / name)
    (tmp / "bare").mkdir()
    (tmp / "bare" / "report.json").write_text(json.dumps({"analysis": "probe", "attribute": "colour", "seeds": 30}))
    shutil.copy(REPORTS / "probe_ball" / "grid_00.png", tmp / "bare" / "grid_00.png")
    write_gallery(tmp / "bare")
    return tmp


SECTIONS = """
  const texts = (s, css) => [...s.querySelectorAll(css)].map(c => c.textContent);
  return [...document.querySelectorAll("section.section")].map(s => ({heading: s.querySelector("h2").textContent,
    cells: texts(s, "td"), text: texts(s, "p"), grids: [...s.querySelectorAll("figure.gridimg img")].map(i =>
      [i.getAttribute("src"), i.getBoundingClientRect().width, i.getBoundingClientRect().height, i.naturalWidth,
       i.naturalHeight])}));"""


@browser
def test_a_report_shows_its_tables_and_captions_beside_its_grids_at_their_size(reports):
    found, dom, log = probe(reports / "probe_ball" / "index.html", SECTIONS)
    assert not console(log) and shown_count(dom) == 2
    assert [s["heading"] for s in found] == [
        "Attribute probe: colour",
        "a ball on a gray background",
        "a marble on a gray background",
    ]
    assert "0.97 [0.83, 0.99]" in found[0]["cells"] and "0.83 [0.78, 0.88]" in found[0]["cells"]
    assert found[1]["text"][0].startswith("Judged: red, red") and found[2]["text"][0].startswith("Judged: blue")
    assert found[1]["grids"] == [["grid_00.png", 1982, 68, 1982, 68]]  # its own size, not a 150 px square
    found, _, _ = probe(reports / "blend" / "index.html", SECTIONS)
    pair = found[1]
    assert pair["heading"] == "a red circle + a blue square" and "10/10" in pair["cells"]
    assert "Rows: A alone, B alone, blend." in pair["text"] and pair["grids"] == [["pair_00.png", 662, 200, 662, 200]]
    found, _, _ = probe(reports / "compare_training_followup" / "index.html", SECTIONS)
    assert found[0]["grids"][0][1:] == [7394, 134, 7394, 134]  # wider than the window: it scrolls
    visible = (
        "return [...document.querySelectorAll('section')].filter(s => s.offsetHeight).map(s => s.dataset.section);"
    )
    found, dom, _ = probe(reports / "probe_ball" / "index.html", visible, "#q=marble")
    assert shown_count(dom) == 1 and found == ["0", "2"]  # its tables name the marble, and its grid


@browser
def test_a_report_without_report_md_shows_its_numbers(reports):
    found, _, _ = probe(reports / "bare" / "index.html", SECTIONS)
    assert found[0]["heading"] == "probe report" and found[0]["cells"][:2] == ["analysis", '"probe"']
    assert found[1]["grids"][0][0] == "grid_00.png"


@browser
def test_a_report_grid_enlarges_on_click(reports):
    script = """document.querySelector("figure.gridimg img").click();
      return [document.getElementById("big").open, location.hash, document.querySelector("#bigview h2").textContent];"""
    found, _, _ = probe(reports / "probe_ball" / "index.html", script)
    assert found == [True, "#open=grid_00.png", "a ball on a gray background"]


@browser
def test_a_withheld_image_is_shown_as_withheld_without_its_snapshots(runs, tmp_path):
    """An image a screen withheld has no file: the page says so, and cuts nothing from the grids that
    still hold its earlier steps."""
    folder = tmp_path / "withheld"
    shutil.copytree(runs["grids"].parent, folder, ignore=shutil.ignore_patterns("index.html"))
    run = json.loads((folder / "run.json").read_text())
    slug = run["rows"][1]["slug"]
    (folder / "images" / f"{slug}.png").unlink()
    (folder / "run.json").write_text(json.dumps({**run, "withheld": [slug]}))
    item = gallery_data(folder)["items"][1]
    assert item["status"] == "withheld" and item["src"] is None and item["strip"] == []
    dom, log = browse(write_gallery(folder), "#q=status:withheld")
    assert shown_count(dom) == 1 and f'data-id="{slug}" data-status="withheld"><div class="noimg">withheld' in dom
    assert not console(log)
