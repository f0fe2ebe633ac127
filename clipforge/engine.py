"""The optimisation loop: one place where an inversion happens.

A run optimises a batch of independent images (prompts x seeds) in every step. Each image has its
own ``torch.Generator`` (seeded with its seed), its own loss term, its own gradient clipping, and
Adam is element-wise, so an image comes out the same whether it is optimised alone or in a batch
(up to floating-point summation order).

One step, as in the authors' code:

1. images = parameterisation.image()                       (B, 3, h, w)
2. K copies of each, through the augmentation pipeline     (B*K, 3, ., .)
3. each backbone embeds the copies (resized to its input); data term per image:
   mean over copies of sum over the prompt's terms of weight * distance(embedding, target)
4. loss per image = data term (averaged over backbones) + sum of weighted regularisers
5. backward; clip each image's gradient norm; parameterisation.after_backward() (clamp); Adam step

At the steps of the resolution schedule the parameterisation grows the image and, by default, a
fresh optimiser starts.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from clipforge import outputs
from clipforge.components import (
    Augmentation,
    AugmentContext,
    Backbone,
    Callback,
    InversionResult,
    Parameterization,
    Regularizer,
    Row,
    RunInfo,
    Screened,
    StepState,
)
from clipforge.registry import Registry, ResolvedSpec, default_registry
from clipforge.spec import RunSpec, load_spec


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for, but CUDA is not available here; use 'auto' or 'cpu'")
    return device


def make_rows(spec: RunSpec) -> list[Row]:
    rows, used = [], set()
    for p, prompt in enumerate(spec.prompts):
        text = prompt.display()
        base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "prompt"
        for seed in spec.seeds:
            slug = f"{p:02d}-{base}-seed{seed}"
            while slug in used:
                slug += "x"
            used.add(slug)
            rows.append(Row(index=len(rows), prompt_index=p, seed=seed, label=text, slug=slug))
    return rows


@dataclass
class Targets:
    """Each image's target terms in one backbone's space: embeddings (B, T, D), weights (B, T)."""

    embeddings: torch.Tensor
    weights: torch.Tensor
    similarity_weights: torch.Tensor  # positive weights, normalised per image: the "similarity" metric


def embed_terms(backbone: Backbone, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], torch.Tensor]:
    """Normalised embeddings of text and image terms, each computed once."""
    texts = sorted({v for kind, v in keys if kind == "text"})
    images = sorted({v for kind, v in keys if kind == "image"})
    out: dict[tuple[str, str], torch.Tensor] = {}
    with torch.no_grad():
        if texts:
            for t, e in zip(texts, F.normalize(backbone.encode_text(texts).float(), dim=-1)):
                out[("text", t)] = e
        if images:
            pixels = torch.stack([outputs.load_image(p, tuple(backbone.input_size)) for p in images]).to(
                backbone.device
            )
            for p, e in zip(images, F.normalize(backbone.encode_image(pixels).float(), dim=-1)):
                out[("image", p)] = e
    return out


def embed_targets(backbone: Backbone, spec: RunSpec, rows: Sequence[Row]) -> Targets:
    """Encode every distinct term once, before the loop, and lay the terms out per image."""
    prompts = [spec.prompts[row.prompt_index] for row in rows]
    terms = [p.resolved_terms() for p in prompts]
    embedded = embed_terms(backbone, [t.key for row_terms in terms for t in row_terms])
    per_row: list[list[tuple[torch.Tensor, float]]] = []
    for prompt, row_terms in zip(prompts, terms):
        pairs = [(embedded[t.key], t.weight) for t in row_terms]
        if prompt.combine == "embedding":
            positive = [(e, w) for e, w in pairs if w > 0]
            mixed = F.normalize(sum(w * e for e, w in positive), dim=-1)
            pairs = [(mixed, prompt.weight)] + [(e, w) for e, w in pairs if w <= 0]
        per_row.append(pairs)
    width = max(len(p) for p in per_row)
    dim = next(iter(embedded.values())).shape[-1]
    device = next(iter(embedded.values())).device
    emb = torch.zeros(len(rows), width, dim, device=device)
    weights = torch.zeros(len(rows), width, device=device)
    for b, pairs in enumerate(per_row):
        for j, (e, w) in enumerate(pairs):
            emb[b, j] = e
            weights[b, j] = w
    positive = weights.clamp_min(0)
    sim_w = positive / positive.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return Targets(emb, weights, sim_w)


def clip_grad_per_image(params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Clip each image's gradient norm (over all parameter tensors) like ``clip_grad_norm_`` would
    clip it alone. Returns the norms before clipping, (B,)."""
    grads = [p.grad for p in params if p.grad is not None]
    squares = torch.stack([g.flatten(1).pow(2).sum(dim=1) for g in grads]).sum(dim=0)
    norms = squares.sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
    return norms


