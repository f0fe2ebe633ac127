"""The gallery tests' page helpers: the gallery page in a real (headless) browser when one is
installed (``.ci/run`` installs Debian's Chromium), a script run in the page with its answer read
back, the page's console messages, and the page's tags and scripts as an HTML parser reads them."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def browse(page: Path, fragment: str = "", screenshot: Path | None = None) -> tuple[str, str]:
    """The DOM after the page's script ran, and the browser's log (console messages included)."""
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        "--allow-file-access-from-files",
        "--window-size=1400,1000",
    ]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    done = subprocess.run([*args, page.as_uri() + fragment], capture_output=True, text=True, timeout=120)
    return done.stdout, done.stderr


def probe(page: Path, script: str, fragment: str = "") -> tuple[Any, str, str]:
    """Run ``script`` (a function body that returns what it found) in the page once it has loaded,
    after the page's own script; its answer (as JSON), the DOM and the browser's log. The page is
    copied beside itself with the script added, so that it reads the same files."""
    wrapped = (
        "<script>addEventListener('load', () => { let found; try { found = (() => {"
        + script
        + "})(); } catch (e) { found = {error: String(e)}; }"
        + " document.body.setAttribute('data-probe', JSON.stringify(found)); });</script>"
    )
    copy = page.with_name("probe.html")
    copy.write_text(page.read_text(encoding="utf-8").replace("</body></html>", wrapped + "</body></html>"))
    try:
        dom, log = browse(copy, fragment)
    finally:
        copy.unlink()
    match = re.search(r'data-probe="([^"]*)"', dom)
    assert match, log[-3000:]
    return json.loads(html.unescape(match.group(1))), dom, log


def console(log: str) -> list[str]:
    """The page's console messages (a script error among them) in a browser's log."""
    return [line for line in log.splitlines() if "CONSOLE" in line]


class Tags(HTMLParser):
    """The tags of a page, in order, and the text of each of its scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.scripts: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "script":
            self.in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        self.in_script = self.in_script and tag != "script"

    def handle_data(self, data):
        if self.in_script:
            self.scripts[-1] += data
