"""The optimisation loop: one place where an inversion happens.

A run optimises a batch of independent images (prompts x seeds) in every step. Each image has its
own ``torch.Generator`` (seeded with its seed), its own loss term, its own gradient clipping, and
Adam is element-wise, so an image comes out the same whether it is optimised alone or in a batch
(up to floating-point summation order). What one step does is :mod:`clipforge.step`'s.

A run opens its folder (:class:`clipforge.outputs.RunFolder`, or none: everything stays in memory),
builds its parts once (:meth:`Engine.build`), loops, and saves. At the steps of the resolution
schedule the parameterisation grows the image and, by default, a fresh optimiser starts.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from clipforge.checkpoint import CHECKPOINT, check_facts, check_state, restore_state, schedule_at, state_tensors
from clipforge.compat import resolve_for_engine
from clipforge.components import AugmentContext, Callback, InversionResult, Row, RunInfo, Screened, StepState
from clipforge.goals import Goal, make_goal
from clipforge.live import python_objects
from clipforge.outputs import NoFolder, RunFolder
from clipforge.registry import Registry, ResolvedComponent, ResolvedSpec
from clipforge.resolved import ComponentStartError, GoalPath
from clipforge.rows import flat_images as flat_images  # importers find these here
from clipforge.rows import goal_labels as goal_labels
from clipforge.rows import make_rows as make_rows
from clipforge.rows import pick_device as pick_device
from clipforge.rows import warn_flat
from clipforge.signals import StopSignals
from clipforge.step import ComponentFailedError as ComponentFailedError  # raised by the loop: importers find it here
from clipforge.step import NonFiniteLossError, RunParts, check_finite, new_attribution, resize_attribution


def _backbone_index_problem(component: ResolvedComponent, index: int, count: int) -> str | None:
    """Why an objective cannot be computed on the spec's backbone ``index`` (of ``count``), or None."""
    if 0 <= index < count:
        return None
    return (
        f"objective {component.entry.name!r} asks for backbone {index}, but the spec has {count} "
        f"(backbones[0] to backbones[{count - 1}])"
    )


@dataclass
class LoopState:
    """Where the loop stands: what a checkpoint, the metrics and the result are made from."""

    optimizer: torch.optim.Optimizer
    step: int  # steps done
    size: int  # the images' side now
    resize_count: int
    started: float = 0.0  # time.perf_counter() when the loop began
    metrics: list[dict[str, Any]] = field(default_factory=list)
    pending: list[tuple[int, int, torch.Tensor]] = field(default_factory=list)  # (step, size, metrics) not gathered
    interrupted: bool = False
    failure: BaseException | None = None
    attribution: torch.Tensor | None = None  # (B, size, size) summed so far, where the spec asks for the maps


