"""How often a loss threshold is crossed at a shock size, with its interval, and which sizes bracket a target.

The probability of crossing at one size is the share of seeded runs whose metric passes the threshold, with a
Wilson score interval (Wilson 1927; scipy.stats.binomtest(...).proportion_ci(method="wilson"), no continuity
correction). The break size for a target probability p is the smallest tested size whose estimate reaches p;
it is bracketed by the largest smaller tested size whose estimate is below p. Its interval runs from the
smallest size whose Wilson interval reaches p (where crossing with probability p cannot be ruled out) to the
smallest size whose Wilson lower end reaches p (where it is established at 95%).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: confidence level of every interval
CONFIDENCE = 0.95


def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (NaNs when n = 0)."""
    if n <= 0:
        return (math.nan, math.nan)
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def crossed(values: np.ndarray, threshold: float, op: str) -> np.ndarray:
    """Runs whose metric passes the threshold: `op` is ">" or ">=" (a loss above) or "<" / "<=" (a figure below)."""
    v = np.asarray(values, float)
    ops = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}
    if op not in ops:
        raise ValueError(f"comparison {op!r}: allowed {', '.join(ops)}")
    return ops[op](v, threshold)


@dataclass(frozen=True)
class Bracket:
    """Where the target probability is first reached among the tested sizes (None: not at any tested size)."""

    below: float | None  #: largest tested size under `size` whose estimate is below the target
    size: float | None  #: smallest tested size whose estimate reaches the target
    interval_low: float | None  #: smallest tested size whose Wilson upper end reaches the target
    interval_high: float | None  #: smallest tested size whose Wilson lower end reaches the target


def bracket(
    sizes: Sequence[float], prob: Sequence[float], low: Sequence[float], high: Sequence[float], target: float
) -> Bracket:
    """The break size among tested sizes (see the module docstring); sizes need not be sorted."""
    order = np.argsort(np.asarray(sizes, float), kind="stable")
    s = np.asarray(sizes, float)[order]
    p, lo, hi = (np.asarray(a, float)[order] for a in (prob, low, high))

    def first(mask: np.ndarray) -> float | None:
        idx = np.flatnonzero(mask)
        return float(s[idx[0]]) if len(idx) else None

    size = first(p >= target)
    below = None
    if size is not None:
        under = s[(s < size) & (p < target)]
        below = float(under.max()) if len(under) else None
    return Bracket(below, size, first(hi >= target), first(lo >= target))
