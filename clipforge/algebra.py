"""Objectives as Python values with algebra: ``channel("layer3", 5) + 0.5 * diversity("layer3")``,
``-direction(...)``, ``prompt("a red circle")``, a function of the features, or Lucent's shorthand
``"layer3:5"``. A sum is a goal, and a goal is written as the spec writes one: a prompt's
``objectives`` (a list of weighted objectives, each with its ``weight`` option), with its text or
terms where ``prompt(...)`` terms are in it. So a goal written here and its JSON list give the same
run, and a goal without functions is written to ``spec.json`` as it would be by hand.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Lucent's shorthand for a channel: ``layer:channel``
SHORTHAND = re.compile(r"^(?P<layer>[^\s:]+):(?P<channel>\d+)$")


@dataclass(frozen=True)
class Term:
    """One weighted objective: a registered one by name with its options, a function of the
    features, or the similarity to a text (``prompt``)."""

    name: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0
    fn: Callable[..., Any] | None = None
    text: str | None = None  # for ``prompt(text)``: the text whose similarity it is

    def scaled(self, k: float) -> Term:
        return Term(self.name, self.options, self.weight * k, self.fn, self.text)

    def __repr__(self) -> str:
        what = self.text if self.text is not None else getattr(self.fn, "__name__", None) or self.name
        args = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        body = f"{self.name}({what!r})" if self.text is not None else f"{what}({args})"
        return body if self.weight == 1 else f"{self.weight:g}*{body}"


class Goal:
    """A weighted sum of objectives, the thing a prompt's images maximise."""

    def __init__(self, terms: list[Term]) -> None:
        self.terms = list(terms)

    def __add__(self, other: Any) -> Goal:
        return Goal(self.terms + as_goal(other).terms)

    def __radd__(self, other: Any) -> Goal:
        if isinstance(other, (int, float)) and other == 0:  # sum([...]) starts from 0
            return self
        return as_goal(other) + self

    def __sub__(self, other: Any) -> Goal:
        return self + (-as_goal(other))

    def __rsub__(self, other: Any) -> Goal:
        return as_goal(other) + (-self)

    def __neg__(self) -> Goal:
        return self * -1.0

    def __mul__(self, k: Any) -> Goal:
        if isinstance(k, bool) or not isinstance(k, (int, float)):
            raise TypeError(f"an objective can be multiplied by a number, not by {type(k).__name__}")
        return Goal([t.scaled(float(k)) for t in self.terms])

    __rmul__ = __mul__

    def __truediv__(self, k: Any) -> Goal:
        return self * (1.0 / k)

    def __repr__(self) -> str:
        return " + ".join(map(repr, self.terms)) or "Goal([])"


def as_goal(value: Any, where: str = "objective") -> Goal:
    """A goal from anything that stands for one: a goal, a ``"layer:channel"`` string, a function of
    the features, or a list of these (their sum)."""
    if isinstance(value, Goal):
        return value
    if isinstance(value, str):
        match = SHORTHAND.match(value.strip())
        if match is None:
            raise TypeError(
                f"{where}: {value!r} is not an objective: write 'layer:channel' (e.g. 'layer3:5'), or "
                f"clipforge.prompt({value!r}) for the similarity to a text"
            )
        return channel(match["layer"], int(match["channel"]))
    if isinstance(value, (list, tuple)):
        if not value:
            raise TypeError(f"{where}: an empty list is no objective")
        return sum((as_goal(v, f"{where}[{i}]") for i, v in enumerate(value)), Goal([]))
    if callable(value) and not isinstance(value, type):
        return Goal([Term(fn=value)])
    raise TypeError(
        f"{where}: a {type(value).__name__} is not an objective; expected clipforge.channel(...), prompt(...), "
        "direction(...), ..., a function of the features, a 'layer:channel' string, or a sum of these"
    )


def objective(name: Any, **options: Any) -> Goal:
    """Any registered objective by name, a plugin's too (``objective("activation_norm", layer="layer3")``),
    an ``Objective`` class with its options, or a function of the features (``0.5 * objective(fn)``:
    a plain function cannot be multiplied)."""
    weight = float(options.pop("weight", 1.0))
    if callable(name) and not isinstance(name, type):
        if options:
            raise TypeError(f"objective(): a function takes no options, only a weight (got {', '.join(options)})")
        return Goal([Term(fn=name, weight=weight)])
    return Goal([Term(name, options, weight)])


