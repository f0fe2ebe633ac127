"""The checkpoint's format, in one place: ``checkpoint.safetensors`` in a run's folder, written
whole (:func:`write_checkpoint`) and read back refused, naming the file, when it is not this run's
(:func:`read_checkpoint`, :func:`check_facts`, :func:`check_state`).

    tensors   param.<i>            the parameterisation's i-th parameter
              adam.<i>.<key>       Adam's state of parameter i (exp_avg, exp_avg_sq, step)
              generator.<b>        image b's random generator state (uint8)
              attribution          the attribution maps summed so far (B, size, size), where the spec asks
    metadata  clipforge            JSON: {"step", "size", "resize_count", "spec_hash"}

:class:`clipforge.outputs.RunFolder` writes and reads it; the engine makes (:func:`state_tensors`),
checks (:func:`check_state`) and restores (:func:`restore_state`) the state it holds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from clipforge.files import atomic_path, readable_like_the_rest

CHECKPOINT = "checkpoint.safetensors"
FACTS = ("step", "size", "resize_count")


class NothingToResumeError(FileNotFoundError):
    """``--resume`` was given a folder that holds no run to continue."""


class DamagedCheckpointError(NothingToResumeError):
    """A checkpoint that cannot be read, or does not hold what this run's state needs."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"checkpoint {str(path)!r} {why}; it cannot be resumed from (start the run again)")


def printable_error(exc: BaseException) -> str:
    """An exception's first line, cut short, with its type when it says nothing."""
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def write_checkpoint(out_dir: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """The optimisation state (``checkpoint.safetensors``, its facts as JSON in the metadata), in
    one atomic write: a kill leaves the previous checkpoint or this one, never half of one."""
    with atomic_path(out_dir / CHECKPOINT) as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
            str(tmp),
            metadata={"clipforge": json.dumps(meta)},
        )
        readable_like_the_rest(tmp)


