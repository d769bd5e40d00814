"""What every part of the scenario schema shares: the strict base model, nested-parameter validation that
names its key path, and per-account distributions."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _validated(model_cls, data: dict, where: str):
    """Validate nested protocol parameters, re-raising with the key path under `where`."""
    from pydantic import ValidationError

    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ValueError(
            f"{where}.{loc}: {first['msg']}"
            + (f" (got {first.get('input')!r})" if not isinstance(first.get("input"), dict) else "")
        ) from None


class Distribution(Strict):
    """A random draw per account: lognormal (median, sigma) or uniform (low, high), clipped to [min, max]."""

    distribution: Literal["lognormal", "uniform", "constant"] = "lognormal"
    median: float | None = Field(None, gt=0)
    sigma: float = Field(0.5, ge=0, le=10)
    low: float | None = None
    high: float | None = None
    value: float | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _check(self):
        need = {"lognormal": ("median",), "uniform": ("low", "high"), "constant": ("value",)}[self.distribution]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"distribution '{self.distribution}' needs {missing}")
        if self.distribution == "uniform" and self.high is not None and self.low is not None and self.high <= self.low:
            raise ValueError("uniform distribution: 'high' must be greater than 'low'")
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError("distribution: 'max' must be >= 'min'")
        return self

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        # `_check` guarantees the parameters of the chosen distribution are set
        if self.distribution == "lognormal":
            assert self.median is not None
            x = self.median * np.exp(self.sigma * rng.standard_normal(n))
        elif self.distribution == "uniform":
            assert self.low is not None and self.high is not None
            x = rng.uniform(self.low, self.high, n)
        else:
            assert self.value is not None
            x = np.full(n, float(self.value))
        lo = -np.inf if self.min is None else self.min
        hi = np.inf if self.max is None else self.max
        return np.clip(x, lo, hi)
