"""What a sweep is: the grid, the run settings every cell shares, and per-method variants.

Kept apart from the driver so that the CLI, the quality benchmark and the TUI build and read the same spec.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.errors import ConfigError
from engine.methods import METHODS


class Variant(BaseModel):
    """A named method with its own settings (e.g. ``iz_matern`` = instructzero with the Matern kernel)."""

    model_config = ConfigDict(extra="forbid")
    method: str
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("method")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in METHODS:
            raise ValueError(f"unknown method {v!r} (one of {', '.join(METHODS)})")
        return v


class SweepSpec(BaseModel):
    """A sweep: every combination of ``tasks`` x ``methods`` x ``seeds`` x ``models`` is one run (a cell)."""

    model_config = ConfigDict(extra="forbid")
    tasks: list[str] = Field(min_length=1)
    methods: list[str] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    #: Black-box models (the endpoint's ``model``); None = the endpoint profile's own.
    models: list[str | None] = Field(default_factory=lambda: [None], min_length=1)
    endpoint: str | None = None
    #: Run settings shared by every cell (n_dev, n_test, budget_evaluations, ...), over the configured defaults.
    settings: dict[str, Any] = Field(default_factory=dict)
    variants: dict[str, Variant] = Field(default_factory=dict)
    #: The instructions a ``manual`` cell scores, per task (a task not listed uses ``manual_default``).
    instructions: dict[str, list[str]] = Field(default_factory=dict)
    manual_default: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _methods_known(self) -> SweepSpec:
        unknown = [m for m in self.methods if m not in METHODS and m not in self.variants]
        if unknown:
            raise ValueError(f"unknown method {', '.join(map(repr, unknown))} (one of {', '.join(METHODS)}, "
                             "or a variant defined in the spec)")
        if "seed" in self.settings or "method" in self.settings:
            raise ValueError("settings cannot set seed or method: they are the sweep's axes")
        for name, variant in self.variants.items():
            if "seed" in variant.settings:
                raise ValueError(f"variant {name!r} cannot set seed: it is the sweep's axis")
        return self

    @classmethod
    def build(cls, **values: Any) -> SweepSpec:
        """Validate, turning pydantic's report into one :class:`ConfigError` naming every bad field."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'sweep'}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"invalid sweep: {problems}", "check the sweep's options (`iz sweep --help`)") from None

    def cells(self) -> list[dict[str, Any]]:
        """The grid in the order it runs: seed by seed, so a sweep cut short has every task and method once."""
        return [
            {"task": task, "method": method, "seed": seed, "model": model}
            for seed, model, task, method in itertools.product(self.seeds, self.models, self.tasks, self.methods)
        ]

    def run_settings(self, method: str, seed: int) -> dict[str, Any]:
        """The overrides a cell's run is created with (the engine merges them over the configured defaults)."""
        variant = self.variants.get(method)
        base = {**self.settings, **(variant.settings if variant else {})}
        return {**base, "method": variant.method if variant else method, "seed": seed}

    def manual_instructions(self, task: str) -> list[str]:
        return list(self.instructions.get(task) or self.manual_default)


def parse_seeds(text: str) -> list[int]:
    """``"0-2"`` -> [0, 1, 2]; ``"0,3,7"`` and mixes (``"0-2,10"``) too."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(-?\d+)(?:\s*-\s*(-?\d+))?", part)
        if not m:
            raise ConfigError(f"bad seeds {text!r}: {part!r} is not a number or a range", "write e.g. 0-2 or 0,3,7")
        lo, hi = int(m[1]), int(m[2]) if m[2] is not None else int(m[1])
        if hi < lo:
            raise ConfigError(f"bad seeds {text!r}: the range {part!r} is empty", "write the smaller seed first")
        seeds.extend(range(lo, hi + 1))
    if not seeds:
        raise ConfigError("no seeds given", "write e.g. --seeds 0-2")
    return list(dict.fromkeys(seeds))


def parse_list(text: str | None, what: str) -> list[str]:
    items = [p.strip() for p in (text or "").split(",") if p.strip()]
    if not items:
        raise ConfigError(f"no {what} given", f"pass a comma-separated list of {what}")
    return list(dict.fromkeys(items))
