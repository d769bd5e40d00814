"""Pareto fronts and a recommended point on one, for trials scored on several figures.

Every figure is turned into one to minimise (a maximised figure is negated) before comparing. A trial is on
the front when no other trial is at least as good on every figure and strictly better on one (Pareto
dominance). The recommended point is the one nearest the ideal point (each figure's best value on the front)
after scaling each figure to [0, 1] over the front: the compromise-programming choice (Zeleny 1973).
"""

from __future__ import annotations

import numpy as np


def non_dominated(costs: np.ndarray) -> np.ndarray:
    """Mask of the rows of `costs` (n trials x k figures, all minimised) that no other row dominates."""
    c = np.asarray(costs, float)
    if c.ndim != 2:
        raise ValueError(f"costs must be 2-D (trials x figures), got shape {c.shape}")
    n = len(c)
    keep = np.ones(n, bool)
    for i in range(n):  # n is a study's trial count (hundreds): O(n^2 k) is fine
        better_eq = np.all(c <= c[i], axis=1)
        strictly = np.any(c < c[i], axis=1)
        keep[i] = not np.any(better_eq & strictly)
    return keep


def nearest_to_ideal(costs: np.ndarray) -> int:
    """Index (into `costs`) of the row nearest the ideal point after min-max scaling of each figure."""
    c = np.asarray(costs, float)
    if not len(c):
        raise ValueError("no trials to choose from")
    lo, hi = c.min(axis=0), c.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = (c - lo) / span
    return int(np.argmin(np.sqrt((scaled**2).sum(axis=1))))
