"""A spec checked against a registry: every component found and its options validated by the
component's own model, once, with every problem named by its JSON path; and nested references (an
option that names another component, as a screen names its judge) checked the same way."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from clipforge.components import COMPONENT_OPTION, Component
from clipforge.errors import PluginError, SpecError, UnknownComponentError, problems_of
from clipforge.spec import COMPONENT_FIELDS, ComponentRef, OptimizerSpec, Prompt, RunSpec, inside_the_output_folder


class Finder(Protocol):
    """What resolving needs of a registry: its entry of a kind and name."""

    def get(self, kind: str, name: str) -> ComponentEntry: ...


@dataclass(frozen=True)
class ComponentEntry:
    kind: str
    name: str
    cls: type[Component]
    plugin: str
    distribution: str | None = None
    version: str | None = None

    @property
    def provider(self) -> str:
        dist = f" ({self.distribution} {self.version})" if self.distribution else ""
        return f"plugin {self.plugin!r}{dist}"


class ComponentStartError(PluginError):
    """A component could not be built from its (valid) options: a file it names is missing or
    broken, a package it needs is not installed, ... The message names its place in the spec."""


@dataclass(frozen=True)
class ResolvedComponent:
    """A component found in the registry, its options validated by its own model: ready to build."""

    entry: ComponentEntry
    options: BaseModel

    def build(self, *args: Any, where: str = "") -> Any:
        """An instance: ``cls(options, *args)`` (a backbone takes the device, a parameterisation more).
        A failure is raised as :class:`ComponentStartError` naming ``where`` (its JSON path) and the
        plugin."""
        try:
            return self.entry.cls(self.options, *args)
        except (KeyboardInterrupt, ComponentStartError):
            raise
        except Exception as exc:
            place = f"{where}: " if where else ""
            raise ComponentStartError(
                f"{place}{self.entry.kind} {self.entry.name!r} from {self.entry.provider} could not start: {exc}"
            ) from exc

    def describe(self, where: str = "") -> str:
        """Its own label (an objective's ``describe``), refused as :class:`ComponentStartError` naming
        ``where`` and the plugin when it fails or is not a string."""
        place = f"{where}: " if where else ""
        try:
            text = self.entry.cls.describe(self.options)
        except (KeyboardInterrupt, ComponentStartError):
            raise
        except Exception as exc:
            raise ComponentStartError(
                f"{place}{self.entry.kind} {self.entry.name!r} from {self.entry.provider}: its describe() failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(text, str):
            raise ComponentStartError(
                f"{place}{self.entry.kind} {self.entry.name!r} from {self.entry.provider}: its describe() returned "
                f"{type(text).__name__}, not a string"
            )
        return text

    def ref(self) -> ComponentRef:
        """The reference with every option filled in (defaults included), as a resolved spec shows it."""
        return ComponentRef(name=self.entry.name, options=self.options.model_dump(mode="json"))


@dataclass(frozen=True)
class GoalPath:
    """Where a goal's objectives are in a run spec: a prompt's own (``prompt``: its index), or the
    spec's ``objectives`` (``prompt`` None). A resolved spec keys a prompt's own objectives by it;
    ``str()`` gives its JSON path (``prompts[3].objectives``)."""

    prompt: int | None = None

    def __str__(self) -> str:
        return "objectives" if self.prompt is None else f"prompts[{self.prompt}].objectives"

    def numbered(self, numbers: tuple[int, ...] | None) -> GoalPath:
        """The path where the user wrote the prompt (``numbers``: each prompt's index there)."""
        if self.prompt is None or numbers is None:
            return self
        return GoalPath(numbers[self.prompt])


#: the spec's own objectives' place (a key of ``ResolvedSpec.components`` as every component field's is)
SPEC_GOAL = GoalPath(None)


@dataclass(frozen=True)
class ResolvedSpec:
    """A run spec checked against a registry, made by :meth:`Registry.resolve`: every component was
    found and its options validated once. ``spec`` shows every option with its default filled in;
    ``components`` holds, per component field of the spec (and per :class:`GoalPath` of a prompt with
    objectives of its own), the components ready to build."""

    spec: RunSpec
    components: dict[str | GoalPath, list[ResolvedComponent]]
    where: str = ""  # its JSON path inside a larger spec (an analysis's), for errors
    prompt_numbers: tuple[int, ...] | None = None  # each prompt's index where the user wrote it (a sweep's)

    def path(self, field: str | GoalPath, index: int | None = None) -> str:
        """The JSON path of a component field (``backbones``) or a goal, and of its ``index``-th
        component, as the user wrote it (a sweep block's ``prompts[0]`` is the sweep's ``prompts[7]``)."""
        if isinstance(field, GoalPath):
            field = str(field.numbered(self.prompt_numbers))
        return _prefixed(self.where, field if index is None else f"{field}[{index}]")

    def goal(self, prompt_index: int) -> tuple[GoalPath, list[ResolvedComponent]]:
        """A prompt's objectives, resolved, and their place: its own, else the spec's."""
        return goal_components(self.components, prompt_index)

    def goal_at(self, path: GoalPath) -> list[ResolvedComponent]:
        """The objectives at ``path`` (:meth:`goal` gives it)."""
        return self.components[path if path.prompt is not None else "objectives"]


def _prefixed(where: str, path: str) -> str:
    if not where:
        return path
    return f"{where}{path}" if path.startswith("[") else f"{where}.{path}" if path else where


def resolve_component(
    registry: Finder, kind: str, ref: Any, where: str, base_dir: str | None = None
) -> ResolvedComponent:
    """Find one component and validate its options, and those of the components its options name;
    every problem is raised with its JSON path (``where``: the reference's own). ``base_dir``: the
    spec file's folder, for options that name files (``clipforge.existing_image``)."""
    try:
        ref = ComponentRef.model_validate(ref)
    except ValidationError as exc:
        raise SpecError(problems_of(exc, where)) from None
    try:
        entry = registry.get(kind, ref.name)
    except UnknownComponentError as exc:
        raise SpecError([(_prefixed(where, "name"), str(exc))]) from None
    try:
        options = entry.cls.Options.model_validate(ref.options, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise SpecError(
            [
                (p, f"{m} [{kind} {ref.name!r} from {entry.provider}]")
                for p, m in problems_of(exc, _prefixed(where, "options"))
            ]
        ) from None
    check_nested(registry, options, _prefixed(where, "options"))
    return ResolvedComponent(entry, options)


def check_nested(registry: Finder, options: BaseModel, where: str) -> None:
    """Resolve every option that names another component (its field's ``json_schema_extra`` says
    which kind), so that a nested reference is checked as the spec's own components are."""
    problems: list[tuple[str, str]] = []
    for name, info in type(options).model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        kind, value = extra.get(COMPONENT_OPTION), getattr(options, name)
        if kind is None or value is None:
            continue
        try:
            resolve_component(registry, str(kind), value, _prefixed(where, name))
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)


def resolve_spec(registry: Finder, spec: RunSpec, where: str, check_goals: bool = True) -> ResolvedSpec:
    """Resolve every component of ``spec`` (prompts' own objectives too); ``check_goals``: also check
    that each prompt and its goal fit (a sweep's grid point, whose prompts come later, does not)."""
    problems: list[tuple[str, str]] = []
    components: dict[str, list[ResolvedComponent]] = {}
    for field_name, kind in COMPONENT_FIELDS.items():
        value = getattr(spec, field_name)
        refs = value if isinstance(value, list) else [value]
        components[field_name] = []
        for i, ref in enumerate(refs):
            path = _prefixed(where, f"{field_name}[{i}]" if isinstance(value, list) else field_name)
            try:
                components[field_name].append(resolve_component(registry, kind, ref, path, spec._base_dir))
            except SpecError as exc:
                problems.extend(exc.problems)
    goals: dict[int, list[ResolvedComponent]] = {}
    try:
        goals = resolve_prompt_goals(registry, spec.prompts, where, spec._base_dir)
    except SpecError as exc:
        problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    update: dict[str, Any] = {}
    for field_name, resolved in components.items():
        refs = [c.ref() for c in resolved]
        update[field_name] = refs if isinstance(getattr(spec, field_name), list) else refs[0]
    optimizer = with_default_optimizer(spec.optimizer, components["parameterization"][0], where)
    if optimizer is not spec.optimizer:
        update["optimizer"] = optimizer
    check_output_names(components, where, spec)
    base = ResolvedSpec(spec.model_copy(update=update), components, where)
    return with_prompts(base, spec.prompts, goals, check=check_goals)


def output_names(options: BaseModel) -> list[tuple[str, str]]:
    """The files a component's options name for writing (its ``OutputName`` options), as (option, name)."""
    found = []
    for name, info in type(options).model_fields.items():
        if any(getattr(m, "func", None) is inside_the_output_folder for m in info.metadata):
            value = getattr(options, name)
            if isinstance(value, str):
                found.append((name, value))
    return found


def check_output_names(components: dict[str, list[ResolvedComponent]], where: str, spec: RunSpec) -> None:
    """Refuse two components that would write one file (a screen's report named ``metrics.jsonl``, two
    ``metrics`` on one file): each would overwrite or double the other's in silence. Names are compared
    as a case-insensitive file system would."""
    seen: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    for field_name, resolved in components.items():
        listed = isinstance(getattr(spec, field_name), list)
        for i, component in enumerate(resolved):
            for option, value in output_names(component.options):
                key = posixpath.normpath(value.replace("\\", "/")).lower()
                place = _prefixed(where, f"{field_name}[{i}]" if listed else field_name) + f".options.{option}"
                if key in seen:
                    problems.append(
                        (
                            place,
                            f"writes {value!r}, which {seen[key]} writes too: give each component's file its own name",
                        )
                    )
                else:
                    seen[key] = place
    if problems:
        raise SpecError(problems)


def with_default_optimizer(optimizer: OptimizerSpec, parameterization: ResolvedComponent, where: str) -> OptimizerSpec:
    """``optimizer`` with the fields the spec did not set (pydantic's ``model_fields_set``) taken
    from the parameterisation's ``default_optimizer``, validated as the spec's own would be; the
    merged fields count as set from then on, so the resolved spec, written as ``spec.json`` and read
    again, keeps them whatever the parameterisation's defaults become later."""
    cls = parameterization.entry.cls
    defaults = getattr(cls, "default_optimizer", {}) or {}
    unset = {k: v for k, v in defaults.items() if k not in optimizer.model_fields_set}
    if not unset:
        return optimizer
    given = {k: getattr(optimizer, k) for k in optimizer.model_fields_set}
    try:
        return OptimizerSpec.model_validate({**given, **unset})
    except ValidationError as exc:
        raise PluginError(
            f"{_prefixed(where, 'parameterization')}: {parameterization.entry.kind} {parameterization.entry.name!r} "
            f"from {parameterization.entry.provider} declares a default optimizer that is not valid "
            f"({'; '.join(f'{path}: {message}' for path, message in problems_of(exc, _prefixed(where, 'optimizer')))})"
        ) from None


def resolve_prompt_goals(
    registry: Finder, prompts: list[Prompt], where: str = "", base_dir: str | None = None
) -> dict[int, list[ResolvedComponent]]:
    """The prompts' own objectives, resolved, by the prompt's index (prompts without their own: absent)."""
    problems: list[tuple[str, str]] = []
    goals: dict[int, list[ResolvedComponent]] = {}
    for p, prompt in enumerate(prompts):
        if prompt.objectives is None:
            continue
        goals[p] = []
        for i, ref in enumerate(prompt.objectives):
            path = _prefixed(where, f"{GoalPath(p)}[{i}]")
            try:
                goals[p].append(resolve_component(registry, "objective", ref, path, base_dir))
            except SpecError as exc:
                problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    return goals


def with_prompts(
    resolved: ResolvedSpec,
    prompts: list[Prompt],
    goals: dict[int, list[ResolvedComponent]],
    update: dict[str, Any] | None = None,
    check: bool = True,
    numbers: list[int] | None = None,
) -> ResolvedSpec:
    """``resolved`` with other prompts (``goals``: their own objectives, resolved, by index) and other
    settings (``update``), each prompt checked against its goal (``check``); ``numbers``: each
    prompt's index where the user wrote it, for errors (a sweep block's prompts are some of the sweep's)."""
    components = {k: v for k, v in resolved.components.items() if not isinstance(k, GoalPath)}
    for p, goal in goals.items():
        components[GoalPath(p)] = goal
    given = prompts is not resolved.spec.prompts or "prompts" in resolved.spec.model_fields_set
    prompts = [
        prompt.model_copy(update={"objectives": [c.ref() for c in goals[p]]}) if p in goals else prompt
        for p, prompt in enumerate(prompts)
    ]
    spec = resolved.spec.model_copy(update={**(update or {}), "prompts": prompts})
    if check:
        check_goals(spec, components, resolved.where, given)
    return ResolvedSpec(spec, components, resolved.where, tuple(numbers) if numbers is not None else None)


def goal_components(
    components: dict[str | GoalPath, list[ResolvedComponent]], prompt_index: int
) -> tuple[GoalPath, list[ResolvedComponent]]:
    """A prompt's objectives, resolved, and their place: its own, else the spec's."""
    own = GoalPath(prompt_index)
    return (own, components[own]) if own in components else (SPEC_GOAL, components["objectives"])


def check_goals(
    spec: RunSpec, components: dict[str | GoalPath, list[ResolvedComponent]], where: str, prompts_given: bool = True
) -> None:
    """Every prompt's target is read by its goal, and every objective that reads a target has one
    (``prompts_given``: whether the spec gave its prompts, or has the default one)."""
    problems: list[tuple[str, str]] = []
    for p, prompt in enumerate(spec.prompts):
        path, goal = goal_components(components, p)
        readers = [i for i, c in enumerate(goal) if getattr(c.entry.cls, "uses_prompt", False)]
        if prompt.has_target and not readers:
            names = ", ".join(repr(c.entry.name) for c in goal)
            problems.append(
                (
                    _prefixed(where, f"prompts[{p}]"),
                    f"gives a text, image or terms, but no objective of its goal ({path}: {names}) reads them; "
                    "add the objective 'prompt', or drop the text",
                )
            )
        if readers and not prompt.has_target and not prompts_given:
            name = goal[readers[0]].entry.name
            problems.append(
                (
                    _prefixed(where, "prompts"),
                    f"is missing: the objective {name!r} ({path}[{readers[0]}]) needs prompts to aim at; give "
                    "'prompts', or 'objectives' that need none (a channel, a direction)",
                )
            )
        elif readers and not prompt.has_target:
            name = goal[readers[0]].entry.name
            problems.append(
                (
                    _prefixed(where, f"prompts[{p}]"),
                    f"has no text, image or terms, but its goal's objective {name!r} ({path}[{readers[0]}]) "
                    "needs one; give the prompt a text, or a goal of other objectives",
                )
            )
    if problems:
        raise SpecError(problems)
