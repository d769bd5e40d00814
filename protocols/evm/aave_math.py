"""Integer copies of Aave v3.0.2 arithmetic (npm @aave/core-v3 1.19.3), for checking the chain and for comparing the
float model with it. Rounding as in WadRayMath.sol / PercentageMath.sol (half up); conversions to the base currency
floor (GenericLogic._getUser*InBaseCurrency); interest as in MathUtils.sol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WAD = 10**18
RAY = 10**27
PERCENTAGE_FACTOR = 10**4  # basis points: 10,000 = 100%
HALF_PERCENT = PERCENTAGE_FACTOR // 2
SECONDS_PER_YEAR = 365 * 86400  # MathUtils.SECONDS_PER_YEAR
CLOSE_FACTOR_HF_THRESHOLD = 95 * 10**16  # LiquidationLogic: 0.95e18
DEFAULT_LIQUIDATION_CLOSE_FACTOR = 5000  # bps
MAX_LIQUIDATION_CLOSE_FACTOR = 10000  # bps
HEALTH_FACTOR_LIQUIDATION_THRESHOLD = WAD
UINT256_MAX = 2**256 - 1
DEBT_CEILING_DECIMALS = 2  # ReserveConfiguration.DEBT_CEILING_DECIMALS


def percent_mul(value: int, pct: int) -> int:
    return (value * pct + HALF_PERCENT) // PERCENTAGE_FACTOR


def percent_div(value: int, pct: int) -> int:
    return (value * PERCENTAGE_FACTOR + pct // 2) // pct


def wad_mul(a: int, b: int) -> int:
    return (a * b + WAD // 2) // WAD


def wad_div(a: int, b: int) -> int:
    return (a * WAD + b // 2) // b


def ray_mul(a: int, b: int) -> int:
    return (a * b + RAY // 2) // RAY


def ray_div(a: int, b: int) -> int:
    return (a * RAY + b // 2) // b


def health_factor(total_collateral_base: int, total_debt_base: int, avg_liq_threshold: int) -> int:
    """GenericLogic.calculateUserAccountData: HF = coll.percentMul(avgLT).wadDiv(debt), wad; max uint with no debt."""
    if total_debt_base == 0:
        return UINT256_MAX
    return wad_div(percent_mul(total_collateral_base, avg_liq_threshold), total_debt_base)


def value_in_base(amount: int, price: int, decimals: int) -> int:
    """amount · price / 10**decimals, floored (GenericLogic._getUserBalanceInBaseCurrency)."""
    return amount * price // 10**decimals


def close_factor(hf: int) -> int:
    """LiquidationLogic (v3.0): 50% above HF 0.95, 100% at or below (strict comparison)."""
    return DEFAULT_LIQUIDATION_CLOSE_FACTOR if hf > CLOSE_FACTOR_HF_THRESHOLD else MAX_LIQUIDATION_CLOSE_FACTOR


def actual_debt_to_liquidate(user_reserve_debt: int, hf: int, debt_to_cover: int) -> int:
    """LiquidationLogic._calculateDebt: the close factor applies to the debt of the reserve being repaid."""
    max_liq = percent_mul(user_reserve_debt, close_factor(hf))
    return max_liq if debt_to_cover > max_liq else debt_to_cover


def available_collateral_to_liquidate(
    debt_to_cover: int,
    debt_price: int,
    debt_decimals: int,
    coll_price: int,
    coll_decimals: int,
    user_collateral_balance: int,
    liquidation_bonus: int,
    protocol_fee_bps: int,
) -> tuple[int, int, int]:
    """LiquidationLogic._calculateAvailableCollateralToLiquidate -> (collateral to the liquidator, debt repaid,
    protocol fee in collateral), token base units."""
    cu, du = 10**coll_decimals, 10**debt_decimals
    base_collateral = (debt_price * debt_to_cover * cu) // (coll_price * du)
    max_coll = percent_mul(base_collateral, liquidation_bonus)
    if max_coll > user_collateral_balance:
        coll_amount = user_collateral_balance
        debt_needed = percent_div((coll_price * coll_amount * du) // (debt_price * cu), liquidation_bonus)
    else:
        coll_amount, debt_needed = max_coll, debt_to_cover
    if protocol_fee_bps:
        fee = percent_mul(coll_amount - percent_div(coll_amount, liquidation_bonus), protocol_fee_bps)
        return coll_amount - fee, debt_needed, fee
    return coll_amount, debt_needed, 0


# --- interest (MathUtils, ReserveLogic) --------------------------------------------------------------------------
def linear_interest(rate_ray: int, last_update: int, now: int) -> int:
    """MathUtils.calculateLinearInterest: RAY + rate·Δt / year."""
    return RAY + rate_ray * (now - last_update) // SECONDS_PER_YEAR


def compounded_interest(rate_ray: int, last_update: int, now: int) -> int:
    """MathUtils.calculateCompoundedInterest: the 3-term binomial expansion of (1 + rate/year)^Δt."""
    exp = now - last_update
    if exp == 0:
        return RAY
    exp1, exp2 = exp - 1, exp - 2 if exp > 2 else 0
    p2 = ray_mul(rate_ray, rate_ray) // (SECONDS_PER_YEAR * SECONDS_PER_YEAR)
    p3 = ray_mul(p2, rate_ray) // SECONDS_PER_YEAR
    return RAY + rate_ray * exp // SECONDS_PER_YEAR + exp * exp1 * p2 // 2 + exp * exp1 * exp2 * p3 // 6


def normalized_income(liquidity_index: int, liquidity_rate: int, last_update: int, now: int) -> int:
    """ReserveLogic.getNormalizedIncome at time `now` (seconds)."""
    if now == last_update:
        return liquidity_index
    return ray_mul(linear_interest(liquidity_rate, last_update, now), liquidity_index)


def normalized_debt(borrow_index: int, borrow_rate: int, last_update: int, now: int) -> int:
    """ReserveLogic.getNormalizedDebt at time `now` (seconds)."""
    if now == last_update:
        return borrow_index
    return ray_mul(compounded_interest(borrow_rate, last_update, now), borrow_index)


# --- account data (GenericLogic.calculateUserAccountData) --------------------------------------------------------
@dataclass(frozen=True)
class ReserveView:
    """What the account maths reads of one reserve: decimals, bps parameters, e-mode category, oracle price (base
    currency, 8 decimals)."""

    decimals: int
    ltv: int
    liquidation_threshold: int
    emode_category: int
    price: int


@dataclass(frozen=True)
class EModeView:
    ltv: int
    liquidation_threshold: int
    price: int = 0  # price of the category's price source (0: none, each asset's own)


def account_data(
    reserves: Sequence[ReserveView],
    collateral: Sequence[int],
    debt: Sequence[int],
    using_as_collateral: Sequence[bool],
    user_emode: int = 0,
    emodes: dict[int, EModeView] | None = None,
) -> tuple[int, int, int, int, int, int]:
    """getUserAccountData from balances (token base units): (total collateral base, total debt base, available
    borrows base, current liquidation threshold bps, ltv bps, health factor wad)."""
    em = (emodes or {}).get(user_emode) if user_emode else None
    coll_base = debt_base = avg_ltv = avg_lt = 0
    if not any(d > 0 for d in debt) and not any(c > 0 and u for c, u in zip(collateral, using_as_collateral)):
        return 0, 0, 0, 0, 0, UINT256_MAX
    for r, c, d, use in zip(reserves, collateral, debt, using_as_collateral):
        cat = em if em is not None and r.emode_category == user_emode else None
        price = cat.price if cat is not None and cat.price else r.price
        if r.liquidation_threshold and use and c > 0:
            v = value_in_base(c, price, r.decimals)
            coll_base += v
            avg_ltv += v * (cat.ltv if cat is not None else r.ltv) if r.ltv else 0
            avg_lt += v * (cat.liquidation_threshold if cat is not None else r.liquidation_threshold)
        if d > 0:
            debt_base += value_in_base(d, price, r.decimals)
    avg_ltv = avg_ltv // coll_base if coll_base else 0
    avg_lt = avg_lt // coll_base if coll_base else 0
    available = max(percent_mul(coll_base, avg_ltv) - debt_base, 0)
    return coll_base, debt_base, available, avg_lt, avg_ltv, health_factor(coll_base, debt_base, avg_lt)


# --- reserve configuration bitmap (ReserveConfiguration.sol) ---------------------------------------------------------
_FIELDS = {  # name: (start bit, width in bits)
    "ltv": (0, 16),
    "liquidation_threshold": (16, 16),
    "liquidation_bonus": (32, 16),
    "decimals": (48, 8),
    "active": (56, 1),
    "frozen": (57, 1),
    "borrowing_enabled": (58, 1),
    "stable_borrowing_enabled": (59, 1),
    "paused": (60, 1),
    "borrowable_in_isolation": (61, 1),
    "siloed_borrowing": (62, 1),
    "flashloan_enabled": (63, 1),
    "reserve_factor": (64, 16),
    "borrow_cap": (80, 36),
    "supply_cap": (116, 36),
    "liquidation_protocol_fee": (152, 16),
    "emode_category": (168, 8),
    "unbacked_mint_cap": (176, 36),
    "debt_ceiling": (212, 40),
}


def decode_reserve_configuration(data: int) -> dict[str, int]:
    """ReserveConfigurationMap.data -> its fields (bps, whole tokens for caps, 2-decimal USD for the debt ceiling)."""
    return {k: (data >> start) & ((1 << width) - 1) for k, (start, width) in _FIELDS.items()}


def user_configuration_flags(data: int, reserve_id: int) -> tuple[bool, bool]:
    """UserConfigurationMap: (borrowing, using as collateral) of reserve `reserve_id` (bits 2·id and 2·id + 1)."""
    return bool((data >> (2 * reserve_id)) & 1), bool((data >> (2 * reserve_id + 1)) & 1)
