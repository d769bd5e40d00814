"""Trial metrics: one statistic over the seeded runs of one setting, named as risk.csv names its columns.

A name is `<statistic>_<run metric>`: `var99_bad_debt_usd` is the 99th percentile of per-run bad debt over the
setting's seeds, `mean_liquidator_value_leakage_usd` the mean leakage. Statistics:
- `mean`, `median`, `std`, `min`, `max`;
- `var<q>`: the q-th percentile of the runs (Value at Risk; Gauntlet's insolvency VaR), e.g. `var95`, `var99`;
- `evar99`: the 99th percentile (Chaos Labs' "extreme VaR"), the same as `var99`;
- `es<q>`: expected shortfall, the mean of the runs at or above the q-th percentile (Acerbi & Tasche 2002);
- `lar95_liquidation_usd`: risk.csv's name for `var95_liquidation_volume_usd` (Gauntlet's liquidations at risk).

Run metrics are the scalar per-run figures of `sim/analysis/summary.py` (RUN_METRICS), and per protocol
`{protocol id}_{name}` (PROTOCOL_METRICS). Every value comes with a percentile-bootstrap interval over the
seeds (`risk.with_ci`, scipy.stats.bootstrap).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from defistress.sim.analysis.risk import expected_shortfall, var, with_ci

#: scalar per-run metrics of every scenario (summary.summarize), with their units
RUN_METRICS: dict[str, str] = {
    "bad_debt_usd": "debt left with no collateral behind it at the end, USD",
    "bad_debt_pct": "bad debt as a % of initial debt",
    "liquidations": "number of liquidations",
    "liquidation_volume_usd": "debt repaid by liquidations, USD",
    "debt_liquidated_pct": "liquidation volume as a % of initial debt",
    "peak_liquidations_per_block": "most liquidations in one block",
    "liquidator_value_leakage_usd": "liquidation bonus paid by borrowers, USD",
    "liquidation_slippage_usd": "what liquidators' sales lost to pool impact and fees, USD",
    "liquidator_pnl_usd": "liquidators' profit at the end, USD",
    "max_oracle_error": "largest |oracle - reference| / reference (fraction)",
    "exogenous_drawdown": "largest fall of the shocked asset's exogenous price (fraction)",
    "reference_drawdown": "largest fall of the shocked asset's price with liquidation impact (fraction)",
    "cascade_amplification": "reference drawdown over exogenous drawdown (ratio)",
    "peak_base_fee_gwei": "highest base fee, gwei",
    "txs_reverted": "transactions that reverted",
    "txs_dropped": "transactions left out of full blocks",
    "soft_liquidation_loss_usd": "borrowers' losses to soft liquidation (LLAMMA markets only), USD",
}
#: scalar per-protocol metrics, as `{protocol id}_{name}` columns
PROTOCOL_METRICS: tuple[str, ...] = (
    "bad_debt_usd",
    "bad_debt_pct",
    "initial_debt_usd",
    "liquidations",
    "liquidation_volume_usd",
    "debt_liquidated_pct",
    "peak_liquidations_per_block",
    "liquidator_value_leakage_usd",
    "accounts_unhealthy_end",
)
#: statistics without a quantile
PLAIN_STATS: dict[str, Callable[..., Any]] = {
    "mean": lambda x, axis=-1: np.mean(x, axis=axis),
    "median": lambda x, axis=-1: np.median(x, axis=axis),
    "std": lambda x, axis=-1: np.std(x, axis=axis, ddof=1) if np.shape(x)[axis] > 1 else np.zeros(np.shape(x)[:-1]),
    "min": lambda x, axis=-1: np.min(x, axis=axis),
    "max": lambda x, axis=-1: np.max(x, axis=axis),
}
#: names risk.csv uses that are not `<statistic>_<run metric>`: name -> (statistic, run metric)
ALIASES: dict[str, tuple[str, str]] = {"lar95_liquidation_usd": ("var95", "liquidation_volume_usd")}
STATISTICS_HELP = "mean, median, std, min, max, var<q> (e.g. var95, var99), evar99, es<q> (e.g. es99)"
_QUANTILE = re.compile(r"^(var|es)(\d{1,2}(?:\.\d+)?)$")


class MetricError(ValueError):
    """A trial metric name that cannot be read; the message names the option and the allowed values."""


@dataclass(frozen=True)
class TrialMetric:
    """A statistic of one run metric over a setting's seeds."""

    name: str  #: as written, e.g. "var99_bad_debt_usd"
    statistic: str  #: "mean", "var99", "es99", ...
    column: str  #: the per-run metric, e.g. "bad_debt_usd"

    @property
    def quantile(self) -> float | None:
        """The quantile the statistic reads (0.99 for var99 and es99, 0.5 for median), None for the others."""
        if self.statistic == "median":
            return 0.5
        if self.statistic == "evar99":
            return 0.99
        m = _QUANTILE.match(self.statistic)
        return float(m.group(2)) / 100.0 if m else None

    def function(self) -> Callable[..., Any]:
        """The statistic as f(x, axis=-1), vectorised for scipy.stats.bootstrap."""
        if self.statistic in PLAIN_STATS:
            return PLAIN_STATS[self.statistic]
        q = self.quantile
        assert q is not None
        if self.statistic.startswith("es"):
            return lambda x, axis=-1: expected_shortfall(x, q, axis)
        return lambda x, axis=-1: var(x, q, axis)

    def value(self, runs: Sequence[float] | np.ndarray) -> float:
        x = np.asarray(runs, float)
        return float(self.function()(x, axis=-1)) if len(x) else math.nan

    def with_ci(self, runs: Sequence[float] | np.ndarray, seed: int = 0) -> dict[str, float]:
        """{value, ci_low, ci_high, n}: the statistic with its 95% percentile-bootstrap interval over the runs."""
        x = np.asarray(runs, float)
        if not len(x):
            return {"value": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
        return with_ci(x, self.function(), seed=seed)


def _statistic_ok(stat: str) -> bool:
    if stat in PLAIN_STATS or stat == "evar99":
        return True
    m = _QUANTILE.match(stat)
    return m is not None and 0.0 < float(m.group(2)) < 100.0


def run_metric_names(protocol_ids: Iterable[str] = ()) -> list[str]:
    """The run metrics a trial metric may read for a scenario with these protocol ids."""
    return [*RUN_METRICS, *(f"{pid}_{m}" for pid in protocol_ids for m in PROTOCOL_METRICS)]


def parse_metric(text: str, allowed: Sequence[str] | None, option: str = "--objective") -> TrialMetric:
    """`var99_bad_debt_usd` -> TrialMetric; `allowed` lists the run metrics (None: any column name)."""
    name = text.strip()
    if name in ALIASES:
        stat, column = ALIASES[name]
    else:
        stat, _, column = name.partition("_")
    where = f"{option} {text!r}"
    if not _statistic_ok(stat) or not column:
        raise MetricError(
            f"{where}: expected <statistic>_<run metric>, e.g. var99_bad_debt_usd or mean_liquidator_value_leakage_usd;"
            f" statistics: {STATISTICS_HELP}"
        )
    if allowed is not None and column not in allowed:
        raise MetricError(f"{where}: unknown run metric {column!r}; allowed: {', '.join(allowed)}")
    return TrialMetric(name, stat, column)
