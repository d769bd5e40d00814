"""The uncertain inputs of a replay (`[[uncertain]]`): scenario keys whose real value is not known from data
(the borrower book's health-factor prior, keepers' capital and gas ceilings, pool depth, book size), each
with the range or the set of values it may take and why.

`defistress replay` draws a Latin-hypercube design over them and reports each outcome as a band;
`defistress calibrate` fits them to an event's published figures. An input's `name` is what a fit carries to
another event: inputs of the same name in two scenarios are the same quantity (their keys may differ).
Whether every end of every range is a valid scenario is checked when the scenario loads (scenarios/loader.py).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

from defistress.scenarios.schema_base import Strict
from defistress.scenarios.units import MAX_VALUE, Bool, Float

#: a number within the physical ceiling of every scenario number (protocols/bounds.py MAX_VALUE)
Number = Annotated[Float, Field(ge=-MAX_VALUE, le=MAX_VALUE)]
#: a scalar an override may set: a number, a whole number, a duration string, a name or a flag
Value = Number | Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | str | bool
#: a scenario key path as `--set` takes it (list items by id or symbol)
KEY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$"


class UncertainInput(Strict):
    """One input the replay does not know: a continuous range or a set of values, set at one or more keys."""

    name: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="short name, the same for the same quantity in every scenario (a fit is carried by name)",
    )
    key: str | list[str] = Field(
        description="the scenario key it sets (as `--set` takes it, e.g. 'agents.vaults.collateral_ratio.median'); "
        "a list sets every key to the same value"
    )
    range: tuple[Number, Number] | None = Field(
        None, description="[low, high] of a continuous input, in the key's unit (drawn uniformly, or see `scale`)"
    )
    values: list[Value] | None = Field(
        None, min_length=2, description="the set of values a discrete input may take (drawn with equal weights)"
    )
    scale: Literal["linear", "log"] = Field(
        "linear", description="draw a range uniformly (linear) or uniformly in its logarithm (log; low > 0)"
    )
    integer: Bool = Field(False, description="round draws of a range to whole numbers (counts, blocks)")
    description: str = Field(
        min_length=1, max_length=500, description="why the value is uncertain and where the range comes from"
    )

    @model_validator(mode="after")
    def _check(self):
        if (self.range is None) == (self.values is None):
            raise ValueError(f"uncertain.{self.name}: give `range` (continuous) or `values` (a set), exactly one")
        if self.range is not None:
            lo, hi = self.range
            if not (-MAX_VALUE <= lo < hi <= MAX_VALUE):
                raise ValueError(f"uncertain.{self.name}.range: low must be below high, got [{lo:g}, {hi:g}]")
            if self.scale == "log" and lo <= 0:
                raise ValueError(f"uncertain.{self.name}.range: a log scale needs low > 0, got {lo:g}")
            if self.integer and math.floor(hi) < math.ceil(lo):
                raise ValueError(f"uncertain.{self.name}.range: no whole number in [{lo:g}, {hi:g}]")
        else:
            if self.scale != "linear" or self.integer:
                raise ValueError(f"uncertain.{self.name}: `scale` and `integer` apply to a range, not to `values`")
            assert self.values is not None
            if len({repr(v) for v in self.values}) != len(self.values):
                raise ValueError(f"uncertain.{self.name}.values: duplicate values in {self.values}")
        keys = self.keys
        if not keys or len(set(keys)) != len(keys):
            raise ValueError(f"uncertain.{self.name}.key: give one key or a list of distinct keys, got {self.key!r}")
        for k in keys:
            if not re.match(KEY_PATTERN, k):
                raise ValueError(f"uncertain.{self.name}.key: {k!r} is not a key path like 'agents.keeper.count'")
        return self

    @property
    def keys(self) -> list[str]:
        return [self.key] if isinstance(self.key, str) else list(self.key)

    def value_at(self, u: float) -> Value:
        """The input's value at the design coordinate u in [0, 1): the range's quantile, or the value of the
        u-th of equal bins (so a Latin hypercube over u stratifies the set too)."""
        if not 0.0 <= u <= 1.0:
            raise ValueError(f"uncertain.{self.name}: design coordinate {u} outside [0, 1]")
        if self.values is not None:
            return self.values[min(int(u * len(self.values)), len(self.values) - 1)]
        assert self.range is not None
        lo, hi = self.range
        if self.integer:  # equal bins over the whole numbers of the range
            ints = np.arange(math.ceil(lo), math.floor(hi) + 1)
            return int(ints[min(int(u * len(ints)), len(ints) - 1)])
        if self.scale == "log":
            return float(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))))
        return float(lo + u * (hi - lo))

    def ends(self) -> list[Value]:
        """The values a design can reach at its extremes (checked against the scenario when it loads)."""
        if self.values is not None:
            return list(self.values)
        return [self.value_at(0.0), self.value_at(1.0)]

    def coordinate(self, value: Value) -> float:
        """The numeric axis of sensitivity analysis: the value (log for a log scale), or the index in `values`."""
        if self.values is not None:
            return float(self.values.index(value))
        v = float(value)
        return math.log(v) if self.scale == "log" else v


def check_uncertain(inputs: list[UncertainInput]) -> None:
    """Names and keys unique across the inputs."""
    names = [u.name for u in inputs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"uncertain: duplicate names {dup}")
    keys = [k for u in inputs for k in u.keys]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"uncertain: the key(s) {dup} are set by more than one input")
