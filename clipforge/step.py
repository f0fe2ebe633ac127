"""A run's built parts and one optimisation step over them (the loop around it is
:mod:`clipforge.engine`'s).

One step, as in the authors' code:

1. images = parameterisation.image()                       (B, 3, h, w)
2. K copies of each, through the augmentation pipeline     (B*K, 3, ., .)
3. each backbone embeds the copies (resized to its input), its hooks capturing the layers the
   objectives read; data term per image: mean over copies of minus the prompt's goal, the weighted
   sum of its objectives (:mod:`clipforge.goals`; the paper's: the sum over the prompt's terms of
   weight * distance(embedding, target), averaged over backbones)
4. loss per image = data term + sum of weighted regularisers
5. backward; clip each image's gradient norm; parameterisation.after_backward() (clamp); Adam step
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from clipforge.components import (
    Augmentation,
    AugmentContext,
    Backbone,
    Callback,
    Parameterization,
    Regularizer,
    Row,
    RunInfo,
    Screened,
)
from clipforge.goals import Goal, GoalSums, capture, evaluate
from clipforge.spec import RunSpec


class ComponentFailedError(RuntimeError):
    """A component failed, or returned something of the wrong shape, while the run ran: the message
    names it, with its place in the spec and its plugin."""


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: the run stops rather than finish on garbage."""