def copy_losses(
    embeddings: torch.Tensor, image_index: torch.Tensor, targets: Targets, kind: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Data term and similarity of each copy. ``embeddings`` are normalised, (N, D); copy ``n``
    belongs to image ``image_index[n]``. Returns two (N,) tensors."""
    target = targets.embeddings[image_index]  # (N, T, D)
    cos = torch.einsum("nd,ntd->nt", embeddings, target)
    if kind == "l2":
        dist = (embeddings[:, None, :] - target).norm(dim=-1)
    else:
        dist = 1.0 - cos
    loss = (dist * targets.weights[image_index]).sum(dim=-1)
    similarity = (cos * targets.similarity_weights[image_index]).sum(dim=-1)
    return loss, similarity


class Engine:
    """Builds a run's components from a spec and runs the loop.

    :param spec: the run spec: a :class:`ResolvedSpec` (from :meth:`Registry.resolve`), or a path,
        a dict or a :class:`RunSpec`, which is resolved here, once.
    :param registry: where components are looked up (default: the installed plugins).
    :param out_dir: where results are written; ``None`` keeps everything in memory.
    :param callbacks: extra callback objects (for notebooks and tests), besides the spec's.
    :param resume: continue the run in ``out_dir`` from its checkpoint (see :meth:`run`).
    """

    def __init__(
        self,
        spec: ResolvedSpec | RunSpec | dict[str, Any] | str | Path,
        registry: Registry | None = None,
        out_dir: str | Path | None = None,
        callbacks: Sequence[Callback] = (),
        resume: bool = False,
    ) -> None:
        self.registry = registry or default_registry()
        self.resolved = spec if isinstance(spec, ResolvedSpec) else self.registry.resolve(load_spec(spec))
        self.spec = self.resolved.spec
        self.spec_hash = self.spec.hash()
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.extra_callbacks = list(callbacks)
        self.resume = resume
        if resume and self.out_dir is None:
            raise ValueError("resume needs the output folder of the run to continue")

    # ------------------------------------------------------------------ setup

    def _build(self) -> None:
        spec, comps = self.spec, self.resolved.components
        self.device = pick_device(spec.device)
        self.rows = make_rows(spec)
        self.names: dict[int, str] = {}  # id of a component -> its place, name and plugin, for errors
        self.backbones: list[Backbone] = [
            self._named(c.build(self.device, where=self.resolved.path(f"backbones[{i}]")), c, f"backbones[{i}]")
            for i, c in enumerate(comps["backbones"])
        ]
        self.targets = [embed_targets(bb, spec, self.rows) for bb in self.backbones]
        perf = spec.performance
        self.encode = {}
        for bb in self.backbones:
            if perf.channels_last and isinstance(getattr(bb, "model", None), torch.nn.Module):
                bb.model.to(memory_format=torch.channels_last)
            self.encode[bb] = torch.compile(bb.encode_image, dynamic=False) if perf.compile else bb.encode_image
        self.generators = [torch.Generator().manual_seed(row.seed) for row in self.rows]
        (param,) = comps["parameterization"]
        size = spec.size_at(0)
        self.param: Parameterization = self._named(
            param.build(
                len(self.rows), (size, size), self.generators, self.device, where=self.resolved.path("parameterization")
            ),
            param,
            "parameterization",
        )
        self.augmentations: list[Augmentation] = [
            self._named(c.build(where=self.resolved.path(f"augmentations[{i}]")), c, f"augmentations[{i}]")
            for i, c in enumerate(comps["augmentations"])
        ]
        self.regularizers: list[Regularizer] = [
            self._named(c.build(where=self.resolved.path(f"regularizers[{i}]")), c, f"regularizers[{i}]")
            for i, c in enumerate(comps["regularizers"])
        ]
        self.active_regularizers = [r for r in self.regularizers if getattr(r.options, "weight", 1.0) != 0]
        self.regularizer_names: list[str] = []  # metric keys: "tv", and "tv#2" for a second tv
        for r in self.active_regularizers:
            count = sum(n.split("#")[0] == r.name for n in self.regularizer_names)
            self.regularizer_names.append(r.name if count == 0 else f"{r.name}#{count + 1}")
        self.callbacks: list[Callback] = [
            self._named(c.build(where=self.resolved.path(f"callbacks[{i}]")), c, f"callbacks[{i}]")
            for i, c in enumerate(comps["callbacks"])
        ] + self.extra_callbacks
        self.run_info = RunInfo(
            spec=spec,
            rows=self.rows,
            device=self.device,
            out_dir=self.out_dir,
            spec_hash=self.spec_hash,
            total_steps=spec.steps,
            extra={"backbones": [bb.label for bb in self.backbones]},
        )

    def _named(self, component: Any, resolved: Any, field_path: str) -> Any:
        entry = resolved.entry
        self.names[id(component)] = (
            f"{self.resolved.path(field_path)}: {entry.kind} {entry.name!r} from {entry.provider}"
        )
        return component

    def name_of(self, component: Any) -> str:
        """A component's place in the spec, name and plugin (``augmentations[1]: augmentation 'x' from
        plugin 'p' (dist 1.0)``), for errors; a callback passed in by code is named by its class."""
        names = getattr(self, "names", {})
        return names.get(id(component)) or f"{type(component).__name__} {getattr(component, 'name', '')!r}"

    @contextmanager
    def blame(self, component: Any, doing: str) -> Iterator[None]:
        """Raise what fails in the block as :class:`ComponentFailedError` naming ``component``."""
        try:
            yield
        except (ComponentFailedError, NonFiniteLossError, torch.OutOfMemoryError):
            raise
        except Exception as exc:
            raise ComponentFailedError(
                f"{self.name_of(component)} failed {doing}: {type(exc).__name__}: {exc}"
            ) from exc

    def _expect(self, component: Any, value: Any, shape: tuple[int | None, ...], what: str, when: str) -> None:
        """Refuse a component's result that is not a tensor of ``shape`` (None: any size there)."""
        ok = torch.is_tensor(value) and value.dim() == len(shape)
        ok = ok and all(want is None or got == want for got, want in zip(value.shape, shape))
        if not ok:
            got = f"shape {tuple(value.shape)}" if torch.is_tensor(value) else type(value).__name__
            want = "(" + ", ".join("*" if n is None else str(n) for n in shape) + ")"
            raise ComponentFailedError(
                f"{self.name_of(component)} returned {got} {when}; expected {what} of shape {want}"
            )

    def _checkpoint_path(self) -> Path:
        return Path(self.out_dir or ".") / "checkpoint.safetensors"

    def _check_checkpoint_facts(self, meta: dict[str, Any]) -> tuple[int, int, int]:
        """The step, image size and resize count a checkpoint records, refused (naming the file)
        unless they are ones this spec's run passes through: a step edited to 999 of 100 must not
        mark the run finished, nor one edited to another step resume other images."""
        spec, step = self.spec, meta["step"]
        if not 1 <= step < spec.steps:
            raise outputs.DamagedCheckpointError(
                self._checkpoint_path(), f"says step {step}, which a run of {spec.steps} steps never checkpoints at"
            )
        size, resizes, _ = self._schedule_at(step)
        if (meta["size"], meta["resize_count"]) != (size, resizes):
            raise outputs.DamagedCheckpointError(
                self._checkpoint_path(),
                f"says size {meta['size']} after {meta['resize_count']} resize(s) at step {step}; this spec's run "
                f"is at size {size} after {resizes} there",
            )
        return step, size, resizes

    def _schedule_at(self, step: int) -> tuple[int, int, int]:
        """The image size after ``step`` steps, the resizes up to then, and the step of the last
        one (0 if none): the loop resizes at step ``i`` when ``size_at(i)`` differs."""
        size, resizes, last = self.spec.size_at(0), 0, 0
        for entry in self.spec.resolution[1:]:
            if entry.step < step and entry.size != size:
                size, resizes, last = entry.size, resizes + 1, entry.step
        return size, resizes, last

    def _check_checkpoint_tensors(self, tensors: dict[str, torch.Tensor], step: int) -> None:
        """Refuse (naming the file) a checkpoint whose tensors are not this run's state at ``step``:
        a parameter of another shape, a missing generator, or Adam's state missing or at another
        step (a run resumed without it would silently give other images)."""
        path = self._checkpoint_path()
        o = self.spec.optimizer
        adam_step = step - (self._schedule_at(step)[2] if o.reset_on_resize else 0)
        for i, param in enumerate(self.param.parameters()):
            saved = tensors.get(f"param.{i}")
            if saved is None or tuple(saved.shape) != tuple(param.shape):
                got = "none" if saved is None else f"shape {tuple(saved.shape)}"
                raise outputs.DamagedCheckpointError(
                    path, f"holds no parameter {i} of shape {tuple(param.shape)} (found {got})"
                )
            for key in ("exp_avg", "exp_avg_sq"):
                moment = tensors.get(f"adam.{i}.{key}")
                if moment is None or tuple(moment.shape) != tuple(param.shape):
                    raise outputs.DamagedCheckpointError(
                        path,
                        f"holds no optimiser state ({key}) for parameter {i}: resuming without it gives other images",
                    )
            counted = tensors.get(f"adam.{i}.step")
            if counted is None or counted.numel() != 1 or int(counted.item()) != adam_step:
                found = "none" if counted is None else str(counted.flatten()[0].item())
                raise outputs.DamagedCheckpointError(
                    path,
                    f"holds an optimiser step count of {found} for parameter {i} where step {step} means {adam_step}",
                )
        for b, generator in enumerate(self.generators):
            saved = tensors.get(f"generator.{b}")
            if saved is None or saved.dtype != torch.uint8 or saved.shape != generator.get_state().shape:
                raise outputs.DamagedCheckpointError(path, f"holds no random generator state for image {b}")

    def _restore(self, tensors: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> None:
        """Put a checkpoint's parameters, Adam state and random generators back in place."""
        with torch.no_grad():
            for i, param in enumerate(self.param.parameters()):
                param.copy_(tensors[f"param.{i}"])
                state = {
                    k.split(".", 2)[2]: v.to(param.device) if v.dim() else v
                    for k, v in tensors.items()
                    if k.startswith(f"adam.{i}.")
                }
                if state:
                    optimizer.state[param] = state
        for b, generator in enumerate(self.generators):
            generator.set_state(tensors[f"generator.{b}"])

    def _new_optimizer(self) -> torch.optim.Optimizer:
        o = self.spec.optimizer
        return torch.optim.Adam(self.param.parameters(), lr=o.lr, betas=o.betas, eps=o.eps)

    def _carry_optimizer(self, old: torch.optim.Optimizer, old_params: list[torch.Tensor]) -> torch.optim.Optimizer:
        new = self._new_optimizer()
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

    # ------------------------------------------------------------------ the step

    def _embed_losses(self, copies: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Data term and similarity of the flat copies ``start ...`` (N,), averaged over backbones."""
        spec, perf = self.spec, self.spec.performance
        index = torch.arange(start, start + copies.shape[0], device=copies.device) // spec.copies
        loss = similarity = None
        for backbone, targets in zip(self.backbones, self.targets):
            x = copies
            if tuple(x.shape[-2:]) != tuple(backbone.input_size):
                x = F.interpolate(x, size=backbone.input_size, mode=backbone.interpolation)
            if perf.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.blame(backbone, "encoding the images"):
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=perf.precision == "bf16"):
                    features = self.encode[backbone](x)
            dim = targets.embeddings.shape[-1]
            self._expect(backbone, features, (x.shape[0], dim), "one embedding per copy", "encoding the images")
            emb = F.normalize(features.float(), dim=-1)
            d, s = copy_losses(emb, index, targets, spec.data_term)
            loss = d if loss is None else loss + d
            similarity = s if similarity is None else similarity + s
        n = len(self.backbones)
        return loss / n, similarity / n

    def step(self, optimizer: torch.optim.Optimizer, ctx: AugmentContext) -> torch.Tensor:
        """One optimisation step. Returns the step's metrics as a (M, B) tensor on the device.

        With ``performance.chunk_copies`` the copies go through the backbones in chunks, each with
        its own backward into the (detached) copies; their gradient then flows back through the
        augmentations in one pass. Same result, a fraction of the activation memory.
        """
        spec, step = self.spec, ctx.step + 1
        optimizer.zero_grad(set_to_none=True)
        batch, k = len(self.rows), spec.copies
        with self.blame(self.param, f"at step {step}"):
            images = self.param.image()
        self._expect(self.param, images, (batch, 3, None, None), "images", f"at step {step}")
        copies = images.repeat_interleave(k, dim=0)
        for aug in self.augmentations:
            with self.blame(aug, f"at step {step}"):
                copies = aug(copies, ctx)
            self._expect(aug, copies, (batch * k, 3, None, None), "copies", f"at step {step}")
        reg_values = []
        for reg in self.active_regularizers:
            with self.blame(reg, f"at step {step}"):
                reg_values.append(reg(images))
            self._expect(reg, reg_values[-1], (batch,), "one value per image", f"at step {step}")
        reg_loss = sum(
            (reg.options.weight * v for reg, v in zip(self.active_regularizers, reg_values)), images.new_zeros(batch)
        )
        n = copies.shape[0]
        chunk = spec.performance.chunk_copies or n
        if chunk >= n:
            per_copy, sim = self._embed_losses(copies, 0)
            data = per_copy.view(batch, k).mean(dim=1)
            (data + reg_loss).sum().backward()
        else:
            leaf = copies.detach().requires_grad_(True)
            parts, sims = [], []
            for start in range(0, n, chunk):
                part, s = self._embed_losses(leaf[start : start + chunk], start)
                (part.sum() / k).backward()
                parts.append(part.detach())
                sims.append(s.detach())
            per_copy, sim = torch.cat(parts), torch.cat(sims)
            data = per_copy.view(batch, k).mean(dim=1)
            if reg_loss.requires_grad:
                torch.autograd.backward([copies, reg_loss.sum()], [leaf.grad, None])
            else:
                copies.backward(leaf.grad)
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

    # ------------------------------------------------------------------ the loop

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

    def _records(self, pending: list[tuple[int, int, torch.Tensor]]) -> list[dict[str, Any]]:
        if not pending:
            return []
        values = torch.stack([m for _, _, m in pending]).cpu().tolist()
        names = self.regularizer_names
        records = []
        for (step, size, _), v in zip(pending, values):
            rec = {"step": step, "size": size, "loss": v[0], "data": v[1], "similarity": v[2]}
            rec["regularizers"] = {name: v[3 + i] for i, name in enumerate(names)}
            records.append(rec)
        return records

    def _checkpoint_tensors(self, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
        """The optimisation state a resumed run needs: parameters, Adam's moments and step counts,
        and every image's random generator."""
        tensors: dict[str, torch.Tensor] = {}
        for i, param in enumerate(self.param.parameters()):
            tensors[f"param.{i}"] = param
            for key, value in optimizer.state.get(param, {}).items():
                if torch.is_tensor(value):
                    tensors[f"adam.{i}.{key}"] = value
        for b, generator in enumerate(self.generators):
            tensors[f"generator.{b}"] = generator.get_state()
        return tensors

    def _start(self) -> tuple[Path | None, torch.optim.Optimizer, int, int, int]:
        """Claim the folder, build the components, restore a checkpoint or write the run's first
        files, and start the callbacks; on any failure (or Ctrl-C, SIGTERM) undo it all: a fresh
        run's folder goes (with the parents it made), a resumed run's is left as it was."""
        out_dir, created, spec = self.out_dir, None, self.spec
        start_step, size, resize_count = 0, spec.size_at(0), 0
        if out_dir is not None:
            created = outputs.claim_out_dir(out_dir, resume=self.resume)
        try:
            if self.resume:
                tensors, meta = outputs.read_checkpoint(out_dir, self.spec_hash)
            self._build()
            optimizer = self._new_optimizer()
            if self.resume:
                start_step, size, resize_count = self._check_checkpoint_facts(meta)
                if size != spec.size_at(0):
                    self.param.resize((size, size))
                    optimizer = self._new_optimizer()
                self._check_checkpoint_tensors(tensors, start_step)
                self._restore(tensors, optimizer)
                self.run_info.start_step = start_step
            elif out_dir is not None:
                outputs.write_run_start(out_dir, self.run_info)
            for cb in self.callbacks:
                with self.blame(cb, "at the start of the run"):
                    cb.on_run_start(self.run_info)
            if self.resume:  # once every part has started: a resume that fails to start leaves run.json as it was
                outputs.write_run_resumed(out_dir, start_step)
        except BaseException:
            if out_dir is not None:
                with outputs.signals_held():  # a second signal must not stop the clean-up half way
                    self._close_callbacks()
                    if self.resume:
                        outputs.release_out_dir(out_dir)  # the results there stay as they were
                    else:
                        outputs.abandon_out_dir(out_dir, created)
            raise
        return created, optimizer, start_step, size, resize_count

    def run(self) -> InversionResult:
        """Run the loop. With an output folder: claim it (refused if another run holds it or it is
        not empty), write a checkpoint every ``spec.checkpoint_interval()`` steps and whenever
        ``spec.checkpoint_seconds`` of wall time have passed since the last one, and at the end the
        final images and ``run.json`` saying ``finished``, ``interrupted`` (Ctrl-C, SIGTERM) or
        ``failed`` (with the error, which is raised again). A run that fails before its first step
        leaves nothing behind."""
        # Ctrl-C and SIGTERM from here to the end: the first one stops the run (during its start too: a
        # half-made folder goes), and the ones after it cannot break the save
        with outputs.StopSignals() as stop:
            return self._run(stop)

    def _run(self, stop: outputs.StopSignals) -> InversionResult:
        out_dir, spec = self.out_dir, self.spec
        created, optimizer, start_step, size, resize_count = self._start()
        start = time.perf_counter()
        metrics: list[dict[str, Any]] = []
        pending: list[tuple[int, int, torch.Tensor]] = []
        steps_done = start_step
        interrupted = False
        failure: BaseException | None = None
        every, seconds = spec.checkpoint_interval(), spec.checkpoint_seconds
        last_checkpoint = time.monotonic()

        def flush() -> None:
            records = self._records(pending)
            pending.clear()
            if records:
                metrics.extend(records)
                for cb in self.callbacks:
                    with self.blame(cb, f"on the metrics of step {records[-1]['step']}"):
                        cb.on_metrics(self.run_info, records)
                check_finite(records, self.rows)

        def current_images(final: bool = False) -> Screened:
            with torch.no_grad():
                images = self.param.image().detach().clamp(0, 1).float().cpu()
            return self.screen(images, steps_done, final)

        def result_now(images: Screened) -> InversionResult:
            return InversionResult(
                images=images.images,
                withheld=images.withheld.tolist(),
                rows=self.rows,
                metrics=metrics,
                spec=spec,
                spec_hash=self.spec_hash,
                device=str(self.device),
                steps_done=steps_done,
                interrupted=interrupted,
                seconds=time.perf_counter() - start,
                out_dir=out_dir,
            )

        tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        if self.device.type == "cuda" and spec.performance.tf32:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            for i in range(start_step, spec.steps):
                new_size = spec.size_at(i)
                if new_size != size:
                    old_params = self.param.parameters()
                    self.param.resize((new_size, new_size))
                    size = new_size
                    resize_count += 1
                    if spec.optimizer.reset_on_resize:
                        optimizer = self._new_optimizer()
                    else:
                        optimizer = self._carry_optimizer(optimizer, old_params)
                ctx = AugmentContext(self.generators, spec.copies, tuple(self.backbones[0].input_size), i, resize_count)
                pending.append((i + 1, size, self.step(optimizer, ctx)))
                steps_done = i + 1
                if steps_done % spec.log_every == 0 or steps_done == spec.steps:
                    flush()
                state = StepState(step=steps_done, size=(size, size), _images=lambda: current_images().images)
                for cb in self.callbacks:
                    with self.blame(cb, f"at the end of step {steps_done}"):
                        cb.on_step_end(self.run_info, state)
                # a checkpoint every ``every`` steps, and whenever ``seconds`` have passed since the last
                # one: it only reads the state, so the images are the same wherever checkpoints fall
                due = steps_done % every == 0 or (seconds is not None and time.monotonic() - last_checkpoint >= seconds)
                if out_dir is not None and due and steps_done < spec.steps:
                    flush()
                    with stop.held() as arrived:  # a checkpoint is written whole
                        outputs.write_checkpoint(
                            out_dir,
                            self._checkpoint_tensors(optimizer),
                            {
                                "step": steps_done,
                                "size": size,
                                "resize_count": resize_count,
                                "spec_hash": self.spec_hash,
                            },
                        )
                        outputs.write_results(out_dir, result_now(current_images()), self.run_info, "running")
                    if arrived:  # Ctrl-C or SIGTERM came during the checkpoint: stop now
                        stop.stop_now(arrived[0])
                    last_checkpoint = time.monotonic()
        except KeyboardInterrupt:
            interrupted = True
        except BaseException as exc:  # save what we have, then re-raise
            failure = exc
            interrupted = True
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32

        if failure is not None and steps_done == 0 and out_dir is not None and not self.resume:
            self._close_callbacks()
            outputs.abandon_out_dir(out_dir, created)  # nothing was optimised: leave nothing behind
            raise failure
        with stop.held():  # a second Ctrl-C must not break the save
            try:
                flush()
            except NonFiniteLossError as exc:
                failure = failure or exc
            except Exception as exc:  # a callback failed on the last records: keep the images, say so
                warnings.warn(f"the last metrics records were not delivered to every callback: {exc!r}", stacklevel=2)
            try:
                result = result_now(current_images(final=True))
                if out_dir is not None:
                    error = None if failure is None else f"{type(failure).__name__}: {failure}"
                    status = "failed" if failure is not None else None
                    outputs.write_results(out_dir, result, self.run_info, status, error)
            except Exception as exc:
                if failure is None:
                    failure = exc
                else:
                    warnings.warn(f"saving the images after the failure failed too: {exc!r}", stacklevel=2)
                result = None
                if out_dir is not None:
                    outputs.mark_failed(out_dir, f"{type(failure).__name__}: {failure}")
            for cb in self.callbacks:
                try:
                    with self.blame(cb, "at the end of the run"):
                        cb.on_run_end(self.run_info, result)
                except Exception as exc:  # every callback still ends (closes its files), and the lock goes
                    if failure is None:
                        failure = exc
                        if out_dir is not None:  # the images are whole, but the run did not end well
                            outputs.mark_failed(out_dir, f"{type(exc).__name__}: {exc}")
            if out_dir is not None:
                outputs.release_out_dir(out_dir)
        if failure is not None:
            raise failure
        return result

    def _close_callbacks(self) -> None:
        """After a failed start: callbacks that opened files close them (their folder goes)."""
        for cb in getattr(self, "callbacks", []):
            try:
                cb.on_run_end(self.run_info, None)
            except Exception:
                pass


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


def invert(
    spec: RunSpec | dict[str, Any] | str | Path,
    out_dir: str | Path | None = None,
    *,
    registry: Registry | None = None,
    callbacks: Sequence[Callback] = (),
    overrides: list[str] | None = None,
) -> InversionResult:
    """Run an inversion and return its images and metrics (the notebook entry point).

    ``spec`` may be a path to a JSON file, a dict, or a :class:`RunSpec`; it is never modified.
    Results are written to ``out_dir`` (or the spec's ``output_dir``) when one is given.
    """
    spec = load_spec(spec, overrides)
    out = out_dir if out_dir is not None else spec.output_dir
    return Engine(spec, registry=registry, out_dir=out, callbacks=callbacks).run()
