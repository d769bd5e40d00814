"""Enough seeds for the quantile asked? A warning where a tail statistic rests on too few runs.

The rule: a distribution-free two-sided 95% confidence interval of the q-quantile from n runs, built from
order statistics, has an upper end inside the sample only if the largest run exceeds the q-quantile with
probability at least 97.5%: 1 - q^n >= 0.975, so n >= ln(0.025) / ln(q) (Hahn & Meeker, Statistical Intervals,
1991, section 5.2; the binomial argument behind order-statistic intervals). VaR95 needs 72 seeds, VaR99 and
ES99 need 368; with fewer, nothing in the runs bounds the quantile from above, and the figure is the largest
run or an interpolation between the largest two.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

#: confidence of the interval the rule asks for
CONFIDENCE = 0.95


def min_seeds_for_quantile(q: float, confidence: float = CONFIDENCE) -> int:
    """Fewest runs for which an order-statistic interval of the q-quantile is bounded inside the sample."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile {q}: must be between 0 and 1")
    return math.ceil(math.log((1.0 - confidence) / 2.0) / math.log(q))


def seed_warning(name: str, q: float, seeds: int) -> str | None:
    """One line saying `name` (a q-quantile statistic) rests on too few seeds, or None when `seeds` suffice."""
    need = min_seeds_for_quantile(q)
    if seeds >= need:
        return None
    tail = seeds * (1.0 - q)
    return (
        f"{name} from {seeds} seed(s): {tail:.2g} run(s) lie beyond the {100 * q:g}th percentile; a 95% "
        f"interval of it needs at least {need} seeds, so read it as a rough figure"
    )


def seed_warnings(quantiles: Iterable[tuple[str, float | None]], seeds: int) -> list[str]:
    """Warnings for (name, quantile) pairs (None: not a quantile) given the seeds per setting."""
    out = []
    for name, q in quantiles:
        w = seed_warning(name, q, seeds) if q is not None else None
        if w and w not in out:
            out.append(w)
    return out
