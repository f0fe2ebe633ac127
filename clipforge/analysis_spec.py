"""The fields every analysis spec has: an analysis's ``Options`` subclasses :class:`AnalysisSpec`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field, field_validator

from clipforge.errors import SpecError
from clipforge.spec import ComponentRef, OutputFolder, RunSpec, parse_spec
from clipforge.specbase import Seeds, StrictModel, seed_list


class AnalysisSpec(StrictModel):
    """Fields every analysis spec has (an analysis's ``Options``). ``run`` holds inversion settings
    (any run-spec field but ``prompts`` and ``seeds``, which the analysis fills in)."""

    run: dict[str, Any] = Field(default_factory=dict, description="Inversion settings, as in a run spec.")
    seeds: Seeds = Field(4, description="Seeds per prompt: a count (0..N-1) or a list.")
    judge: ComponentRef = Field(description="The held-out backbone that judges the inversions.")
    output_dir: OutputFolder = Field(None, description="Where the report goes, unless --out says otherwise.")

    @field_validator("run")
    @classmethod
    def _no_prompts(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in ("prompts", "seeds"):
            if key in value:
                raise ValueError(f"'run' must not set {key!r}: the analysis sets it")
        return value

    def seed_list(self) -> list[int]:
        return seed_list(self.seeds)

    def judge_follows_the_run(self) -> bool:
        """Whether the judge was left to default to one of the inverted backbones: then a problem of that
        backbone is reported once, where it is written, and not again as the judge's."""
        return False

    def run_spec(
        self, prompts: Sequence[Any], backbones: list[dict[str, Any]] | None = None, where: str = "run"
    ) -> RunSpec:
        """The run spec of ``prompts`` over this spec's seeds; errors name their path under ``where``."""
        data = {**self.run, "prompts": list(prompts), "seeds": self.seed_list(), "callbacks": []}
        if backbones is not None:
            data["backbones"] = backbones
        try:
            return parse_spec(data)
        except SpecError as exc:
            raise exc.within(prefix=where) from None

    def inversion_specs(self) -> dict[str, RunSpec]:
        """The run specs this analysis inverts, by the spec path that configures them (``run`` for
        the ``prompts`` field; an analysis with several runs overrides this)."""
        return {"run": self.run_spec(self.prompts)}
