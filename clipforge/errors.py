"""What is wrong with a spec, said so that a person can find it: every problem with its JSON path,
under the file it came from, printable on any terminal.

Imports nothing heavy: the CLI reports errors before torch is imported.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import ValidationError


class SpecError(Exception):
    """A spec is invalid. ``problems`` holds (JSON path, message) pairs, one per problem; ``source``
    names the file (or flag) they are in."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = problems
        self.source = source
        super().__init__(self.format())

    def format(self) -> str:
        """One line per problem. A message is shown whole (its advice usually comes last); only one
        that quotes a huge value is cut, in its middle, so that its beginning and its end remain."""
        where = f"{printable(self.source, PATH_LIMIT, keep_end=PATH_LIMIT // 2)}: " if self.source else ""
        lines = []
        for path, msg in self.problems:
            shown = printable(msg, MESSAGE_LIMIT, keep_end=MESSAGE_LIMIT // 2)
            lines.append(
                f"{where}{printable(path, PATH_LIMIT, keep_end=PATH_LIMIT // 2)}: {shown}"
                if path
                else f"{where}{shown}"
            )
        return "\n".join(lines)

    def within(self, source: str | None = None, prefix: str = "", join: str = ".") -> SpecError:
        """The same problems re-homed: under the file ``source`` (when given), and with their paths
        under ``prefix`` (``run`` + ``steps`` = ``run.steps``; with ``join=": "`` a phrase such as
        ``grid point steps=5: steps``)."""
        problems = [(_under(prefix, path, join), msg) for path, msg in self.problems] if prefix else self.problems
        return SpecError(problems, self.source if source is None else source)


def _under(prefix: str, path: str, join: str) -> str:
    if not path:
        return prefix
    return f"{prefix}{path}" if join == "." and path.startswith("[") else f"{prefix}{join}{path}"


def problems_of(error: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """pydantic's errors as (JSON path, message) pairs, in words a spec's author reads."""
    problems = []
    for e in error.errors():
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] not in ("missing", "value_error") and "input" in e and not isinstance(e["input"], (dict, list)):
            msg = f"{msg} (got {printable(repr(e['input']), VALUE_LIMIT)})"  # a megabyte string: its start
        problems.append((format_loc(e["loc"], prefix), msg))
    return problems


def format_loc(loc: tuple[Any, ...] | list[Any], prefix: str = "") -> str:
    """A pydantic location as a JSON path: ``("prompts", 0, "text")`` is ``prompts[0].text``."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    names = {
        type(None): "null",
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }
    return names.get(type(value), type(value).__name__)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

#: how much of a problem's message, of its JSON path (or file), and of a value quoted in a message
#: :class:`SpecError` shows: whole messages, however wordy; only a huge quoted value is cut
MESSAGE_LIMIT, PATH_LIMIT, VALUE_LIMIT = 2000, 600, 200


def printable(text: Any, limit: int = 300, keep_end: int = 0) -> str:
    """``text`` safe to print on a terminal: control characters (a spec key can hold escape
    sequences) shown as ``\\x1b``, and cut to ``limit`` characters with a note of how much was cut.
    With ``keep_end``, the cut is made in the middle and the last ``keep_end`` characters stay (a
    message's advice, after a huge value it quotes)."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
    if len(text) > limit:
        keep_end = min(max(keep_end, 0), limit)
        cut = len(text) - limit
        if keep_end:
            text = f"{text[: limit - keep_end]}... ({cut} characters cut) ...{text[-keep_end:]}"
        else:
            text = f"{text[:limit]}... ({cut} more characters)"
    return text


class PluginError(Exception):
    """A plugin or component is broken or misconfigured."""


class UnknownComponentError(PluginError):
    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        available = ", ".join(sorted(known)) or "none installed"
        if name.startswith(("object:", "callable:")):  # a spec.json written by a run made from Python
            hint += (
                "; this name stands for a Python object of a run made from Python: run it from Python with the object"
            )
        super().__init__(f"unknown {kind} {name!r}{hint} (available: {available})")
