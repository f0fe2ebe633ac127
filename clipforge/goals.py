"""What a run maximises: each prompt's goal, a weighted sum of objectives, evaluated on the copies.

Every objective of a goal is built once per backbone it is computed on, for the images (rows) whose
goal names it; several prompts that share the spec's ``objectives`` share one instance, so the
paper's prompt similarity is one objective over the whole batch, as the data term was before
objectives were plugins. Per copy:

    loss = - sum over goals' objectives of weight * value / (backbones it is averaged over)

summed in that order so that the paper's single objective gives the very numbers of the old data
term (the mean distance to the prompt's terms over the backbones).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch

from clipforge.components import Features, Objective
from clipforge.layers import captured, image_tower


@dataclass(frozen=True)
class Goal:
    """One objective on one backbone, and the run's rows it serves."""

    objective: Objective
    backbone: int  # index into the run's backbones
    averaged_over: int  # how many backbones its values are averaged over
    rows: tuple[int, ...]  # the run's rows, in the order of ``objective.rows``
    position: torch.Tensor  # (B,): each run row's index into ``rows``, or -1
    every_row: bool  # serves every row of the run in order (no selecting copies)

    @property
    def weight(self) -> float:
        return float(getattr(self.objective.options, "weight", 1.0))


def make_goal(objective: Objective, backbone: int, averaged_over: int, rows: list[int], batch: int) -> Goal:
    position = torch.full((batch,), -1, dtype=torch.long)
    position[torch.tensor(rows, dtype=torch.long)] = torch.arange(len(rows))
    position = position.to(objective.backbone.device)  # where the copies are: no copy to the device per step
    return Goal(objective, backbone, averaged_over, tuple(rows), position, rows == list(range(batch)))


def layers_of(goals: list[Goal], backbone: int) -> list[str]:
    """The layers of one backbone whose activations its goals read."""
    return sorted({name for g in goals if g.backbone == backbone for name in g.objective.layers()})


Expect = Callable[[object, object, tuple, str, str], None]
Blame = Callable[[object, str], AbstractContextManager]


@dataclass
class GoalSums:
    """Running sums over backbones and objectives for the copies of one chunk. Nothing is made until
    something is added, and nothing is added to zeros or divided by one: the paper's single objective
    costs no tensor operation beyond its own (the engine's overhead per step, issue 35)."""

    n: int
    device: torch.device
    by_count: dict[int, torch.Tensor] = field(default_factory=dict)  # weighted values, by backbones averaged over
    similarity: torch.Tensor | None = None  # the sum of the similarities reported
    similarity_count: torch.Tensor | int = 0  # how many were summed: an int while each one covered every copy

    @classmethod
    def zeros(cls, n: int, device: torch.device) -> GoalSums:
        return cls(n, device)

    def add(self, goal: Goal, index: torch.Tensor | None, value: torch.Tensor, similarity: torch.Tensor | None):
        weighted = value if goal.weight == 1.0 else goal.weight * value
        total = self.by_count.get(goal.averaged_over)
        if index is None:
            total = weighted if total is None else total + weighted
        else:
            base = torch.zeros(self.n, device=value.device, dtype=value.dtype) if total is None else total
            total = base.index_add(0, index, weighted)
        self.by_count[goal.averaged_over] = total
        if similarity is None:
            return
        s = similarity.detach().float()
        if index is None:
            self.similarity = s if self.similarity is None else self.similarity + s
            self.similarity_count = self.similarity_count + 1
        else:
            base = torch.zeros(self.n, device=s.device) if self.similarity is None else self.similarity
            self.similarity = base.index_add(0, index, s)
            count = self.similarity_count
            if not torch.is_tensor(count):
                count = torch.full((self.n,), float(count), device=s.device)
            self.similarity_count = count.index_add(0, index, torch.ones_like(s))

    def loss_and_similarity(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per copy: minus the goal (the loss), and the mean similarity (NaN where none was reported)."""
        goal = None
        for count in sorted(self.by_count):
            part = self.by_count[count] if count == 1 else self.by_count[count] / count
            goal = part if goal is None else goal + part
        if goal is None:  # every objective weighted 0: no goal, the regularisers alone
            goal = torch.zeros(self.n, device=self.device)
        count = self.similarity_count
        if self.similarity is None:
            similarity = torch.full((self.n,), math.nan, device=self.device)
        elif torch.is_tensor(count):
            similarity = torch.where(count > 0, self.similarity / count.clamp_min(1), math.nan)
        else:
            similarity = self.similarity if count == 1 else self.similarity / count
        return -goal, similarity


def evaluate(
    goals: list[Goal],
    sums: GoalSums,
    embeddings: torch.Tensor,
    activations: dict[str, torch.Tensor],
    copy_rows: torch.Tensor,
    blame: Blame,
    expect: Expect,
) -> None:
    """Add every goal's values for one backbone's copies (``copy_rows``: each copy's run row)."""
    for goal in goals:
        if goal.every_row:
            index, image_index = None, copy_rows
            emb, acts = embeddings, {name: activations[name] for name in goal.objective.layers()}
        else:
            position = goal.position[copy_rows]
            index = (position >= 0).nonzero().squeeze(1)
            if index.numel() == 0:
                continue
            image_index = position[index]
            emb = embeddings.index_select(0, index)
            acts = {name: activations[name].index_select(0, index) for name in goal.objective.layers()}
        with blame(goal.objective, "evaluating the copies"):
            out = goal.objective(Features(emb, acts, image_index))
            if isinstance(out, tuple) and len(out) != 2:
                raise TypeError(f"it returned a tuple of {len(out)}; an objective returns value or (value, similarity)")
        value, similarity = out if isinstance(out, tuple) else (out, None)
        n = emb.shape[0]
        expect(goal.objective, value, (n,), "one value per copy", "evaluating the copies")
        if similarity is not None:
            expect(goal.objective, similarity, (n,), "one similarity per copy", "evaluating the copies")
        with blame(goal.objective, "evaluating the copies"):
            check_value(value, emb)
        sums.add(goal, index, value, similarity)


def check_value(value: torch.Tensor, embeddings: torch.Tensor) -> None:
    """Refuse an objective's value that would silently steer nothing: one without a gradient while
    the images have one, or (on the CPU, where looking costs no sync) a NaN or infinite one from
    finite embeddings, which would otherwise be found at the next metrics, naming the step but not
    the objective."""
    if torch.is_grad_enabled() and embeddings.requires_grad and not value.requires_grad:
        raise ValueError(
            "its value does not depend on the images (no gradient: detached, or computed under no_grad), "
            "so it would do nothing"
        )
    if value.device.type == "cpu" and not torch.isfinite(value.detach().sum()) and not torch.isfinite(value).all():
        if not torch.isfinite(embeddings.detach()).all():  # the images went wrong, not the objective: the
            return  # metrics will say so, naming the step and the image
        bad = value.detach()[~torch.isfinite(value.detach())][0].item()
        raise FloatingPointError(f"its value is not finite ({bad}) for a copy")


def capture(goals: list[Goal], backbone_index: int, backbone: object) -> AbstractContextManager:
    """A context that captures the layers this backbone's goals read (none to read: it captures nothing)."""
    names = layers_of(goals, backbone_index)
    if not names:
        return nullcontext({})
    return captured(image_tower(backbone), names)  # type: ignore[arg-type]
