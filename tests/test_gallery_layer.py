"""A layer report you can browse (issue 32, point 5), in a real (headless) browser: one card per
channel with ``channel``, ``activation`` and ``gray`` as fields, sortable and filterable with the
gallery's filter terms, thumbnails of at least 128 px with crisp pixels, the contact sheet first, and
a channel's transparency (attribution) map behind a toggle when one was saved beside its image (no
toggle when none was). A probe's and a blend's grids are cut into cards too, each image with what the
report says of it. The layer report is a real one: ``toyworld-rn``'s ``layer2``, four channels, three
steps at 32 px; the run's ``flat`` flags and attribution maps (another part of issue 32 adds them to
the engine) are given to it here by a wrapped engine, so that the report is seen recording them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from browser import CHROMIUM, browse, console, probe
from PIL import Image

import clipforge
import clipforge.analysis
from clipforge.analysis import run_analysis
from clipforge.gallery import gallery_data, shown_count, write_gallery
from clipforge.gallery_items import inside, layer_items
from clipforge_plugins.analysis_layer import LayerAnalysis, LayerSpec, attribution_maps, flat_flags

browser = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (.ci/run installs Debian's)")
REPORTS = Path(__file__).resolve().parents[1] / "examples" / "toyworld" / "reports"
CHANNELS = [0, 1, 2, 3]
LAYER = {
    "layer": "layer2",
    "channels": CHANNELS,
    "batch": 2,  # two runs: channels 0 and 1, then 2 and 3
    "run": {
        "backbones": [{"name": "open_clip", "options": {"model": "toyworld-rn"}}],
        "steps": 3,
        "copies": 1,
        "resolution": [{"step": 0, "size": 32}],
        "device": "cpu",
    },
}


@pytest.fixture(scope="module")
def layer(tmp_path_factory) -> Path:
    """The layer report: the first run's images come with attribution maps, and each run says its
    second image collapsed (channels 1 and 3 flat)."""
    engine = clipforge.analysis.Engine
    runs = []

    class Wrapped(engine):
        def run(self):
            result = super().run()
            result.flat = [row.index == 1 for row in result.rows]
            if not runs:
                result.attribution = (result.images.mean(dim=1) - 0.5).abs()  # (N, H, W), as a run keeps them
            runs.append(result)
            return result

    out = tmp_path_factory.mktemp("layer") / "report"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(clipforge.analysis, "Engine", Wrapped)
        run_analysis(LayerAnalysis(LayerSpec.model_validate(LAYER)), out, show_progress=False)
    assert len(runs) == 2
    # a transparency map saved beside channel 3's image after the fact (as a run's images/<slug>.png has
    # its images/<slug>.attribution.png beside it); channel 2 has none
    Image.new("RGB", (36, 36), (255, 255, 0)).save(out / "channels" / "channel_0003.attribution.png")
    write_gallery(out)
    return out


def report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def test_the_report_records_each_channels_image_activation_gray_flat_and_transparency_map(layer):
    entries = report(layer)["channels"]
    assert [e["channel"] for e in entries] == CHANNELS
    assert [e["image"] for e in entries] == [f"channels/channel_{c:04d}.png" for c in CHANNELS]
    assert all(isinstance(e["activation"], float) and isinstance(e["gray"], float) for e in entries)
    assert [e["flat"] for e in entries] == [False, True, False, True]
    assert [s["flat"] for e in entries for s in e["seeds"]] == [False, True, False, True]
    assert [e.get("attribution") for e in entries] == [
        "channels/channel_0000.attribution.png",
        "channels/channel_0001.attribution.png",
        None,
        None,
    ]
    for e in entries[:2]:
        with Image.open(layer / e["attribution"]) as image:
            assert image.size == (36, 36)  # laid out as the channel's image (one seed, 2 px apart)
    md = (layer / "report.md").read_text()
    assert "Flat (collapsed) images: channel(s) 1, 3." in md and "; flat (collapsed)" in md


def test_what_the_run_says_is_read_only_when_it_fits():
    class Result:
        images = torch.zeros(2, 3, 8, 8)

    result = Result()
    assert flat_flags(result) is None and attribution_maps(result) is None
    result.flat, result.attribution = [True], torch.ones(3, 8, 8)  # not one per image
    assert flat_flags(result) is None and attribution_maps(result) is None
    result.flat, result.attribution = [0, 1], torch.tensor([-2.0, 1.0]).view(2, 1, 1).expand(2, 8, 8)
    assert flat_flags(result) == [False, True]
    maps = attribution_maps(result)
    assert maps.shape == (2, 3, 8, 8) and maps.max() == 1 and maps.min() == 1  # |map|, each scaled to its peak


def test_the_gallery_collects_a_card_per_channel_and_the_contact_sheet_above(layer):
    data = gallery_data(layer)
    entries = report(layer)["channels"]
    assert data["kind"] == "report" and data["report"] is None
    assert [i["id"] for i in data["items"]] == [f"channel-{c}" for c in CHANNELS]
    for item, e in zip(data["items"], entries, strict=True):
        assert item["extra"] == {
            "channel": e["channel"],
            "activation": e["activation"],
            "gray": e["gray"],
            "flat": e["flat"],
        }
        assert item["src"] == e["image"]
    assert [i["attribution"] for i in data["items"]] == [
        "channels/channel_0000.attribution.png",
        "channels/channel_0001.attribution.png",
        None,
        "channels/channel_0003.attribution.png",
    ]
    header_images = [b["src"] for s in data["header"] for b in s["blocks"] if b["type"] == "image"]
    assert header_images == ["sheet.png"]  # the table and the per-channel sections are the cards now
    assert [s["heading"] for s in data["header"]][1] == "Contact sheet"


def test_paths_outside_the_folder_are_refused(layer, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(layer, folder)
    data = report(folder)
    data["channels"][0]["image"] = "../report/channels/channel_0000.png"
    data["channels"][0]["attribution"] = "../report/channels/channel_0000.attribution.png"
    data["channels"][1]["attribution"] = "/etc/passwd"
    data["channels"][2]["image"] = "channels/../channels/channel_0002.png"
    (folder / "report.json").write_text(json.dumps(data))
    items = layer_items(folder)["items"]
    assert items[0]["src"] is None and items[0]["status"] == "missing" and items[0]["attribution"] is None
    assert items[1]["attribution"] == "channels/channel_0001.attribution.png"  # beside its image, not /etc
    assert items[2]["src"] is None and inside(folder, "channels/channel_0003.png")


CARDS = """
  const cards = [...document.querySelectorAll("#main figure.item")].filter(f => !f.hidden);
  const first = document.querySelector("#main img");
  return {
    ids: cards.map(f => f.dataset.id),
    captions: cards.map(f => f.querySelector("figcaption").textContent),
    thumbs: cards.map(f => { const i = f.querySelector("img.main"), r = i.getBoundingClientRect();
      return [r.width, r.height, getComputedStyle(i).imageRendering]; }),
    toggles: cards.filter(f => f.querySelector("button.attrbtn")).map(f => f.dataset.id),
    first: first.getAttribute("src"),
    sheetAbove: cards.length > 0 && first.getBoundingClientRect().bottom <= cards[0].getBoundingClientRect().top,
    shown: document.body.dataset.shown, count: document.getElementById("count").textContent,
    sorts: [...document.getElementById("sort").options].map(o => o.value),
  };"""


@browser
def test_a_card_per_channel_with_its_fields_big_crisp_thumbnails_and_the_contact_sheet_first(layer):
    found, dom, log = probe(layer / "index.html", CARDS)
    assert not console(log), console(log)
    entries = report(layer)["channels"]
    assert found["ids"] == [f"channel-{c}" for c in CHANNELS] and shown_count(dom) == 4
    for caption, e in zip(found["captions"], entries, strict=True):
        assert caption.startswith(f"channel {e['channel']}")
        assert f"activation {e['activation']:.3f}" in caption and f"gray {e['gray']:.3f}" in caption
        assert ("flat" in caption.split("activation")[0]) == e["flat"]
    assert all(w >= 128 and h >= 128 and rendering == "pixelated" for w, h, rendering in found["thumbs"])
    assert found["first"] == "sheet.png" and found["sheetAbove"]  # the contact sheet on top
    assert {"activation", "channel", "gray"} <= set(found["sorts"])
    assert found["count"] == "4 of 4 channels"


@browser
def test_cards_sort_by_activation_channel_and_gray(layer):
    entries = report(layer)["channels"]
    for sort, key in [
        ("activation", lambda e: -e["activation"]),
        ("gray", lambda e: -e["gray"]),
        ("channel", lambda e: e["channel"]),
    ]:
        found, _, _ = probe(layer / "index.html", CARDS, "#sort=" + sort)
        assert found["ids"] == [f"channel-{e['channel']}" for e in sorted(entries, key=key)], sort
    # the sort menu writes the view to the URL
    script = """const s = document.getElementById("sort"); s.value = "activation"; s.dispatchEvent(new Event("change"));
      return location.hash;"""
    assert probe(layer / "index.html", script)[0] == "#sort=activation"


@browser
def test_cards_filter_by_channel_activation_and_flat(layer):
    entries = report(layer)["channels"]
    middle = sorted(e["activation"] for e in entries)[1]  # two or three above it
    for query, expected in [
        ("channel:2", [2]),
        (f"activation:>{middle}", [e["channel"] for e in entries if e["activation"] > middle]),
        (f"activation:<={middle}", [e["channel"] for e in entries if e["activation"] <= middle]),
        ("flat:true", [1, 3]),
        ("channel:2 flat:true", []),
    ]:
        found, dom, _ = probe(layer / "index.html", CARDS, "#q=" + query.replace(" ", "%20"))
        assert found["ids"] == [f"channel-{c}" for c in expected], query
        assert shown_count(dom) == len(expected)
    assert 0 < len([e for e in entries if e["activation"] > middle]) < 4


@browser
def test_the_transparency_map_is_a_toggle_where_one_was_saved_and_absent_where_not(layer):
    script = """
      const card = id => document.querySelector(`figure.item[data-id="${id}"]`);
      const map = id => card(id).querySelector("img.attr");
      const seen = id => map(id).getBoundingClientRect().width;
      const before = seen("channel-3");
      card("channel-3").querySelector("button.attrbtn").click();
      const after = seen("channel-3"), main = card("channel-3").querySelector("img.main").getBoundingClientRect();
      card("channel-3").querySelector("button.attrbtn").click();
      return {toggles: [...document.querySelectorAll("figure.item")].filter(f => f.querySelector("button.attrbtn"))
          .map(f => f.dataset.id), maps: document.querySelectorAll("img.attr").length, before, after,
        over: main.width, src: map("channel-3").getAttribute("src"), again: seen("channel-3"),
        pressed: card("channel-3").querySelector("button.attrbtn").getAttribute("aria-pressed"),
        loaded: map("channel-3").naturalWidth};"""
    found, _, log = probe(layer / "index.html", script)
    assert found["toggles"] == ["channel-0", "channel-1", "channel-3"] and found["maps"] == 3, log[-2000:]
    assert found["before"] == 0 and found["after"] == found["over"] >= 128 and found["again"] == 0
    assert found["src"] == "channels/channel_0003.attribution.png" and found["loaded"] == 36
    assert found["pressed"] == "false"
    # enlarged: the image and its map, with the card's fields
    script = """document.querySelector('figure.item[data-id="channel-3"] img.main').click();
      const v = document.getElementById("bigview");
      return {maps: [...v.querySelectorAll("img.attrbig")].map(i => i.getAttribute("src")),
        rows: Object.fromEntries([...v.querySelectorAll("tr")].map(r => [r.cells[0].textContent,
          r.cells[1].textContent]))};"""
    found, _, _ = probe(layer / "index.html", script)
    assert found["maps"] == ["channels/channel_0003.attribution.png"]
    assert found["rows"]["channel"] == "3" and found["rows"]["flat"] == "true"
    script = """document.querySelector('figure.item[data-id="channel-2"] img.main').click();
      return document.querySelectorAll("#bigview img.attrbig").length;"""
    assert probe(layer / "index.html", script)[0] == 0


@browser
def test_a_runs_image_with_a_transparency_map_beside_it_gets_the_toggle_and_a_flat_one_says_so(tmp_path):
    folder = tmp_path / "run"
    spec = {"prompts": ["a red circle", "a blue square"], "seeds": [0], "steps": 1, "copies": 1, "callbacks": []}
    spec |= {"backbones": [{"name": "open_clip", "options": {"model": "toyworld-rn"}}]}
    spec |= {"resolution": [{"step": 0, "size": 32}], "device": "cpu"}
    clipforge.invert(spec, folder)
    slug = json.loads((folder / "run.json").read_text())["rows"][1]["slug"]
    Image.new("L", (32, 32), 200).save(folder / "images" / f"{slug}.attribution.png")
    run = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**run, "flat": [slug]}))  # as the run says of a collapse
    script = """return [...document.querySelectorAll("figure.item")].map(f => [f.dataset.id,
      f.querySelectorAll("button.attrbtn").length, f.querySelectorAll("figcaption .flat").length]);"""
    found, dom, log = probe(write_gallery(folder), script, "#q=flat:true")
    assert [n for _, n, _ in found] == [0, 1] and found[1][0] == slug and not console(log)
    assert [f for _, _, f in found] == [0, 1] and shown_count(dom) == 1


@pytest.fixture(scope="module")
def grids(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("grids")
    for name in ("probe_ball", "blend"):
        shutil.copytree(REPORTS / name, tmp / name, ignore=shutil.ignore_patterns("index.html"))
        write_gallery(tmp / name)
    return tmp


GRID_CARDS = """
  return [...document.querySelectorAll("section.section")].filter(s => !s.hidden).map(s => ({
    heading: s.querySelector("h2").textContent,
    cards: [...s.querySelectorAll(".cards figure.item")].filter(f => !f.hidden).map(f => {
      const cut = f.querySelector(".cut").getBoundingClientRect(), card = f.getBoundingClientRect();
      return [f.dataset.id, f.querySelector("figcaption").textContent, cut.width, cut.height,
        cut.left >= card.left && cut.right <= card.right]; }),
    wrapped: (c => c ? c.scrollWidth <= c.clientWidth : null)(s.querySelector(".cards")),
  }));"""


@browser
def test_a_probes_grids_are_cut_into_cards_with_each_images_verdicts(grids):
    images = report(grids / "probe_ball")["images"]
    found, dom, log = probe(grids / "probe_ball" / "index.html", GRID_CARDS)
    assert not console(log) and shown_count(dom) == 2  # the grids themselves stay, above their cards
    assert [len(s["cards"]) for s in found] == [0, 30, 30] and found[1]["wrapped"]  # rows, no sideways scroll
    cards = found[1]["cards"] + found[2]["cards"]
    for (_, caption, width, height, inside_card), image in zip(cards, images, strict=True):
        assert caption.startswith(f"{image['prompt']} / seed {image['seed']}")
        analytic = image["analytic_colour"] or "none of these"  # none of the values' colours found
        assert f"judge: {image['value']}" in caption and f"analytic: {analytic}" in caption
        assert width == height == 128 and inside_card  # twice the grid's 64 px
    blue = [f"grid_{i // 30:02d}.png#{i % 30}" for i, image in enumerate(images) if image["value"] == "blue"]
    found, dom, _ = probe(grids / "probe_ball" / "index.html", GRID_CARDS, "#q=judge:blue")
    assert [c[0] for s in found for c in s["cards"]] == blue
    found, _, _ = probe(grids / "probe_ball" / "index.html", GRID_CARDS, "#q=marble%20seed:3")
    assert [c[0] for s in found for c in s["cards"]] == ["grid_01.png#3"]
    # a card enlarged shows its cell, not the whole grid, and its scores
    script = """document.querySelector('figure.item[data-id="grid_01.png#3"] img.main').click();
      const v = document.getElementById("bigview");
      return [v.querySelector(".cut").getBoundingClientRect().width, location.hash,
        [...v.querySelectorAll("th")].map(t => t.textContent)];"""
    found, _, _ = probe(grids / "probe_ball" / "index.html", script)
    assert found[0] == 384 and found[1] == "#open=grid_01.png%233" and "score.red" in found[2]


@browser
def test_a_blends_grids_are_cut_into_cards_by_row_and_seed(grids):
    data = report(grids / "blend")
    found, _, log = probe(grids / "blend" / "index.html", GRID_CARDS)
    assert not console(log)
    pairs = [s for s in found if s["cards"]]
    assert [s["heading"] for s in pairs] == [" + ".join(p["concepts"]) for p in data["pairs"]]
    for section, pair in zip(pairs, data["pairs"], strict=True):
        a, b = pair["concepts"]
        titles = [c[1].split(" / seed")[0] for c in section["cards"]]
        assert titles == [a] * 10 + [b] * 10 + [f"{a} + {b}"] * 10 and section["wrapped"]
        blend = pair["blend"]
        assert f"its row: A {blend['a_present']:.2f}, B {blend['b_present']:.2f}" in section["cards"][-1][1]
    found, _, _ = probe(grids / "blend" / "index.html", GRID_CARDS, "#q=role:blend%20seed:0")
    assert [c[0] for s in found for c in s["cards"]] == ["pair_00.png#20", "pair_01.png#20"]


@browser
def test_a_real_layer_reports_screenshot(layer, tmp_path):
    shot = tmp_path / "layer.png"
    browse(layer / "index.html", screenshot=shot)
    assert shot.stat().st_size > 10_000


@browser
def test_a_layer_reports_text_stays_text(layer, tmp_path):
    """report.md's text and report.json's values are inserted as text, never as HTML (issue 23)."""
    folder = tmp_path / "hostile <b>__DATA__"
    shutil.copytree(layer, folder, ignore=shutil.ignore_patterns("index.html"))
    md = (folder / "report.md").read_text()
    (folder / "report.md").write_text(md.replace("## Contact sheet", "## Contact <img src=x onerror=alert(1)> sheet"))
    data = report(folder)
    data["model"] = "</script><img src=y>"
    data["channels"][0]["seeds"].append({"seed": "<i>s</i>", "activation": 1.0})
    (folder / "report.json").write_text(json.dumps(data))
    script = """return {headings: [...document.querySelectorAll("section h2")].map(h => h.textContent),
      notes: document.getElementById("notes").textContent,
      injected: document.querySelectorAll("img[src=x], img[src=y], i").length,
      cards: document.querySelectorAll("figure.item").length};"""
    found, _, log = probe(write_gallery(folder), script)
    assert found["headings"][1] == "Contact <img src=x onerror=alert(1)> sheet" and found["injected"] == 0, log[-2000:]
    assert "</script><img src=y>" in found["notes"] and found["cards"] == 4 and not console(log)
