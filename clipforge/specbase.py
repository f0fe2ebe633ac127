"""What every spec model shares (run, analysis and sweep specs, and components' options): strict
validation, the limits a spec may ask for, and seeds.

Imports nothing heavy: the CLI checks specs before torch is imported.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

#: the largest values a spec may ask for (documented in the README): beyond them a run cannot fit
#: in memory or time on any machine clipforge is meant for, and is refused before anything starts
LIMITS = {"steps": 1_000_000, "copies": 1024, "size": 4096, "prompts": 100_000, "seeds": 10_000, "images": 100_000}


#: the largest seed: torch's CPU generator (a Mersenne twister) keeps the low 32 bits of the seed it
#: is given, so 0 and 2**32 (or -1 and 2**64 - 1) would give one stream under two labels; every seed
#: from 0 to SEED_MAX gives its own
SEED_MAX = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


def check_seed_values(value: Any) -> Any:
    """A list of seeds with one that no generator takes, refused naming its place (before pydantic
    tries the field's other types and reports both)."""
    if isinstance(value, list):
        for i, seed in enumerate(value):
            if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed <= SEED_MAX:
                raise ValueError(
                    f"seeds[{i}] is {seed}: a seed is a whole number from 0 to 2**32 - 1 (the generator keeps 32 "
                    "bits of a seed, so one outside that range would give another seed's image under its own label)"
                )
    return value


def _bool_for_number(value: Any, annotation: Any) -> bool:
    """Is ``value`` (or an item of it) JSON's true/false where ``annotation`` wants a number? Python
    counts ``True`` as 1, so without this ``"steps": true`` would mean one step."""
    if annotation is bool or annotation is Any:
        return False
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:  # a constrained number (``Seed``): the number underneath
        return _bool_for_number(value, args[0])
    if origin in (typing.Union, types.UnionType):
        return bool not in args and any(_bool_for_number(value, a) for a in args)
    if isinstance(value, bool):
        return annotation in (int, float)
    if isinstance(value, (list, tuple)) and origin in (list, tuple) and args:
        items = args if origin is tuple and Ellipsis not in args and len(args) == len(value) else [args[0]] * len(value)
        return any(_bool_for_number(v, a) for v, a in zip(value, items))
    if isinstance(value, dict) and origin is dict and len(args) == 2:
        return any(_bool_for_number(v, args[1]) for v in value.values())
    return False


class StrictModel(BaseModel):
    """Base of every spec model: unknown keys, NaN and infinities are errors, and so is JSON's
    true/false where a number is expected."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _bool_for_number(value, field.annotation):
            raise PydanticCustomError("number_type", "a number is expected here, not true or false")
        return value


def check_seed_count(value: int | list[int], unique: bool = False) -> int | list[int]:
    """Seeds per prompt, as a count (0..N-1) or a list: between 1 and ``LIMITS["seeds"]`` of them;
    with ``unique``, a list names each seed once (and the message says which form was given)."""
    count = value if isinstance(value, int) else len(value)
    if not 1 <= count <= LIMITS["seeds"]:
        what = ("a count of " if isinstance(value, int) else "a list of ") if unique else ""
        raise ValueError(f"between 1 and {LIMITS['seeds']} seeds per prompt, not {what}{count}")
    if unique and isinstance(value, list) and len(set(value)) != len(value):
        twice = sorted({seed for seed in value if value.count(seed) > 1})
        raise ValueError(f"each seed once: {', '.join(map(str, twice))} given more than once")
    return value


def seed_list(seeds: int | list[int]) -> list[int]:
    """A count of seeds (0..N-1) or a list of them, as the list."""
    return list(range(seeds)) if isinstance(seeds, int) else list(seeds)


#: seeds per prompt: a count (0..N-1) or a list, each a seed, between 1 and ``LIMITS["seeds"]`` of them
Seeds = Annotated[int | list[Seed], BeforeValidator(check_seed_values), AfterValidator(check_seed_count)]

#: :data:`Seeds` where a list names each seed once (a sweep's items are named by their seeds)
DistinctSeeds = Annotated[
    int | list[Seed],
    BeforeValidator(check_seed_values),
    AfterValidator(lambda value: check_seed_count(value, unique=True)),
]
