"""Durations in scenario files: "12s", "15m", "2h", "1d" or a number of seconds."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([smhdw])\s*$")


def parse_duration(value: object) -> float:
    """Seconds from a duration string or number; raises ValueError naming the allowed forms."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '30s', '15m', '2h', '1d'")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration must be >= 0 seconds, got {value}")
        return float(value)
    if isinstance(value, str):
        m = _PATTERN.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"invalid duration {value!r}: use seconds or a string like '30s', '15m', '2h', '1d'")


#: a duration in seconds, written in files as "15m", "2h", ... or as a number of seconds
Seconds = Annotated[float, BeforeValidator(parse_duration)]
