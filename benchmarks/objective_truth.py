"""The objectives against a known truth: the figures behind the truth checks of
``tests/test_objectives.py``, which import the tiny network and the measurements from here.

- a tiny image tower with a known filter (channel 0: a 4 x 4 vertical red edge, then a softplus):
  the ``neuron`` objective's image, whose receptive field should correlate with the filter (the
  preferred stimulus of a rising function of a linear filter, on [0, 1] images, is 1 where w > 0 and
  0 where w < 0: correlation 1); and the ``channel`` objective's image, whose red should change
  across columns far more than across rows;
- on the offline ``toyworld-rn``, a ``direction`` along the text embedding of one colour minus
  another's, read by the analytic judge (its dominant colour, and each colour's share of the object).

    python -m benchmarks.objective_truth [--json] [--threads N]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

import clipforge
from clipforge import Backbone, Options
from clipforge.toyworld.analytic_judge import Reading, read_images

#: the receptive field the neuron check reads: position (6, 6) of the 13 x 13 map, pixels 6..9
NEURON_POSITION = [6, 6]


class EdgeTower(torch.nn.Module):
    """A tiny image tower whose first layer has a known filter: channel 0 responds to a vertical red
    edge (dark on the left, red on the right), channel 1 to a horizontal one; a softplus follows."""

    def __init__(self) -> None:
        super().__init__()
        self.edge = torch.nn.Conv2d(3, 2, kernel_size=4, padding=0, bias=False)
        with torch.no_grad():
            self.edge.weight.zero_()
            self.edge.weight[0, 0, :, :2] = -1.0  # red, left half
            self.edge.weight[0, 0, :, 2:] = 1.0  # red, right half
            self.edge.weight[1, 0, :2, :] = -1.0
            self.edge.weight[1, 0, 2:, :] = 1.0
        self.act = torch.nn.Softplus()  # a ReLU without its dead zone: a unit that starts off still learns

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.edge(x)).mean(dim=(2, 3))


class EdgeModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.visual = EdgeTower()


class EdgeBackbone(Backbone):
    name = "edge_net"
    input_size = (16, 16)

    def __init__(self, options: Options, device: torch.device) -> None:
        super().__init__(options, device)
        self.model = EdgeModel()

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.visual(pixels)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return torch.ones(len(texts), 2)


class _EdgePlugin:
    @staticmethod
    @clipforge.hookimpl
    def register_backbones(register):
        register(EdgeBackbone)


def edge_registry() -> clipforge.Registry:
    """The installed plugins and the edge network, as the backbone ``edge_net``."""
    return clipforge.build_registry(extra_plugins=[("edge_net", _EdgePlugin)])


def edge_spec(prompts: list, seeds: list[int], steps: int, **more: Any) -> dict[str, Any]:
    """A run of ``prompts`` on the edge network: no augmentations, no regularisers, one copy, 16 px."""
    return {
        "prompts": prompts,
        "seeds": seeds,
        "backbones": ["edge_net"],
        "augmentations": [],
        "regularizers": [],
        "copies": 1,
        "steps": steps,
        "resolution": [{"step": 0, "size": 16}],
        "device": "cpu",
        "callbacks": [],
        **more,
    }


def edge_images(objective: dict[str, Any], registry: clipforge.Registry | None = None, steps: int = 60) -> torch.Tensor:
    """Two seeds of ``objective`` on the edge network: no augmentations, no regularisers, 16 px."""
    spec = edge_spec([{"objectives": [objective]}], [0, 1], steps)
    return clipforge.invert(spec, registry=registry or edge_registry()).images


def neuron_correlations(images: torch.Tensor) -> list[float]:
    """Per image, the correlation of its red receptive field at ``NEURON_POSITION`` with channel 0's filter."""
    weight = EdgeTower().edge.weight[0, 0].detach()
    y, x = NEURON_POSITION
    patches = [image[0, y : y + 4, x : x + 4] for image in images]
    return [float(torch.corrcoef(torch.stack([p.flatten(), weight.flatten()]))[0, 1]) for p in patches]


def edge_ratio(images: torch.Tensor) -> float:
    """How much more the images' red changes across columns than across rows (vertical edges)."""
    red = images[:, 0]
    across_columns = (red[:, :, 1:] - red[:, :, :-1]).abs().mean()
    across_rows = (red[:, 1:, :] - red[:, :-1, :]).abs().mean()
    return float(across_columns / across_rows)


def direction_readings(first: str, second: str) -> list[Reading]:
    """Three seeds of the text embedding of ``first`` minus ``second``'s on ``toyworld-rn``, read by the
    analytic judge."""
    spec = {
        "objectives": [{"name": "direction", "options": {"text": first, "minus": second}}],
        "seeds": [0, 1, 2],
        "backbones": [{"name": "open_clip", "options": {"model": "toyworld-rn"}}],
        "regularizers": [{"name": "tv", "options": {"weight": 0.02}}],
        "steps": 100,
        "resolution": [{"step": 0, "size": 32}, {"step": 50, "size": 64}],
        "device": "cpu",
        "callbacks": [],
    }
    return read_images(clipforge.invert(spec).images)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    neuron = {"name": "neuron", "options": {"layer": "act", "channel": 0, "position": NEURON_POSITION}}
    out: dict[str, Any] = {
        "neuron_correlations": [round(r, 4) for r in neuron_correlations(edge_images(neuron))],
        "channel_edge_ratio": round(
            edge_ratio(edge_images({"name": "channel", "options": {"layer": "act", "channel": 0}})), 2
        ),
        "directions": {},
    }
    for first, second in (("red", "blue"), ("blue", "red")):
        readings = direction_readings(first, second)
        out["directions"][f"{first} - {second}"] = [
            {
                "colour": r.colour,
                first: round(r.colour_shares.get(first, 0), 3),
                second: round(r.colour_shares.get(second, 0), 3),
            }
            for r in readings
        ]
    print(json.dumps(out, indent=None if args.json else 2))
    return out


if __name__ == "__main__":
    main()
