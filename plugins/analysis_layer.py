"""``clipforge layer``: every channel of a layer at once (feature visualisation, batched).

Each channel of a named layer of the image tower gets an image that maximises it (the ``channel``
objective: its mean over positions; or ``neuron``: its value at the centre position). Channels are
optimised ``batch`` at a time in one run, each channel one prompt of that run: every image has its
own generator, loss and gradient clipping, so a channel's image does not depend on which channels
share its batch (up to the order of float sums), and a layer of 128 channels costs a few runs
instead of 128.

The report gives, per channel, its number, its image and its final activation, measured afresh by
running the backbone on the saved image (the clamped pixels as the PNG holds them, 8 bits per
channel, resized to the backbone's input like the run's ``resize``) with ``clipforge.captured``
hooks: not the loss of the last step, which saw augmented copies. Beside it, the channel's
activation on a plain gray image, for scale. A contact sheet shows every channel labelled with its
number. When the run says which images collapsed to a flat image (``InversionResult.flat``), each
channel says so (``flat``: any of its seeds did), and when it kept transparency (attribution) maps,
each channel's is saved beside its image (``channels/channel_NNNN.attribution.png``). The gallery
(``clipforge gallery DIR``) shows a card per channel from ``report.json``.

An unknown layer, a channel out of range and a backbone without a torch model are refused before
anything runs: the spec's check (``clipforge layer SPEC --check`` too) builds the backbone on the
CPU and reads the layer's shape (``clipforge.layer_shape``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator
from rich.table import Table

import clipforge
from clipforge import (
    API_VERSION,
    Analysis,
    AnalysisRun,
    AnalysisSpec,
    Backbone,
    ComponentRef,
    LayerError,
    PluginError,
    RunSpec,
    SpecError,
    captured,
    channel_count,
    channel_maps,
    hookimpl,
    image_tower,
    layer_shape,
    save_png,
    to_display,
)
from clipforge.analysis import markdown_table, write_grid

CLIPFORGE_API = API_VERSION  # a built-in is written against the API of the clipforge it comes with

#: an analysis spec's seeds (a count or a list, checked as every analysis checks them), here one by default
_SEEDS = AnalysisSpec.model_fields["seeds"]
Seeds = Annotated[(_SEEDS.annotation, *_SEEDS.metadata)]

#: the most channels the contact sheet puts on one row
SHEET_COLUMNS = 16


class LayerSpec(AnalysisSpec):
    """Visualise the channels of one layer of the image tower of ``run.backbones[backbone]``.

    ``judge`` is optional here, unlike in the other analyses: what a feature visualisation is judged
    by is the unit it visualises, so the final images are measured on the inverted backbone itself,
    and ``judge`` defaults to it (``run.backbones[backbone]``). Name another model with the same layer
    (another seed of the architecture, say) to measure whether the features carry over to it.
    """

    layer: str = Field(min_length=1, description="A layer of the image tower, as `clipforge layers MODEL` names it.")
    channels: list[int] | None = Field(
        None, min_length=1, description="The channels to visualise (default: every channel of the layer)."
    )
    objective: Literal["channel", "neuron"] = Field(
        "channel", description="'channel': its mean over positions; 'neuron': its value at the centre position."
    )
    batch: int = Field(32, ge=1, le=4096, description="Channels optimised together in one run.")
    backbone: int = Field(0, ge=0, description="Which of the run's backbones the layer belongs to.")
    seeds: Seeds = Field(1, description="Seeds per channel: a count (0..N-1) or a list.")
    judge: ComponentRef | None = Field(
        None,
        description="The backbone the final images are measured on (default: the inverted one, "
        "run.backbones[backbone]).",
    )

    _probe: dict[str, Any] | None = PrivateAttr(None)
    _judge_given: bool = PrivateAttr(True)  # False: the judge is the inverted backbone, by default

    def judge_follows_the_run(self) -> bool:
        return not self._judge_given

    @field_validator("run")
    @classmethod
    def _no_objectives(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "objectives" in value:
            raise ValueError("'run' must not set 'objectives': each image's objective is its channel's")
        return value

    @model_validator(mode="after")
    def _judge_is_the_inverted_backbone(self) -> LayerSpec:
        if self.judge is None:
            self._judge_given = False
            ref = self.backbone_ref()
            if ref is not None:
                self.judge = ref
        return self

    def backbone_ref(self) -> ComponentRef | None:
        """The reference of the backbone whose layer is visualised, as ``run`` gives it (None when
        ``run`` names no such backbone: its check says why)."""
        given = self.run.get("backbones")
        if given is None:
            items = RunSpec.model_fields["backbones"].default_factory()  # type: ignore[misc]
        else:
            items = [given] if isinstance(given, (dict, str)) else given
        if not isinstance(items, list) or not 0 <= self.backbone < len(items):
            return None
        try:
            return ComponentRef.model_validate(items[self.backbone])
        except ValidationError:
            return None

    # ------------------------------------------------------------------ checking the layer

    def probe(self, registry: Any = None) -> dict[str, Any]:
        """Check the run, the layer and the channels before anything runs: the backbone is built on
        the CPU (from ``registry``, the command's, which :meth:`LayerAnalysis.check` hands over; the
        installed plugins without one) and the layer's shape read. Returns the layer's shape and the
        channels to visualise; raises :class:`SpecError` naming the spec path."""
        if self._probe is not None:
            return self._probe
        base = self.run_spec([{"text": "probe"}])
        count = len(base.backbones)
        if self.backbone >= count:
            raise SpecError([("backbone", f"is {self.backbone}, but the run has {count} backbone(s)")])
        registry = registry or clipforge.default_registry()
        resolved = registry.resolve(base, "run")
        where = f"run.backbones[{self.backbone}]"
        model = _build(resolved.components["backbones"][self.backbone], where)
        shape = _shape(model, self.layer, "layer", f"{where} ({model.label})")
        n = channel_count(shape)
        channels = list(range(n)) if self.channels is None else list(self.channels)
        problems = []
        seen: set[int] = set()
        for i, c in enumerate(channels):
            if not 0 <= c < n:
                problems.append(
                    (
                        f"channels[{i}]",
                        f"channel {c} is out of range: layer {self.layer!r} of {model.label} has {n} channels "
                        f"(0 to {n - 1}; its output per image is {shape})",
                    )
                )
            elif c in seen:
                problems.append((f"channels[{i}]", f"channel {c} is given twice"))
            seen.add(c)
        if self.objective == "neuron" and len(shape) < 2:
            problems.append(
                ("objective", f"layer {self.layer!r} has no positions (its output per image is {shape}); use 'channel'")
            )
        if problems:
            raise SpecError(problems)
        judge = self.judge.model_dump() if self.judge is not None else None
        if judge is not None and judge != ComponentRef.model_validate(base.backbones[self.backbone]).model_dump():
            other = _build(registry.resolve_component("backbone", self.judge, "judge"), "judge")
            judged = _shape(other, self.layer, "judge", f"the judge ({other.label})")
            if channel_count(judged) != n:
                raise SpecError(
                    [("judge", f"layer {self.layer!r} of {other.label} has {channel_count(judged)} channels, not {n}")]
                )
        self._probe = {"shape": list(shape), "channels": channels, "layer_channels": n, "label": model.label}
        return self._probe

    def batches(self) -> list[list[int]]:
        channels = self.probe()["channels"]
        return [channels[i : i + self.batch] for i in range(0, len(channels), self.batch)]

    def prompt(self, channel: int) -> dict[str, Any]:
        options = {"layer": self.layer, "channel": channel, "backbone": self.backbone}
        return {"objectives": [{"name": self.objective, "options": options}], "label": f"channel {channel}"}

    def inversion_specs(self) -> dict[str, RunSpec]:
        batches = self.batches()
        return {
            batch_key(i, len(batches), chunk): self.run_spec([self.prompt(c) for c in chunk])
            for i, chunk in enumerate(batches)
        }


def batch_key(index: int, count: int, chunk: list[int]) -> str:
    """The name of one batch's run, as errors and ``AnalysisRun.results`` give it."""
    return "run" if count == 1 else f"run (batch {index + 1} of {count}: channels {chunk[0]}..{chunk[-1]})"


