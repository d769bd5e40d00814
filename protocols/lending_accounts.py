"""The parts of Aave v3's account model the lending market shares with its checks: e-mode categories, the
per-category parameter vectors, and account values computed with the contract's own rounding.

Sources: aave-v3-core 1.19.3 (protocol v3.0.2) GenericLogic.calculateUserAccountData (per-asset values floored to
the 8-decimal base currency, average LTV and liquidation threshold floored to basis points, HF =
percentMul(collateral, avgLT).wadDiv(debt)), EModeLogic (category LTV / threshold / bonus and optional price source
for the assets of the user's category), AaveOracle (BASE_CURRENCY_UNIT = 1e8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BASE_UNIT = 1e8  # AaveOracle BASE_CURRENCY_UNIT: USD with 8 decimals
BPS = 1e4  # PercentageMath.PERCENTAGE_FACTOR


@dataclass(frozen=True)
class EModeCategory:
    """An efficiency-mode category (Aave v3 EModeLogic): correlated assets borrowed against each other with their own
    LTV, liquidation threshold and bonus (fractions; bonus 0.01 = Aave's 10100 bps). Its optional price source is
    given to the market as an oracle."""

    id: int
    ltv: float
    liquidation_threshold: float
    liquidation_bonus: float
    label: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.id <= 255:
            raise ValueError(f"e-mode category id must be in [1, 255] (0 means none), got {self.id}")
        if not 0.0 <= self.ltv <= self.liquidation_threshold < 1.0:
            raise ValueError(f"e-mode category {self.id}: need 0 <= ltv <= liquidation_threshold < 1")
        if self.liquidation_threshold * (1.0 + self.liquidation_bonus) > 1.0:
            raise ValueError(
                f"e-mode category {self.id}: liquidation_threshold x (1 + bonus) must not exceed 1 "
                "(Aave PoolConfigurator.setEModeCategory)"
            )


@dataclass(frozen=True)
class CategoryTerms:
    """Per-asset vectors an account in one e-mode category uses: price (USD per token), LTV, LT, bonus factor."""

    price: np.ndarray
    ltv: np.ndarray
    lt: np.ndarray
    bonus: np.ndarray


def category_terms(
    category: EModeCategory | None,
    asset_category: np.ndarray,
    price: np.ndarray,
    ltv: np.ndarray,
    lt: np.ndarray,
    bonus: np.ndarray,
    category_price: float | None,
) -> CategoryTerms:
    """The reserve vectors with the category's parameters (and price, when it has a source) on its own assets."""
    if category is None:
        return CategoryTerms(price, ltv, lt, bonus)
    inside = asset_category == category.id
    return CategoryTerms(
        np.where(inside, category_price, price) if category_price is not None else price,
        np.where(inside, category.ltv, ltv),
        np.where(inside, category.liquidation_threshold, lt),
        np.where(inside, 1.0 + category.liquidation_bonus, bonus),
    )


def aave_account_values(
    coll_tokens: np.ndarray, debt_tokens: np.ndarray, price_base: np.ndarray, ltv_bps: np.ndarray, lt_bps: np.ndarray
) -> dict[str, np.ndarray]:
    """Account values of rows that share one set of terms, with GenericLogic's rounding, in USD.

    coll_tokens: (r, A) collateral counted (enabled, LT > 0), token units; debt_tokens (r, A); price_base (A,) oracle
    prices in base units (integers as floats); ltv_bps / lt_bps (A,) integers as floats. Per-asset values are floored
    to base units; the average LTV and LT are floored to basis points (exactly, with Python integers, for rows with
    several collateral assets); HF = percentMul(collateral, avgLT) / debt. The float inputs make the result exact to a
    few units in the last place, the contract's own decisions included except within those units of a threshold."""
    v = np.floor(coll_tokens * price_base)
    d = np.floor(debt_tokens * price_base)
    coll = v.sum(axis=1)
    debt = d.sum(axis=1)
    held = v > 0
    n_held = held.sum(axis=1)
    avg_lt = np.zeros(len(coll))
    avg_ltv = np.zeros(len(coll))
    one = n_held == 1
    if one.any():  # one collateral asset: its own parameters, no division
        k = held[one].argmax(axis=1)
        avg_lt[one], avg_ltv[one] = lt_bps[k], ltv_bps[k]
    many = np.flatnonzero(n_held > 1)
    if many.size:  # Σ value·bps // Σ value, in Python integers (the products exceed 2**53)
        vi = v[many].astype(np.int64).astype(object)
        tot = vi.sum(axis=1)
        avg_lt[many] = ((vi * lt_bps.astype(np.int64).astype(object)).sum(axis=1) // tot).astype(float)
        avg_ltv[many] = ((vi * ltv_bps.astype(np.int64).astype(object)).sum(axis=1) // tot).astype(float)
    weighted = np.floor((coll * avg_lt + BPS / 2) / BPS)  # percentMul, half up
    cap = np.floor((coll * avg_ltv + BPS / 2) / BPS)
    hf = np.full(len(coll), np.inf)
    np.divide(weighted, debt, out=hf, where=debt > 0)
    return {
        "coll_usd": coll / BASE_UNIT,
        "debt_usd": debt / BASE_UNIT,
        "weighted": weighted / BASE_UNIT,
        "hf": hf,
        "borrow_cap": cap / BASE_UNIT,
    }
