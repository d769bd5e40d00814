"""crvUSD monetary policy: the borrow rate of every market from the stablecoin's price and peg-keeper debt.

    power = (1 − p) / sigma − pk_debt / total_debt / target_debt_fraction
    rate  = rate0 · min(exp(power), MAX_EXP)                       (per second)
and, in the policy versions with per-market ceilings (AggMonetaryPolicy2/3), with f = debt_for / ceiling:
    rate  = min(rate · ((1 − TARGET_REMAINDER) + TARGET_REMAINDER / (1 − f)), MAX_RATE)

Source: curve-stablecoin contracts/mpolicies/AggMonetaryPolicy.vy `calculate_rate` and
AggMonetaryPolicy2.vy `calculate_rate` (constants MAX_EXP, MAX_RATE, TARGET_REMAINDER). The January 2024 books
give rate0, sigma and target_debt_fraction (`policy_params`: fixed point 1e18).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: AggMonetaryPolicy*.vy MAX_EXP (1000 · 1e18)
MAX_EXP = 1000.0
#: AggMonetaryPolicy2.vy MAX_RATE = 43959106799 per second (1e18 = 100 %): 300 % APY
MAX_RATE = 43959106799e-18
#: AggMonetaryPolicy2.vy TARGET_REMAINDER = 10**17: the rate is x1.9 when 10 % of the ceiling is left
TARGET_REMAINDER = 0.1
SECONDS_PER_YEAR = 365.0 * 86400.0


@dataclass(frozen=True)
class MonetaryPolicyParams:
    """rate0 (per second, fraction), sigma (price sensitivity, 0.02 = 2e16), target_debt_fraction of peg
    keepers (0.1), and whether the per-market debt-ceiling term applies (AggMonetaryPolicy2 and later)."""

    rate0: float = 2732676751e-18
    sigma: float = 0.02
    target_debt_fraction: float = 0.1
    ceiling_term: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate0 <= MAX_RATE:
            raise ValueError(f"monetary policy: rate0 must be in [0, {MAX_RATE}] per second, got {self.rate0}")
        if not 1e-4 <= self.sigma <= 1.0:
            raise ValueError(f"monetary policy: sigma must be in [1e-4, 1] (MIN_SIGMA..MAX_SIGMA), got {self.sigma}")
        if not 0.0 < self.target_debt_fraction <= 1.0:
            raise ValueError(f"monetary policy: target_debt_fraction in (0, 1], got {self.target_debt_fraction}")


def policy_rate(
    params: MonetaryPolicyParams,
    price: float,
    pk_debt: float,
    total_debt: float,
    debt_for: float = 0.0,
    ceiling: float = 0.0,
) -> float:
    """Borrow rate per second for one market (AggMonetaryPolicy `calculate_rate`); price in USD per crvUSD,
    debts in crvUSD."""
    power = (1.0 - price) / params.sigma
    if pk_debt > 0:
        if total_debt <= 0:
            return 0.0
        power -= pk_debt / total_debt / params.target_debt_fraction
    rate = params.rate0 * min(math.exp(min(power, 700.0)), MAX_EXP)
    if params.ceiling_term and ceiling > 0:
        f = min(debt_for / ceiling, 1.0 - TARGET_REMAINDER / 1000.0)
        rate = min(rate * ((1.0 - TARGET_REMAINDER) + TARGET_REMAINDER / (1.0 - f)), MAX_RATE)
    return rate


def annual(rate_per_s: float) -> float:
    """Annual rate, compounded per second as the rate multiplier compounds: exp(rate · year) − 1."""
    return math.expm1(rate_per_s * SECONDS_PER_YEAR)