def _options(**options: Any) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


def prompt(text: str | None = None) -> Goal:
    """The similarity to ``text`` (the paper's objective); without a text, to the prompt's own."""
    if text is not None and not text.strip():
        raise ValueError("prompt(): the text is empty")
    return Goal([Term("prompt", text=text)])


def channel(layer: str, channel: int, backbone: int = 0) -> Goal:
    """The mean activation of one channel of a layer of the image tower."""
    return objective("channel", **_options(layer=layer, channel=channel, backbone=backbone or None))


def neuron(layer: str, channel: int, position: list[int] | None = None, backbone: int = 0) -> Goal:
    """One channel at one position ([y, x], or [token]; the centre by default)."""
    return objective("neuron", **_options(layer=layer, channel=channel, position=position, backbone=backbone or None))


def direction(
    vector: list[float] | None = None,
    layer: str | None = None,
    *,
    text: str | None = None,
    minus: str | None = None,
    backbone: int = 0,
) -> Goal:
    """The cosine with a direction in a layer (``vector`` of its channels) or in the embedding space
    (a ``vector``, or ``text`` minus ``minus``)."""
    if vector is not None and hasattr(vector, "tolist"):
        vector = vector.tolist()
    return objective(
        "direction",
        **_options(vector=vector, layer=layer, text=text, minus=minus, backbone=backbone or None),
    )


def diversity(layer: str | None = None, backbone: int = 0) -> Goal:
    """Lucent's diversity among the seeds of one prompt (Gram matrices of a layer); without a layer,
    the layer of the goal's first objective that names one (``channel("layer3", 5) + diversity()``)."""
    return objective("diversity", **_options(layer=layer, backbone=backbone or None))


def image(path: str) -> Goal:
    """The cosine similarity to an image file's embedding."""
    return objective("image", image=str(path))


def goal_prompt(value: Any, function_name: Callable[[Callable[..., Any]], str], where: str) -> dict[str, Any]:
    """A goal as one spec prompt: its ``objectives``, and its text or terms from its ``prompt(text)``
    terms. ``function_name`` names a function's component (made for it by the caller)."""
    terms = as_goal(value, where).terms
    if not terms:
        raise TypeError(f"{where}: the goal has no objective")
    texts = [t for t in terms if t.name == "prompt" and t.text is not None]
    if any(t.name == "prompt" and t.text is None for t in terms) and texts:
        raise TypeError(f"{where}: mixes prompt() without a text and prompt(text); give every prompt() its text")
    objectives: list[dict[str, Any]] = []
    entry: dict[str, Any] = {}
    if len(texts) == 1:
        entry["text"] = texts[0].text
        objectives.append(_ref("prompt", {}, texts[0].weight))
    elif texts:  # several texts: one prompt objective over weighted terms (its loss is their weighted sum)
        entry["terms"] = [{"text": t.text, "weight": t.weight} for t in texts]
        objectives.append(_ref("prompt", {}, 1.0))
    layers = [t.options["layer"] for t in terms if t.options.get("layer")]
    for t in terms:
        if t.name == "prompt" and t.text is not None:
            continue
        if t.name == "diversity" and "layer" not in t.options:
            if not layers:
                raise TypeError(f"{where}: diversity() without a layer takes its goal's, but no objective names one")
            t = Term(t.name, {**t.options, "layer": layers[0]}, t.weight)
        name = function_name(t.fn) if t.fn is not None else t.name
        objectives.append(_ref(name, t.options, t.weight))
    entry["objectives"] = objectives
    return entry


def _ref(name: str, options: dict[str, Any], weight: float) -> dict[str, Any]:
    options = dict(options)
    if weight != 1.0:
        options["weight"] = weight
    return {"name": name, "options": options} if options else {"name": name}


def spec_objectives(value: Any, function_name: Callable[[Callable[..., Any]], str], where: str) -> list[Any]:
    """A spec's own ``objectives`` (every prompt's goal that names none) from a goal: no texts there,
    since a prompt's text is its own."""
    entry = goal_prompt(value, function_name, where)
    if "text" in entry or "terms" in entry:
        raise TypeError(f"{where}: a text belongs to a prompt; here write prompt() without one")
    return entry["objectives"]