def check_finite(records: list[dict[str, Any]], rows: Sequence[Row]) -> None:
    """Raise :class:`NonFiniteLossError` naming the first step and image whose loss is not finite."""
    for record in records:
        bad = [i for i, value in enumerate(record["loss"]) if not math.isfinite(value)]
        if bad:
            names = ", ".join(rows[i].slug for i in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise NonFiniteLossError(
                f"the loss became {record['loss'][bad[0]]} at step {record['step']} (image {names}); "
                "the run stopped there. Lower the learning rate or check the weights and the target"
            )


def clip_grad_per_image(params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Clip each image's gradient norm (over all parameter tensors) like ``clip_grad_norm_`` would
    clip it alone. Returns the norms before clipping, (B,)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:  # nothing to clip: the loss did not depend on the images
        return torch.zeros(params[0].shape[0] if params else 0)
    flat = [g.flatten(1) for g in grads]
    squares = torch.stack([(f * f).sum(dim=1) for f in flat]).sum(dim=0)  # x * x: pow(2)'s values, 3x faster
    norms = squares.sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
    return norms


def add_attribution(attribution: torch.Tensor, grad: torch.Tensor, batch: int) -> None:
    """Add the gradient reaching the un-augmented copies (B * K, 3, h, w) to the maps (B, h, w): the
    copies' gradients summed per image are the gradient with respect to the image, as
    ``repeat_interleave``'s backward sums them; then its absolute value, summed over colours."""
    with torch.no_grad():
        per_image = grad.detach().float().reshape(batch, -1, *grad.shape[1:]).sum(dim=1)
        attribution.add_(per_image.abs().sum(dim=1))


def new_attribution(batch: int, size: int, device: torch.device) -> torch.Tensor:
    """The attribution maps of a run before its first step: zero, (B, size, size)."""
    return torch.zeros((batch, size, size), device=device)


def resize_attribution(attribution: torch.Tensor, size: int) -> torch.Tensor:
    """The maps summed so far, carried to the images' new size: resized bilinearly and scaled by
    the ratio of the areas, so that each map's total stays what it was. Why the scale: a pixel's
    gradient shrinks with its area (the model sees the image at its own input size), so without it
    the steps before a resize would outweigh those after it."""
    old = attribution.shape[-1]
    grown = F.interpolate(attribution.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)
    return grown.squeeze(1) * (old * old) / (size * size)


class Blamed:
    """What :meth:`RunParts.blame` returns: a context that re-raises a failure in it as
    :class:`ComponentFailedError` naming the component (a class, not a generator: it is entered
    several times a step, and this costs a fraction of ``contextmanager``'s time)."""

    __slots__ = ("parts", "component", "doing")

    def __init__(self, parts: RunParts, component: Any, doing: str) -> None:
        self.parts, self.component, self.doing = parts, component, doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False  # success, or KeyboardInterrupt and the like: as they are
        if isinstance(exc, (ComponentFailedError, NonFiniteLossError, torch.OutOfMemoryError)):
            return False
        raise ComponentFailedError(
            f"{self.parts.name_of(self.component)} failed {self.doing}: {type(exc).__name__}: {exc}"
        ) from exc


@dataclass(frozen=True)
class RunParts:
    """A run's components, built once from its resolved spec (:meth:`clipforge.engine.Engine.build`),
    and what the loop does with them: a step, the screen, the metrics records, the optimiser and
    the state a checkpoint holds."""

    spec: RunSpec
    device: torch.device
    rows: list[Row]
    backbones: list[Backbone]
    goals: list[Goal]  # every objective of every prompt's goal, on each backbone it is computed on
    encode: dict[Backbone, Callable[[torch.Tensor], torch.Tensor]]  # each backbone's (compiled) image encoder
    generators: list[torch.Generator]  # one per image
    param: Parameterization
    augmentations: list[Augmentation]
    regularizers: list[Regularizer]  # those with a weight (one weighted 0 is not computed)
    regularizer_names: list[str]  # metric keys: "tv", and "tv#2" for a second tv
    callbacks: list[Callback]
    run_info: RunInfo
    names: dict[int, str]  # id of a component -> its place in the spec, name and plugin, for errors

    copy_rows_made: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict, compare=False)

    def copy_rows(self, start: int, count: int) -> torch.Tensor:
        """Each copy's run row for the flat copies ``start ... start + count`` (made once per chunk and
        kept: the same tensor every step, which objectives may use to keep what they derive from it)."""
        rows = self.copy_rows_made.get((start, count))
        if rows is None:
            rows = torch.arange(start, start + count, device=self.device) // self.spec.copies
            self.copy_rows_made[(start, count)] = rows
        return rows

    def name_of(self, component: Any) -> str:
        """A component's place in the spec, name and plugin (``augmentations[1]: augmentation 'x' from
        plugin 'p' (dist 1.0)``), for errors; a callback passed in by code is named by its class."""
        return self.names.get(id(component)) or f"{type(component).__name__} {getattr(component, 'name', '')!r}"

    def blame(self, component: Any, doing: str) -> Blamed:
        """A context that raises what fails in it as :class:`ComponentFailedError` naming ``component``."""
        return Blamed(self, component, doing)

    def expect(self, component: Any, value: Any, shape: tuple[int | None, ...], what: str, when: str) -> None:
        """Refuse a component's result that is not a tensor of ``shape`` (None: any size there)."""
        ok = torch.is_tensor(value) and value.dim() == len(shape)
        if ok:  # a loop, not all() over a generator: this runs several times a step
            for got, want in zip(value.shape, shape):
                if want is not None and got != want:
                    ok = False
                    break
        if not ok:
            got = f"shape {tuple(value.shape)}" if torch.is_tensor(value) else type(value).__name__
            want = "(" + ", ".join("*" if n is None else str(n) for n in shape) + ")"
            raise ComponentFailedError(
                f"{self.name_of(component)} returned {got} {when}; expected {what} of shape {want}"
            )

    # ------------------------------------------------------------------ the optimiser

    def new_optimizer(self) -> torch.optim.Optimizer:
        """The spec's optimiser over the parameterisation's current parameters. Both kinds keep their
        moments element-wise, so an image's update does not depend on the other images."""
        o = self.spec.optimizer
        if o.name == "nadam":
            return torch.optim.NAdam(self.param.parameters(), lr=o.lr, betas=o.betas, eps=o.eps)
        return torch.optim.Adam(self.param.parameters(), lr=o.lr, betas=o.betas, eps=o.eps)

    def carry_optimizer(self, old: torch.optim.Optimizer, old_params: list[torch.Tensor]) -> torch.optim.Optimizer:
        """A new optimiser for the resized parameters, with ``old``'s state resized onto them."""
        new = self.new_optimizer()
        for old_p, new_p in zip(old_params, self.param.parameters()):
            state = old.state.get(old_p)
            if not state:
                continue
            new.state[new_p] = {
                k: (
                    self.param.resize_state(v, tuple(new_p.shape))
                    if torch.is_tensor(v) and v.shape == old_p.shape
                    else v
                )
                for k, v in state.items()
            }
        return new

    def resize(self, size: int, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Grow the images to ``size``; returns the optimiser to go on with (a fresh one by default)."""
        old_params = self.param.parameters()
        self.param.resize((size, size))
        if self.spec.optimizer.reset_on_resize:
            return self.new_optimizer()
        return self.carry_optimizer(optimizer, old_params)

    # ------------------------------------------------------------------ the step

    def precision(self) -> AbstractContextManager:
        """bf16 autocast for the backbones' forward passes, or (fp32) nothing to enter at every step."""
        if self.spec.performance.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def embed_losses(self, copies: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Data term (minus the goal) and similarity of the flat copies ``start ...``, (N,) each."""
        perf = self.spec.performance
        copy_rows = self.copy_rows(start, copies.shape[0])
        sums = GoalSums.zeros(copies.shape[0], copies.device)
        for b, backbone in enumerate(self.backbones):
            goals = [g for g in self.goals if g.backbone == b]
            if not goals:
                continue
            x = copies
            if tuple(x.shape[-2:]) != tuple(backbone.input_size):
                x = F.interpolate(x, size=backbone.input_size, mode=backbone.interpolation)
            if perf.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.blame(backbone, "encoding the images"):
                with capture(goals, b, backbone) as activations, self.precision():
                    features = self.encode[backbone](x)
            self.expect(backbone, features, (x.shape[0], None), "one embedding per copy", "encoding the images")
            emb = F.normalize(features.float(), dim=-1)
            evaluate(goals, sums, emb, activations, copy_rows, self.blame, self.expect)
        return sums.loss_and_similarity()

    def step(
        self, optimizer: torch.optim.Optimizer, ctx: AugmentContext, attribution: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One optimisation step. Returns the step's metrics as a (M, B) tensor on the device.

        With ``performance.chunk_copies`` the copies go through the backbones in chunks, each with
        its own backward into the (detached) copies; their gradient then flows back through the
        augmentations in one pass. Same result, a fraction of the activation memory.

        ``attribution`` (B, H, W), when given, gains this step's attribution: the absolute gradient
        of the data term (the objectives, averaged over the copies; not the regularisers) with
        respect to the un-augmented image, summed over the colour channels. It is read by a hook
        on the copies before the augmentations, which sees the gradient without changing it, so
        the images are the same bit for bit with or without the map.
        """
        spec, step = self.spec, ctx.step + 1
        optimizer.zero_grad(set_to_none=True)
        batch, k = len(self.rows), spec.copies
        with self.blame(self.param, f"at step {step}"):
            images = self.param.image()
        self.expect(self.param, images, (batch, 3, None, None), "images", f"at step {step}")
        copies = images.repeat_interleave(k, dim=0)
        if attribution is not None and copies.requires_grad:
            copies.register_hook(lambda grad: add_attribution(attribution, grad, batch))
        for aug in self.augmentations:
            with self.blame(aug, f"at step {step}"):
                copies = aug(copies, ctx)
            self.expect(aug, copies, (batch * k, 3, None, None), "copies", f"at step {step}")
        reg_values = []
        for reg in self.regularizers:
            with self.blame(reg, f"at step {step}"):
                reg_values.append(reg(images))
            self.expect(reg, reg_values[-1], (batch,), "one value per image", f"at step {step}")
        reg_loss = sum(
            (reg.options.weight * v for reg, v in zip(self.regularizers, reg_values)), images.new_zeros(batch)
        )
        n = copies.shape[0]
        chunk = spec.performance.chunk_copies or n
        if chunk >= n:
            per_copy, sim = self.embed_losses(copies, 0)
            data = per_copy.view(batch, k).mean(dim=1)
            total = (data + reg_loss).sum()
            if total.requires_grad:  # not when every objective and regulariser is weighted 0
                total.backward()
        else:
            leaf = copies.detach().requires_grad_(True)
            parts, sims = [], []
            for start in range(0, n, chunk):
                part, s = self.embed_losses(leaf[start : start + chunk], start)
                if part.requires_grad:  # not for copies whose prompts' objectives are all weighted 0
                    (part.sum() / k).backward()
                parts.append(part.detach())
                sims.append(s.detach())
            per_copy, sim = torch.cat(parts), torch.cat(sims)
            data = per_copy.view(batch, k).mean(dim=1)
            grad = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
            if reg_loss.requires_grad:
                torch.autograd.backward([copies, reg_loss.sum()], [grad, None])
            else:
                copies.backward(grad)
        similarity = sim.view(batch, k).mean(dim=1)
        params = self.param.parameters()
        if spec.optimizer.grad_clip is not None:
            clip_grad_per_image(params, spec.optimizer.grad_clip)
        with self.blame(self.param, f"after the backward pass of step {step}"):
            self.param.after_backward()
        optimizer.step()
        return torch.stack(
            [data.detach() + reg_loss.detach(), data.detach(), similarity.detach(), *[v.detach() for v in reg_values]]
        )

    def screen(self, images: torch.Tensor, step: int, final: bool) -> Screened:
        """Let every screening callback inspect the images before anything shows them."""
        screened = Screened(images, torch.zeros(images.shape[0], dtype=torch.bool))
        for cb in self.callbacks:
            with self.blame(cb, f"screening the images of step {step}"):
                verdict = cb.screen(self.run_info, screened.images, step, final)
            if verdict is not None:
                screened = Screened(verdict.images, screened.withheld | verdict.withheld)
        if screened.withheld.any():
            screened.images[screened.withheld] = 0.0
        return screened

    def records(self, pending: list[tuple[int, int, torch.Tensor]]) -> list[dict[str, Any]]:
        if not pending:
            return []
        values = torch.stack([m for _, _, m in pending]).cpu().tolist()
        names = self.regularizer_names
        records = []
        for (step, size, _), v in zip(pending, values):
            similarity = [None if math.isnan(x) else x for x in v[2]]  # None: no objective reports one
            rec = {"step": step, "size": size, "loss": v[0], "data": v[1], "similarity": similarity}
            rec["regularizers"] = {name: v[3 + i] for i, name in enumerate(names)}
            records.append(rec)
        return records
