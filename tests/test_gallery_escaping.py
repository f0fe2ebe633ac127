"""The gallery page with hostile names (issue 23): a folder named with ``__DATA__`` or HTML, prompts
and labels holding ``<!--<script>`` or ``</script>``: the page shows them as text, and its data is
read back whole."""

from __future__ import annotations

import json
import re

import pytest
from browser import CHROMIUM, Tags, browse, console, probe
from helpers import tiny_spec_dict

import clipforge
from clipforge.gallery import PAGE, gallery_data, shown_count, write_gallery

PROMPTS = [
    "<!--<script>",
    {"text": "a red circle", "label": "</script><img src=x onerror=alert(1)>"},
    "a & b __TITLE__ __DATA__ \u2028 end",
]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile") / "run <b>__DATA__<i> __KIND__"
    clipforge.invert(tiny_spec_dict(steps=1, callbacks=[], prompts=PROMPTS, seeds=[0]), folder)
    return write_gallery(folder)


def test_hostile_names_stay_text_and_the_data_reads_back_whole(page):
    text = page.read_text(encoding="utf-8")
    data = gallery_data(page.parent)
    # the data element holds no "<" at all (nothing can end it or open a comment in it) and is the data
    (content,) = re.findall(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    assert "<" not in content and ">" not in content
    assert json.loads(content) == data and [i["title"] for i in data["items"]][0] == "<!--<script>"
    # the folder's name is text in the title and the heading: no tag, no second copy of the data
    assert text.count("&lt;b&gt;__DATA__&lt;i&gt; __KIND__") == 2
    assert text.count('id="data"') == 1
    template, parsed = Tags(), Tags()
    template.feed(PAGE.read_text(encoding="utf-8"))
    parsed.feed(text)
    assert parsed.tags == template.tags  # the page's own elements, and no other
    assert len(parsed.scripts) == 2 and json.loads(parsed.scripts[0]) == data


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (.ci/run installs Debian's)")
def test_hostile_names_in_a_real_browser(page):
    dom, log = browse(page)
    assert shown_count(dom) == 3, log[-2000:]
    assert "&lt;!--&lt;script&gt;" in dom  # the prompt, as text in its caption
    assert '<img src="x"' not in dom  # the label made no element (a real one would be serialised so)
    assert "Uncaught" not in log


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (.ci/run installs Debian's)")
def test_hostile_names_enlarged_and_filtered_stay_text(page):
    """The enlarged view and a field filter show the hostile prompts as text too (issue 24)."""
    slug = gallery_data(page.parent)["items"][0]["id"]
    script = """return {prompt: document.querySelector("#bigview td").textContent,
      open: document.getElementById("big").open, tags: document.querySelectorAll("#bigview script, #bigview b").length,
      shown: document.body.dataset.shown};"""
    found, dom, log = probe(page, script, f"#open={slug}&q=prompt:script")
    assert found == {"prompt": "<!--<script>", "open": True, "tags": 0, "shown": "1"}, log[-2000:]
    assert not console(log) and '<img src="x"' not in dom