def read_checkpoint(out_dir: Path, spec_hash: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and facts of ``checkpoint.safetensors``; refused when it belongs to another spec,
    and, naming it, when it is not a whole safetensors file with clipforge's facts."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = out_dir / CHECKPOINT
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
        tensors = load_file(str(path))
    except Exception as exc:  # truncated, garbage: safetensors' own errors name no file; said, with its type
        raise DamagedCheckpointError(path, f"is not a readable safetensors file ({printable_error(exc)})") from None
    try:
        meta = json.loads((metadata or {})["clipforge"])
    except (KeyError, TypeError, ValueError):
        raise DamagedCheckpointError(path, "has no clipforge facts (step, size, spec hash) in its metadata") from None
    if not isinstance(meta, dict):
        raise DamagedCheckpointError(path, "has no clipforge facts (step, size, spec hash) in its metadata")
    if meta.get("spec_hash") != spec_hash:
        raise NothingToResumeError(
            f"{str(path)!r} was written by a run of another spec (hash {meta.get('spec_hash')}, not {spec_hash}); "
            "was spec.json edited?"
        )
    for key in FACTS:
        if not isinstance(meta.get(key), int) or isinstance(meta.get(key), bool):
            raise DamagedCheckpointError(path, f"has no whole number {key!r} in its facts")
    return tensors, meta


def schedule_at(spec: Any, step: int) -> tuple[int, int, int]:
    """The image size after ``step`` steps of ``spec`` (a RunSpec), the resizes up to then, and the
    step of the last one (0 if none): the loop resizes at step ``i`` when ``size_at(i)`` differs."""
    size, resizes, last = spec.size_at(0), 0, 0
    for entry in spec.resolution[1:]:
        if entry.step < step and entry.size != size:
            size, resizes, last = entry.size, resizes + 1, entry.step
    return size, resizes, last


def check_facts(spec: Any, meta: dict[str, Any], path: Path) -> tuple[int, int, int]:
    """The step, image size and resize count a checkpoint records, refused (naming the file)
    unless they are ones this spec's run passes through: a step edited to 999 of 100 must not
    mark the run finished, nor one edited to another step resume other images."""
    step = meta["step"]
    if not 1 <= step < spec.steps:
        raise DamagedCheckpointError(path, f"says step {step}, which a run of {spec.steps} steps never checkpoints at")
    size, resizes, _ = schedule_at(spec, step)
    if (meta["size"], meta["resize_count"]) != (size, resizes):
        raise DamagedCheckpointError(
            path,
            f"says size {meta['size']} after {meta['resize_count']} resize(s) at step {step}; this spec's run "
            f"is at size {size} after {resizes} there",
        )
    return step, size, resizes


def state_tensors(
    params: Sequence[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    generators: Sequence[torch.Generator],
    attribution: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The optimisation state a resumed run needs: parameters, Adam's moments and step counts,
    every image's random generator, and the attribution maps summed so far (when the spec asks
    for them: a resumed run goes on adding to them)."""
    tensors: dict[str, torch.Tensor] = {}
    if attribution is not None:
        tensors["attribution"] = attribution
    for i, param in enumerate(params):
        tensors[f"param.{i}"] = param
        for key, value in optimizer.state.get(param, {}).items():
            if torch.is_tensor(value):
                tensors[f"adam.{i}.{key}"] = value
    for b, generator in enumerate(generators):
        tensors[f"generator.{b}"] = generator.get_state()
    return tensors


def check_state(
    tensors: dict[str, torch.Tensor],
    params: Sequence[torch.Tensor],
    generators: Sequence[torch.Generator],
    step: int,
    adam_step: int,
    path: Path,
    attribution: torch.Tensor | None = None,
) -> None:
    """Refuse (naming the file at ``path``) a checkpoint whose tensors are not this run's state at
    ``step``: a parameter of another shape, a missing generator, or Adam's state missing or at
    another step than ``adam_step`` (a run resumed without it would silently give other images);
    and, where the spec asks for attribution maps (``attribution``: the run's, zero so far), a
    missing or misshapen sum of them."""
    if attribution is not None:
        saved = tensors.get("attribution")
        if saved is None or tuple(saved.shape) != tuple(attribution.shape):
            got = "none" if saved is None else f"shape {tuple(saved.shape)}"
            shape = tuple(attribution.shape)
            raise DamagedCheckpointError(path, f"holds no attribution maps of shape {shape} (found {got})")
    for i, param in enumerate(params):
        saved = tensors.get(f"param.{i}")
        if saved is None or tuple(saved.shape) != tuple(param.shape):
            got = "none" if saved is None else f"shape {tuple(saved.shape)}"
            raise DamagedCheckpointError(path, f"holds no parameter {i} of shape {tuple(param.shape)} (found {got})")
        for key in ("exp_avg", "exp_avg_sq"):
            moment = tensors.get(f"adam.{i}.{key}")
            if moment is None or tuple(moment.shape) != tuple(param.shape):
                raise DamagedCheckpointError(
                    path, f"holds no optimiser state ({key}) for parameter {i}: resuming without it gives other images"
                )
        counted = tensors.get(f"adam.{i}.step")
        if counted is None or counted.numel() != 1 or int(counted.item()) != adam_step:
            found = "none" if counted is None else str(counted.flatten()[0].item())
            raise DamagedCheckpointError(
                path, f"holds an optimiser step count of {found} for parameter {i} where step {step} means {adam_step}"
            )
    for b, generator in enumerate(generators):
        saved = tensors.get(f"generator.{b}")
        if saved is None or saved.dtype != torch.uint8 or saved.shape != generator.get_state().shape:
            raise DamagedCheckpointError(path, f"holds no random generator state for image {b}")


def restore_state(
    tensors: dict[str, torch.Tensor],
    params: Sequence[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    generators: Sequence[torch.Generator],
    attribution: torch.Tensor | None = None,
) -> None:
    """Put a checkpoint's parameters, Adam state, random generators and (into ``attribution``)
    attribution maps back in place."""
    with torch.no_grad():
        if attribution is not None:
            attribution.copy_(tensors["attribution"])
        for i, param in enumerate(params):
            param.copy_(tensors[f"param.{i}"])
            state = {
                k.split(".", 2)[2]: v.to(param.device) if v.dim() else v
                for k, v in tensors.items()
                if k.startswith(f"adam.{i}.")
            }
            if state:
                optimizer.state[param] = state
    for b, generator in enumerate(generators):
        generator.set_state(tensors[f"generator.{b}"])
