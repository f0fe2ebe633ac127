"""Reading a spec: a JSON file (or a dict), ``--set`` overrides, and validation by a pydantic model
with every problem named by its JSON path and file. One loader for run, analysis and sweep specs.

Imports nothing heavy: the CLI reads specs before torch is imported.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from clipforge.errors import SpecError, format_loc, json_type, problems_of

Model = TypeVar("Model", bound=BaseModel)


def read_spec_file(path: str | Path) -> Any:
    """A JSON file's value; a file that cannot be read or parsed is a :class:`SpecError` naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([("", "no such file")], str(path)) from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            [("", f"not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x}); save it as UTF-8")], str(path)
        ) from None
    except OSError as exc:
        raise SpecError([("", f"cannot read: {exc.strerror}")], str(path)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            [("", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")], str(path)
        ) from None
    return data


def read_object(source: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A spec's JSON object, from a file or given as a dict, and the file's name (None for a dict)."""
    if isinstance(source, dict):
        return source, None
    return _object(read_spec_file(source), str(source)), str(source)


def _object(data: Any, source: str | None) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SpecError([("", f"a spec must be a JSON object, not {json_type(data)}")], source)
    return data


def validate(model: type[Model], data: Any, source: str | None = None, context: dict[str, Any] | None = None) -> Model:
    """``data`` as a ``model``; every problem raised in one :class:`SpecError`, under ``source``."""
    try:
        return model.model_validate(_object(data, source), context=context)
    except ValidationError as exc:
        raise SpecError(problems_of(exc), source) from None


def load_model(model: type[Model], source: str | Path | dict[str, Any]) -> Model:
    """A spec from a JSON file (or a dict), its errors with their JSON paths and file."""
    data, name = read_object(source)
    return validate(model, data, name)


# --------------------------------------------------------------------------- --set KEY=VALUE

_SET_PATH = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def apply_overrides(
    data: dict[str, Any], overrides: list[str], defaults: type[BaseModel] | None = None
) -> dict[str, Any]:
    """Apply ``key.path[0].x=value`` overrides; values are JSON where they parse, else strings. A
    top-level key the data lacks starts from its default in ``defaults`` (the spec's model)."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        top = re.split(r"[.\[]", item.split("=", 1)[0], maxsplit=1)[0]
        if defaults is not None and top not in data and top in defaults.model_fields:
            data[top] = _jsonable(defaults.model_fields[top].get_default(call_default_factory=True))
        if "=" not in item:
            raise SpecError([("--set", f"expected KEY=VALUE, got {item!r}")])
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        _set(data, key, _key_parts(key), value)
    return data


def apply_overrides_within(
    data: dict[str, Any], block: str, overrides: list[str], defaults: type[BaseModel] | None = None
) -> dict[str, Any]:
    """:func:`apply_overrides` on the object ``data[block]`` (an analysis spec's ``run``): the keys
    are within it, and one it lacks starts from its default in ``defaults``. A block that is not an
    object is refused, naming it."""
    node = data.get(block, {})
    if not isinstance(node, dict):
        raise SpecError([(block, f"is {json_type(node)}, not an object, so --set cannot set a key in it")])
    return {**data, block: apply_overrides(node, overrides, defaults)}


def _key_parts(key: str) -> list[str | int]:
    parts: list[str | int] = []
    pos = 0
    for m in _SET_PATH.finditer(key):
        if m.start() != pos and key[pos : m.start()] != ".":
            raise SpecError([("--set", f"cannot parse key {key!r}")])
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if not parts or pos != len(key):
        raise SpecError([("--set", f"cannot parse key {key!r}")])
    return parts


def _set(data: dict[str, Any], key: str, parts: list[str | int], value: Any) -> None:
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = format_loc(parts[: i + 1])
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise SpecError([("--set " + key, f"{where} does not exist")])
            if last:
                node[part] = value
            else:
                node = node[part]
        else:
            if not isinstance(node, dict):
                raise SpecError([("--set " + key, f"{format_loc(parts[:i])} is not an object")])
            if last:
                node[part] = value
            else:
                if part not in node:
                    node[part] = {} if isinstance(parts[i + 1], str) else None
                if node[part] is None:
                    raise SpecError([("--set " + key, f"{where} is not set in the spec; set the whole list")])
                node = node[part]


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