def _build(resolved: Any, where: str) -> Backbone:
    try:
        return resolved.build(torch.device("cpu"), where=where)
    except PluginError as exc:
        raise SpecError([(where, f"could not be built to check the layer: {exc}")]) from None


def _shape(backbone: Backbone, layer: str, where: str, who: str) -> tuple[int, ...]:
    try:
        return layer_shape(backbone, layer)
    except LayerError as exc:
        raise SpecError([(where, f"{exc} [{who}]")]) from None


def channel_values(activations: torch.Tensor, objective: str) -> torch.Tensor:
    """(N, C): every channel's value per image, as the objective reads it: the mean over positions
    ('channel') or the value at the centre of a map, or the first token ('neuron')."""
    act, maps = activations, channel_maps(activations)
    if objective == "channel":
        return maps.mean(dim=-1)
    index = (act.shape[2] // 2) * act.shape[3] + act.shape[3] // 2 if act.dim() == 4 else 0
    return maps[:, :, index]


def as_saved(images: torch.Tensor) -> torch.Tensor:
    """The images as their PNGs hold them: clamped, 8 bits per channel."""
    return (to_display(images, "clamp") * 255).round() / 255


def measure(backbone: Backbone, layer: str, images: torch.Tensor, objective: str, batch: int) -> torch.Tensor:
    """(N, C): every channel of ``layer`` on each image, resized to the backbone's input as the
    run's ``resize`` does, read with hooks."""
    tower = image_tower(backbone)
    out = []
    for start in range(0, images.shape[0], batch):
        pixels = images[start : start + batch].to(backbone.device)
        if tuple(pixels.shape[-2:]) != tuple(backbone.input_size):
            pixels = F.interpolate(pixels, size=tuple(backbone.input_size), mode=backbone.interpolation)
        with torch.no_grad(), captured(tower, [layer]) as seen:
            backbone.encode_image(pixels)
        out.append(channel_values(seen[layer], objective).cpu())
    return torch.cat(out)


def contact_sheet(images: torch.Tensor, labels: list[str], columns: int, cell: int = 64) -> torch.Tensor:
    """Images (N, 3, H, W) in a grid, each scaled to ``cell`` pixels (nearest) with its label below."""
    font = ImageFont.load_default()
    strip, pad = 12, 2
    rows = math.ceil(len(labels) / columns)
    sheet = Image.new("RGB", (pad + columns * (cell + pad), pad + rows * (cell + strip + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    scaled = F.interpolate(to_display(images, "clamp"), size=(cell, cell), mode="nearest")
    for i, label in enumerate(labels):
        r, c = divmod(i, columns)
        left, top = pad + c * (cell + pad), pad + r * (cell + strip + pad)
        pixels = (scaled[i] * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        sheet.paste(Image.fromarray(pixels), (left, top))
        width = draw.textlength(label, font=font)
        draw.text((left + (cell - width) / 2, top + cell), label, fill="black", font=font)
    data = torch.frombuffer(bytearray(sheet.tobytes()), dtype=torch.uint8).view(sheet.height, sheet.width, 3)
    return data.permute(2, 0, 1).float() / 255


class LayerAnalysis(Analysis):
    name = "layer"
    description = "feature visualisation of every channel of a layer, batched: images and final activations"
    Options = LayerSpec

    def check(self, registry: Any) -> None:
        """The layer and channels, checked on a backbone built from the command's registry."""
        self.options.probe(registry)

    def progress_label(self) -> str:
        probe = self.options.probe()
        return f"layer {self.options.layer}: {len(probe['channels'])} channel(s)"

    def analyse(self, run: AnalysisRun) -> dict[str, Any]:
        spec = self.options
        probe = spec.probe()
        seeds = spec.seed_list()
        images, where = [], []  # every image, channel by channel, each channel's seeds in order
        by_channel: dict[int, list[tuple[int, torch.Tensor, bool | None, torch.Tensor | None]]] = {}
        for chunk, result in zip(spec.batches(), run.results.values(), strict=True):  # in inversion_specs' order
            flat, maps = flat_flags(result), attribution_maps(result)
            for row in result.rows:
                found = (flat[row.index] if flat else None, maps[row.index] if maps is not None else None)
                by_channel.setdefault(chunk[row.prompt_index], []).append((row.seed, result.images[row.index], *found))
        self.images: dict[int, torch.Tensor] = {}
        self.attribution: dict[int, torch.Tensor] = {}
        flat_seeds: dict[tuple[int, int], bool] = {}
        for channel in probe["channels"]:
            ordered = sorted(by_channel[channel], key=lambda found: seeds.index(found[0]))
            self.images[channel] = torch.stack([found[1] for found in ordered])
            if all(found[3] is not None for found in ordered):
                self.attribution[channel] = torch.stack([found[3] for found in ordered])
            flat_seeds |= {(channel, found[0]): found[2] for found in ordered if found[2] is not None}
            images += [found[1] for found in ordered]
            where += [(channel, found[0]) for found in ordered]
        saved = as_saved(torch.stack(images))
        values = measure(run.judge, spec.layer, saved, spec.objective, spec.batch)
        gray = torch.full((1, 3, *run.judge.input_size), 0.5)
        baseline = measure(run.judge, spec.layer, gray, spec.objective, 1)[0]
        measured: dict[int, list[dict[str, Any]]] = {}
        for i, (channel, seed) in enumerate(where):
            entry = {"seed": seed, "activation": float(values[i, channel])}
            if (channel, seed) in flat_seeds:
                entry["flat"] = flat_seeds[channel, seed]
            measured.setdefault(channel, []).append(entry)
        entries = []
        for channel in sorted(probe["channels"]):
            per_seed = measured[channel]
            entry = {
                "channel": channel,
                "image": channel_image(channel),
                "activation": sum(s["activation"] for s in per_seed) / len(per_seed),
                "gray": float(baseline[channel]),
                "seeds": per_seed,
            }
            if all("flat" in s for s in per_seed):  # the run said, for every seed: collapsed to a flat image?
                entry["flat"] = any(s["flat"] for s in per_seed)
            if channel in self.attribution:
                entry["attribution"] = channel_image(channel, ATTRIBUTION)
            entries.append(entry)
        first = next(iter(run.results.values()))
        return {
            "layer": spec.layer,
            "backbone": ComponentRef.model_validate(first.spec.backbones[spec.backbone]).model_dump(),
            "model": probe["label"],
            "measured_on": run.judge.label,
            "judge": spec.judge.model_dump() if spec.judge is not None else None,
            "objective": spec.objective,
            "shape": probe["shape"],
            "layer_channels": probe["layer_channels"],
            "batch": spec.batch,
            "runs": len(run.results),
            "steps": first.spec.steps,
            "seeds": seeds,
            "spec_hashes": [r.spec_hash for r in run.results.values()],
            "sheet": "sheet.png",
            "channels": entries,
        }

    def write_report(self, report: dict[str, Any], run: AnalysisRun, out: Path) -> None:
        spec, entries = self.options, report["channels"]
        seeds = report["seeds"]
        (out / "channels").mkdir(exist_ok=True)
        for entry in entries:
            write_grid(out / entry["image"], as_saved(self.images[entry["channel"]]), len(seeds))
            if "attribution" in entry:
                write_grid(out / entry["attribution"], self.attribution[entry["channel"]], len(seeds))
        cells = torch.cat([self.images[e["channel"]] for e in entries])
        labels = [str(e["channel"]) if len(seeds) == 1 else f"{e['channel']} s{s}" for e in entries for s in seeds]
        columns = len(seeds) * max(1, SHEET_COLUMNS // len(seeds)) if len(seeds) > 1 else SHEET_COLUMNS
        save_png(contact_sheet(as_saved(cells), labels, min(columns, len(labels))), out / report["sheet"])
        what = "mean over positions" if spec.objective == "channel" else "value at the centre position"
        model = report["model"]
        md = [
            f"# Layer {spec.layer} of {model}: {len(entries)} of {report['layer_channels']} channels",
            "",
            f"Objective `{spec.objective}` ({what}); {report['steps']} steps, {len(seeds)} seed(s) per channel, "
            f"{report['batch']} channels per run ({report['runs']} run(s)). The activation is measured on the saved "
            "image (clamped, 8 bits) by the backbone "
            f"{report['measured_on']}; 'gray' is the channel's activation on a plain gray image.",
            "",
            *((flat_note(entries), "") if any("flat" in e for e in entries) else ()),
            "## Contact sheet",
            "",
            "Every channel, labelled with its number" + (" and seed." if len(seeds) > 1 else "."),
            "",
            f"![contact sheet]({report['sheet']})",
            "",
            "## Channels",
            "",
            markdown_table(
                ["channel", "activation", "gray", "image"],
                [[e["channel"], e["activation"], e["gray"], e["image"]] for e in entries],
            ),
            "",
        ]
        for e in entries:
            per_seed = ", ".join(f"seed {s['seed']}: {s['activation']:.3f}" for s in e["seeds"])
            md += [
                f"## channel {e['channel']}",
                "",
                f"activation {e['activation']:.3f} (gray {e['gray']:.3f})"
                + (f"; {per_seed}" if len(seeds) > 1 else "")
                + ("; flat (collapsed)" if e.get("flat") else ""),
                "",
                f"![channel {e['channel']}]({e['image']})",
                "",
            ]
        (out / "report.md").write_text("\n".join(md), encoding="utf-8")

    def table(self, report: dict[str, Any]) -> Table:
        table = Table(title=f"layer {report['layer']}: {report['objective']} activations")
        for column in ("channel", "activation", "gray", "image"):
            table.add_column(column, justify="right" if column != "image" else "left")
        flat = any("flat" in e for e in report["channels"])
        if flat:
            table.add_column("flat")
        for e in report["channels"]:
            cells = [str(e["channel"]), f"{e['activation']:.3f}", f"{e['gray']:.3f}", e["image"]]
            table.add_row(*cells, *(["flat" if e.get("flat") else ""] if flat else []))
        return table


#: how a channel's transparency (attribution) map is named beside its image
ATTRIBUTION = ".attribution.png"


def channel_image(channel: int, suffix: str = ".png") -> str:
    """Where a channel's image goes in the report folder (its seeds side by side); with ``suffix``
    ``.attribution.png``, its transparency map beside it."""
    return f"channels/channel_{channel:04d}{suffix}"


def flat_flags(result: Any) -> list[bool] | None:
    """Which of a run's images collapsed to a flat image (``InversionResult.flat``, by row index), or
    None when the run does not say."""
    flat = getattr(result, "flat", None)
    if not isinstance(flat, list | tuple) or len(flat) != len(result.images):
        return None
    return [bool(f) for f in flat]


def attribution_maps(result: Any) -> torch.Tensor | None:
    """A run's transparency (attribution) maps as gray images (N, 3, H, W), each scaled by its own
    largest value as the run's ``images/<row>.attribution.png`` are, when the run kept them
    (``InversionResult.attribution``, (N, H, W): where the spec asks, ``output.attribution``); else None."""
    maps = getattr(result, "attribution", None)
    if not isinstance(maps, torch.Tensor) or len(maps) != len(result.images):
        return None
    maps = maps.detach().float().cpu()
    maps = maps.unsqueeze(1) if maps.dim() == 3 else maps
    if maps.dim() != 4 or maps.shape[1] not in (1, 3):
        return None
    maps = maps.abs().expand(-1, 3, -1, -1)
    peak = maps.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return (maps / peak).clamp(0, 1)


def flat_note(entries: list[dict[str, Any]]) -> str:
    """The report's line naming the channels whose image collapsed to a flat image."""
    flat = [str(e["channel"]) for e in entries if e.get("flat")]
    return f"Flat (collapsed) images: channel(s) {', '.join(flat)}." if flat else "No channel's image collapsed."


@hookimpl
def register_analyses(register):
    register(LayerAnalysis)
