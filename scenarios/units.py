"""Units and bounds of scenario numbers: durations ("12s", "15m", "2h", "1d" or seconds) and the bounded
numeric types and physical ceilings shared with the protocol and agent parameter models
(defined in `defistress.protocols.bounds`, which documents each ceiling)."""

from __future__ import annotations

import math
import re
from typing import Annotated

from annotated_types import Ge, Le
from pydantic import AllowInfNan, BeforeValidator

from defistress.protocols.bounds import (
    MAX_ACCOUNTS,
    MAX_BLOCKS,
    MAX_GAS,
    MAX_GWEI,
    MAX_SECONDS,
    MAX_SEED,
    MAX_TOKENS,
    MAX_USD,
    MAX_VALUE,
    MIN_PRICE_USD,
    PARAMS_CONFIG,
    Bool,
    Ceiling,
    Float,
    Int,
    Share,
)

__all__ = [
    "MAX_ACCOUNTS",
    "MAX_BLOCKS",
    "MAX_GAS",
    "MAX_GWEI",
    "MAX_SECONDS",
    "MAX_SEED",
    "MAX_TOKENS",
    "MAX_USD",
    "MAX_VALUE",
    "MIN_PRICE_USD",
    "PARAMS_CONFIG",
    "Bool",
    "Ceiling",
    "Float",
    "Int",
    "Share",
    "Seconds",
    "parse_duration",
]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([smhdw])\s*$")
_FORMS = "a number of seconds or a string like '30s', '15m', '2h', '1d'"


def parse_duration(value: object) -> float:
    """Seconds from a duration string or number; raises ValueError naming the allowed forms.

    The result is finite, >= 0 and at most MAX_SECONDS (ten years); fields add tighter bounds."""
    if isinstance(value, bool):
        raise ValueError(f"a duration must be {_FORMS}, not a boolean")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _PATTERN.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f"invalid duration {value!r}: use {_FORMS}")
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be finite, got {value!r}")
    if not 0 <= seconds <= MAX_SECONDS:
        raise ValueError(f"a duration must be within 0..{MAX_SECONDS:.0f} seconds (ten years), got {value!r}")
    return seconds


#: a duration in seconds, written in files as "15m", "2h", ... or as a number of seconds (finite, <= ten years)
Seconds = Annotated[float, Ge(0), Le(MAX_SECONDS), AllowInfNan(False), BeforeValidator(parse_duration)]