class Engine:
    """Builds a run's components from a resolved spec and runs the loop.

    :param spec: the run spec as :meth:`Registry.resolve` returned it.
    :param out_dir: where results are written; ``None`` keeps everything in memory.
    :param callbacks: extra callback objects (for notebooks and tests), besides the spec's.
    :param resume: continue the run in ``out_dir`` from its checkpoint (see :meth:`run`).
    :param registry: only for the deprecated shim that resolves a spec given unresolved (a path, a
        dict, a :class:`RunSpec`; :func:`clipforge.compat.resolve_for_engine`, goes in 0.3).
    """

    def __init__(
        self,
        spec: ResolvedSpec,
        out_dir: str | Path | None = None,
        callbacks: Sequence[Callback] = (),
        resume: bool = False,
        *,
        registry: Registry | None = None,
    ) -> None:
        if not isinstance(spec, ResolvedSpec):  # a path, a dict or a RunSpec: a shim that warns (clipforge.compat)
            spec = resolve_for_engine(spec, registry)
        self.resolved = spec
        self.spec = spec.spec
        self.spec_hash = self.spec.hash()
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.extra_callbacks = list(callbacks)
        self.resume = resume
        if resume and self.out_dir is None:
            raise ValueError("resume needs the output folder of the run to continue")

    def build(self, start_step: int = 0) -> RunParts:
        """Build every component once, in the spec's order, and embed the targets."""
        spec, comps, where = self.spec, self.resolved.components, self.resolved.path
        device = pick_device(spec.device)
        rows = make_rows(spec, goal_labels(self.resolved))
        names: dict[int, str] = {}

        def named(component: Any, resolved: ResolvedComponent, place: str) -> Any:
            entry = resolved.entry
            names[id(component)] = f"{place}: {entry.kind} {entry.name!r} from {entry.provider}"
            return component

        def build_all(field_name: str, *args: Any) -> list[Any]:
            return [
                named(c.build(*args, where=where(field_name, i)), c, where(field_name, i))
                for i, c in enumerate(comps[field_name])
            ]

        backbones = build_all("backbones", device)
        goals = self.build_goals(backbones, rows, named)
        perf = spec.performance
        encode = {}
        for bb in backbones:
            if perf.channels_last and getattr(bb, "borrowed", False):
                raise ComponentStartError(
                    f"performance.channels_last would convert {bb.label}, a model lent to the run as an object, "
                    "in place; convert it yourself (model.to(memory_format=torch.channels_last)) or drop channels_last"
                )
            if perf.channels_last and isinstance(bb.model, torch.nn.Module):
                bb.model.to(memory_format=torch.channels_last)
            encode[bb] = torch.compile(bb.encode_image, dynamic=False) if perf.compile else bb.encode_image
        generators = [torch.Generator().manual_seed(row.seed) for row in rows]
        (param,) = comps["parameterization"]
        size = spec.size_at(0)
        built = param.build(len(rows), (size, size), generators, device, where=where("parameterization"))
        parameterization = named(built, param, where("parameterization"))
        augmentations = build_all("augmentations")
        regularizers = [r for r in build_all("regularizers") if getattr(r.options, "weight", 1.0) != 0]
        regularizer_names: list[str] = []
        for r in regularizers:
            count = sum(n.split("#")[0] == r.name for n in regularizer_names)
            regularizer_names.append(r.name if count == 0 else f"{r.name}#{count + 1}")
        callbacks = build_all("callbacks") + self.extra_callbacks
        run_info = RunInfo(
            spec=spec,
            rows=rows,
            device=device,
            out_dir=self.out_dir,
            spec_hash=self.spec_hash,
            total_steps=spec.steps,
            extra={"backbones": [bb.label for bb in backbones], "python_objects": self._python_objects()},
            start_step=start_step,
        )
        return RunParts(
            spec, device, rows, backbones, goals, encode, generators, parameterization, augmentations,
            regularizers, regularizer_names, callbacks, run_info, names,
        )  # fmt: skip

    def build_goals(self, backbones: list[Any], rows: list[Row], named: Any) -> list[Goal]:
        """Every objective of every prompt's goal, built once per backbone it is computed on, for the
        rows whose goal names it (prompts that share the spec's ``objectives`` share instances)."""
        goals = []
        for where, component, b, count, row_indices in self._objectives(rows, len(backbones)):
            problem = _backbone_index_problem(component, b, len(backbones))
            if problem is not None:
                raise ComponentStartError(f"{where}: {problem}")
            objective = component.build(backbones[b], [rows[r] for r in row_indices], self.spec, where=where)
            named(objective, component, where)  # built, so checked, even if weighted 0
            if getattr(component.options, "weight", 1.0) != 0:  # as a regulariser weighted 0: not computed
                goals.append(make_goal(objective, b, count, row_indices, len(rows)))
        self._check_goals(goals)
        return goals

    def _objectives(self, rows: list[Row], count: int) -> Iterator[tuple[str, ResolvedComponent, int, int, list[int]]]:
        """Each objective of each goal as the run builds it: (its JSON path as the user wrote it, the
        component, the index of a backbone it is computed on, how many it is computed on, the rows it serves)."""
        serves: dict[GoalPath, list[int]] = {}  # a goal's place -> the rows it serves
        for row in rows:
            serves.setdefault(self.resolved.goal(row.prompt_index)[0], []).append(row.index)
        for path, row_indices in serves.items():
            for i, component in enumerate(self.resolved.goal_at(path)):
                indices = component.entry.cls.backbone_indices(component.options, count)
                for b in indices:
                    yield self.resolved.path(path, i), component, b, len(indices), row_indices

    def check(self, backbones: Sequence[Any | None]) -> list[tuple[str, str]]:
        """What the start of the run would refuse in its goals, found without running it (``clipforge
        validate``, a sweep's plan): every objective built as :meth:`build_goals` builds it, on
        ``backbones`` (built by the caller, once, on any device; ``None`` for one that could not be
        built here, whose objectives are not checked). Returns (JSON path, reason) pairs, one per
        objective that fails; the objectives' checks against one another only when all were built."""
        rows = make_rows(self.spec, goal_labels(self.resolved))
        problems: dict[str, tuple[str, str]] = {}  # by the objective's field path: its first problem
        goals, unchecked = [], False
        for where, component, b, count, row_indices in self._objectives(rows, len(backbones)):
            if where in problems:
                continue
            entry = component.entry
            plugin = f"[{entry.kind} {entry.name!r} from {entry.provider}]"
            problem = _backbone_index_problem(component, b, len(backbones))
            if problem is not None:
                field = ".options.backbone" if "backbone" in type(component.options).model_fields else ""
                problems[where] = (f"{where}{field}", f"{problem} {plugin}")
                continue
            if backbones[b] is None:
                unchecked = True
                continue
            try:
                objective = component.build(backbones[b], [rows[r] for r in row_indices], self.spec, where=where)
            except ComponentStartError as exc:
                reason = str(exc.__cause__) if exc.__cause__ is not None else str(exc)
                problems[where] = (where, f"{reason} {plugin}")
                continue
            if getattr(component.options, "weight", 1.0) != 0:
                goals.append(make_goal(objective, b, count, row_indices, len(rows)))
        if not problems and not unchecked:
            try:
                self._check_goals(goals)
            except ComponentStartError as exc:
                place, _, reason = str(exc).partition(": ")
                problems[place] = (place, reason)
        return list(problems.values())

    def _python_objects(self) -> list[str]:
        """What ``run.json`` lists of the components made from Python objects, each key rendered as
        the user wrote it (a goal's path typed, never parsed back)."""
        rendered = {self.resolved.path(key): value for key, value in self.resolved.components.items()}
        return python_objects(rendered, lambda place: place)

    def _check_goals(self, goals: list[Goal]) -> None:
        perf = self.spec.performance
        reads_layers = [g for g in goals if g.objective.layers()]
        if reads_layers and perf.compile:
            raise ComponentStartError(
                f"performance.compile: {type(reads_layers[0].objective).name!r} reads layers through hooks, which a "
                "compiled image encoder does not call; turn compile off for objectives of layers"
            )
        compares = [g for g in goals if g.objective.compares_images]
        if compares and perf.chunk_copies is not None:
            raise ComponentStartError(
                f"performance.chunk_copies: {type(compares[0].objective).name!r} compares the images of a batch, so "
                "their copies must go through the backbone together; drop chunk_copies"
            )

    def run(self) -> InversionResult:
        """Run the loop. With an output folder: claim it (refused if another run holds it or it is
        not empty), write a checkpoint every ``spec.checkpoint_interval()`` steps and whenever
        ``spec.checkpoint_seconds`` of wall time have passed since the last one, and at the end the
        final images and ``run.json`` saying ``finished``, ``interrupted`` (Ctrl-C, SIGTERM) or
        ``failed`` (with the error, which is raised again). A run that fails before its first step
        leaves nothing behind."""
        # Ctrl-C and SIGTERM from here to the end: the first one stops the run (during its start too: a
        # half-made folder goes), and the ones after it cannot break the save
        with StopSignals() as stop:
            folder = RunFolder(self.out_dir, self.resume) if self.out_dir is not None else NoFolder()
            parts, state = self._start(folder)
            self._loop(parts, state, folder, stop)
            return self._save(parts, state, folder, stop)

    # ------------------------------------------------------------------ start

    def _start(self, folder: RunFolder | NoFolder) -> tuple[RunParts, LoopState]:
        """Build the parts, restore a checkpoint or write the run's first files, and start the
        callbacks; on any failure (or Ctrl-C, SIGTERM) undo it all: a fresh run's folder goes (with
        the parents it made), a resumed run's is left as it was."""
        spec, parts = self.spec, None
        try:
            start_step, size, resizes = 0, spec.size_at(0), 0
            if self.resume:
                tensors, facts = folder.read_checkpoint(self.spec_hash)
                start_step, size, resizes = check_facts(spec, facts, folder.path / CHECKPOINT)
            parts = self.build(start_step)
            state = LoopState(parts.new_optimizer(), start_step, size, resizes)
            if spec.output.attribution:
                state.attribution = new_attribution(len(parts.rows), size, parts.device)
            if self.resume:
                if size != spec.size_at(0):
                    parts.param.resize((size, size))
                    state.optimizer = parts.new_optimizer()
                last_resize = schedule_at(spec, start_step)[2]
                adam_step = start_step - (last_resize if spec.optimizer.reset_on_resize else 0)
                params = list(parts.param.parameters())
                path = folder.path / CHECKPOINT
                check_state(tensors, params, parts.generators, start_step, adam_step, path, state.attribution)
                restore_state(tensors, params, state.optimizer, parts.generators, state.attribution)
            else:
                folder.start(parts.run_info)
            for cb in parts.callbacks:
                with parts.blame(cb, "at the start of the run"):
                    cb.on_run_start(parts.run_info)
            if self.resume:  # once every part has started: a resume that fails to start leaves run.json as it was
                folder.resumed(start_step)
        except BaseException:
            folder.abandon(lambda: _close_callbacks(parts))
            raise
        return parts, state

    # ------------------------------------------------------------------ the loop

    def _loop(self, parts: RunParts, state: LoopState, folder: RunFolder | NoFolder, stop: StopSignals) -> None:
        """Steps until the end, a signal or a failure (kept in ``state``), with the checkpoints."""
        spec = self.spec
        every, seconds = spec.checkpoint_interval(), spec.checkpoint_seconds
        state.started, last_checkpoint = time.perf_counter(), time.monotonic()
        tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        if parts.device.type == "cuda" and spec.performance.tf32:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            for i in range(state.step, spec.steps):
                if spec.size_at(i) != state.size:
                    state.optimizer = parts.resize(spec.size_at(i), state.optimizer)
                    state.size, state.resize_count = spec.size_at(i), state.resize_count + 1
                    if state.attribution is not None:
                        state.attribution = resize_attribution(state.attribution, state.size)
                model_size = tuple(parts.backbones[0].input_size)
                ctx = AugmentContext(parts.generators, spec.copies, model_size, i, state.resize_count)
                # the maps only where asked for: a step without them is called as it always was
                maps = {} if state.attribution is None else {"attribution": state.attribution}
                state.pending.append((i + 1, state.size, parts.step(state.optimizer, ctx, **maps)))
                state.step = i + 1
                if state.step % spec.log_every == 0 or state.step == spec.steps:
                    self._flush(parts, state)
                step_state = StepState(
                    step=state.step, size=(state.size, state.size), _images=lambda: _images(parts, state).images
                )
                for cb in parts.callbacks:
                    with parts.blame(cb, f"at the end of step {state.step}"):
                        cb.on_step_end(parts.run_info, step_state)
                # a checkpoint every ``every`` steps, and whenever ``seconds`` have passed since the last
                # one: it only reads the state, so the images are the same wherever checkpoints fall
                due = state.step % every == 0 or (seconds is not None and time.monotonic() - last_checkpoint >= seconds)
                if folder.path is not None and due and state.step < spec.steps:
                    self._checkpoint(parts, state, folder, stop)
                    last_checkpoint = time.monotonic()
        except KeyboardInterrupt:
            state.interrupted = True
        except BaseException as exc:  # save what we have, then re-raise
            state.failure, state.interrupted = exc, True
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32

    def _checkpoint(self, parts: RunParts, state: LoopState, folder: RunFolder, stop: StopSignals) -> None:
        """The optimisation state and the images as they are, written whole: a signal that comes
        meanwhile stops the run once they are."""
        self._flush(parts, state)
        with stop.held() as arrived:
            facts = {"step": state.step, "size": state.size, "resize_count": state.resize_count}
            params = list(parts.param.parameters())
            tensors = state_tensors(params, state.optimizer, parts.generators, state.attribution)
            folder.checkpoint(tensors, {**facts, "spec_hash": self.spec_hash})
            folder.save(self._result(parts, state, _images(parts, state)), "running")
        if arrived:  # Ctrl-C or SIGTERM came during the checkpoint: stop now
            stop.stop_now(arrived[0])

    def _flush(self, parts: RunParts, state: LoopState) -> None:
        """Gather the pending metrics from the device, hand them to the callbacks, and stop on a
        loss that is not finite."""
        records = parts.records(state.pending)
        state.pending.clear()
        if records:
            state.metrics.extend(records)
            for cb in parts.callbacks:
                with parts.blame(cb, f"on the metrics of step {records[-1]['step']}"):
                    cb.on_metrics(parts.run_info, records)
            check_finite(records, parts.rows)

    def _result(self, parts: RunParts, state: LoopState, images: Screened) -> InversionResult:
        """The images as they are now, with their attribution maps (a withheld image's zeroed, as its
        image is: a map shows where its image's content is) and which ones came out flat."""
        attribution = None
        if state.attribution is not None:
            attribution = state.attribution.detach().float().cpu().clone()
            attribution[images.withheld] = 0.0
        return InversionResult(
            images=images.images,
            withheld=images.withheld.tolist(),
            attribution=attribution,
            flat=flat_images(images.images, images.withheld),
            rows=parts.rows,
            metrics=state.metrics,
            spec=self.spec,
            spec_hash=self.spec_hash,
            device=str(parts.device),
            steps_done=state.step,
            interrupted=state.interrupted,
            seconds=time.perf_counter() - state.started,
            out_dir=self.out_dir,
        )

    # ------------------------------------------------------------------ save

    def _save(self, parts: RunParts, state: LoopState, folder: RunFolder | NoFolder, stop: StopSignals) -> Any:
        """The last metrics, the final images and ``run.json``, the callbacks' end, the folder's
        release; then the failure, if any, is raised again."""
        failure = state.failure
        if failure is not None and state.step == 0 and folder.fresh:  # nothing was optimised: leave nothing behind
            folder.abandon(lambda: _close_callbacks(parts))
            raise failure
        with stop.held():  # a second Ctrl-C must not break the save
            try:
                self._flush(parts, state)
            except NonFiniteLossError as exc:
                failure = failure or exc
            except Exception as exc:  # a callback failed on the last records: keep the images, say so
                warnings.warn(f"the last metrics records were not delivered to every callback: {exc!r}", stacklevel=3)
            try:
                result = self._result(parts, state, _images(parts, state, final=True))
                warn_flat(result)
                error = None if failure is None else f"{type(failure).__name__}: {failure}"
                folder.save(result, "failed" if failure is not None else None, error)
            except Exception as exc:
                if failure is None:
                    failure = exc
                else:
                    warnings.warn(f"saving the images after the failure failed too: {exc!r}", stacklevel=3)
                result = None
                folder.fail(f"{type(failure).__name__}: {failure}")
            for cb in parts.callbacks:
                try:
                    with parts.blame(cb, "at the end of the run"):
                        cb.on_run_end(parts.run_info, result)
                except Exception as exc:  # every callback still ends (closes its files), and the lock goes
                    if failure is None:  # the images are whole, but the run did not end well
                        failure = exc
                        folder.fail(f"{type(exc).__name__}: {exc}")
            folder.release()
        if failure is not None:
            raise failure
        return result


def _images(parts: RunParts, state: LoopState, final: bool = False) -> Screened:
    """The images as they are now, screened."""
    with torch.no_grad():
        images = parts.param.image().detach().clamp(0, 1).float().cpu()
    return parts.screen(images, state.step, final)


def _close_callbacks(parts: RunParts | None) -> None:
    """After a failed start: callbacks that opened files close them (their folder goes)."""
    for cb in parts.callbacks if parts is not None else []:
        try:
            cb.on_run_end(parts.run_info, None)
        except Exception as exc:  # the start's own failure is what is raised; this one is said, not lost
            warnings.warn(
                f"after the failed start, {parts.name_of(cb)} failed to end too: {type(exc).__name__}: {exc}",
                stacklevel=3,
            )
