"""An analysis from Python: :func:`analyse` runs one (``clipforge probe``, ``layer``, ... by name) and
returns its :class:`Report`, which shows its text, tables and grids inline in Jupyter. Without an
output folder nothing stays on disk: the report is written to a temporary folder, read back into
memory and the folder removed."""

from __future__ import annotations

import base64
import html
import re
import tempfile
from pathlib import Path
from typing import Any

from clipforge.analysis import plan_analysis, run_analysis
from clipforge.registry import Registry, default_registry
from clipforge.specfile import load_model

IMAGE_LINK = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


class Report(dict):
    """An analysis's report (the dict ``report.json`` holds), with its ``markdown`` (``report.md``)
    and the images it refers to (``images``: file name -> PNG bytes); ``out_dir`` where it was saved."""

    def __init__(self, report: dict[str, Any], markdown: str, images: dict[str, bytes], out_dir: Path | None):
        super().__init__(report)
        self.markdown, self.images, self.out_dir = markdown, images, out_dir

    @classmethod
    def read(cls, report: dict[str, Any], folder: Path, keep: bool) -> Report:
        """The report written in ``folder``, its images read into memory."""
        md = (folder / "report.md").read_text(encoding="utf-8") if (folder / "report.md").is_file() else ""
        images = {}
        for _, name in IMAGE_LINK.findall(md):
            path = (folder / name).resolve()
            if folder.resolve() in path.parents and path.is_file():
                images[name] = path.read_bytes()
        return cls(report, md, images, folder if keep else None)

    def _repr_html_(self) -> str:
        return markdown_html(self.markdown, self.images)


def analyse(
    name: str,
    spec: dict[str, Any] | str | Path,
    out: str | Path | None = None,
    *,
    registry: Registry | None = None,
    progress: bool = True,
) -> Report:
    """Run the analysis ``name`` (``"probe"``, ``"layer"``, a plugin's) on ``spec`` (a dict or a JSON
    file, as its command takes); with ``out``, its folder is written as the command writes it."""
    registry = registry or default_registry()
    entry = registry.get("analysis", name)
    plan = plan_analysis(entry.cls(load_model(entry.cls.Options, spec)), registry)
    if out is not None:
        report = run_analysis(plan, out, registry, show_progress=progress)
        return Report.read(report, Path(out), keep=True)
    with tempfile.TemporaryDirectory(prefix="clipforge-report-") as tmp:
        folder = Path(tmp) / "report"
        report = run_analysis(plan, folder, registry, show_progress=progress)
        return Report.read(report, folder, keep=False)


def markdown_html(text: str, images: dict[str, bytes]) -> str:
    """The little markdown a report uses (headings, paragraphs, lists, pipe tables, image links) as
    HTML, every piece of text escaped, images inline."""

    def inline(line: str) -> str:
        out, last = [], 0
        for match in IMAGE_LINK.finditer(line):
            out.append(html.escape(line[last : match.start()]))
            data = images.get(match[2])
            if data is not None:
                source = base64.b64encode(data).decode("ascii")
                out.append(f"<img alt='{html.escape(match[1])}' src='data:image/png;base64,{source}'>")
            else:
                out.append(html.escape(match[0]))
            last = match.end()
        out.append(html.escape(line[last:]))
        return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", "".join(out))

    parts: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(set(c) <= set("-: ") for c in cells):
                    rows.append(cells)
                i += 1
            head, *body = rows
            table = "<tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>"
            table += "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in body)
            parts.append(f"<table>{table}</table>")
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            level = len(heading[1])
            parts.append(f"<h{level}>{inline(heading[2])}</h{level}>")
        elif line.startswith(("- ", "* ")):
            parts.append(f"<li>{inline(line[2:])}</li>")
        elif line.strip():
            parts.append(f"<p>{inline(line)}</p>")
        i += 1
    return "<div class='clipforge-report'>" + "\n".join(parts) + "</div>"
